//! Bursts of worker frames: stored by group commit, seen in the worker's order on every
//! replica, with `artifact_ready` after the frames sent before the upload (DEC-14).

use perry_hub_tests::{sha256_hex, TestHub, WsClient};
use serde_json::{json, Value};

use super::support::*;

/// The `line`s of the `log` frames, in the order received.
fn lines(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == "log")
        .map(|f| f["line"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn assigned(hub: &TestHub) -> (String, String, perry_hub_tests::FakeWorker) {
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "linux", 10, b"tarball", json!({}))
        .await;
    let mut worker = hub.worker("linux-burst", &["linux"], 1).await;
    let assign = worker.assignment().await;
    let token = assign["auth_token"].as_str().unwrap().to_owned();
    (job, token, worker)
}

async fn frames_until_complete(cli: &mut WsClient) -> Vec<Value> {
    let frames = until_complete(cli).await;
    let types = frame_types(&frames);
    assert_eq!(
        types.iter().filter(|t| *t == "complete").count(),
        1,
        "exactly one complete"
    );
    frames
}

#[tokio::test]
async fn a_burst_racing_an_upload_reaches_a_cli_on_another_replica_in_the_workers_order() {
    let hub = TestHub::start().await;
    let other = hub.replica().await;
    let (job, token, mut worker) = assigned(&hub).await;
    let mut cli = other.cli(&job).await;
    cli.expect("job_created").await;

    // The worker sends a burst, uploads as soon as it is written, then a few more frames.
    let before: Vec<String> = (0..1500).map(|i| format!("before {i}")).collect();
    for line in &before {
        worker
            .send(json!({"type":"log","job_id":job,"stage":"compiling","line":line,"stream":"stdout"}))
            .await;
    }
    let data = b"artifact-after-a-burst".to_vec();
    let sha = sha256_hex(&data);
    let auth = format!("Bearer {token}");
    let (status, body) = hub
        .upload_artifact(
            &job,
            "application/octet-stream",
            data,
            &[
                ("authorization", auth.as_str()),
                ("x-artifact-name", "app.tar.gz"),
                ("x-artifact-sha256", sha.as_str()),
                ("x-artifact-target", "linux"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after: Vec<String> = (0..20).map(|i| format!("after {i}")).collect();
    for line in &after {
        worker
            .send(
                json!({"type":"log","job_id":job,"stage":"bundling","line":line,"stream":"stdout"}),
            )
            .await;
    }
    worker
        .send(json!({"type":"complete","job_id":job,"success":true,"duration_secs":1.0,"artifacts":[{"name":"app.tar.gz","size":22,"sha256":sha}]}))
        .await;

    let frames = frames_until_complete(&mut cli).await;
    let seen = lines(&frames);
    let expected: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert_eq!(seen, expected, "every line once, in the worker's order");
    let types = frame_types(&frames);
    let ready = types
        .iter()
        .position(|t| t == "artifact_ready")
        .expect("artifact_ready");
    let last_before = frames
        .iter()
        .rposition(|f| f["line"].as_str().is_some_and(|l| l.starts_with("before ")))
        .unwrap();
    assert!(
        ready > last_before,
        "artifact_ready after the frames sent before the upload"
    );
    assert!(ready < types.len() - 1, "artifact_ready before complete");
    assert_eq!(frames.last().unwrap()["success"], true);

    // The stored log is the same, and a late subscriber on either replica replays it.
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM job_events WHERE job_id = ? AND kind = 'log'")
            .bind(&job)
            .fetch_one(hub.pool())
            .await
            .unwrap();
    assert_eq!(stored, 1520);
    // The bursts reached the other replica straight from the dispatcher, not through outbox
    // rows (DEC-37); `artifact_ready` and `complete` did go through the outbox.
    let through_outbox = |kind: &'static str| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE payload LIKE ?")
            .bind(format!("%\"type\":\"{kind}\"%"))
            .fetch_one(hub.pool())
    };
    assert_eq!(through_outbox("job_events").await.unwrap(), 0);
    assert!(through_outbox("job_event").await.unwrap() >= 2);
    let mut late = hub.cli(&job).await;
    late.expect("job_created").await;
    let replay = frames_until_complete(&mut late).await;
    let kinds: Vec<String> = frame_types(&replay)
        .into_iter()
        .filter(|t| t != "log" && t != "queue_update")
        .collect();
    assert_eq!(kinds, ["artifact_ready", "complete"]);
    assert_eq!(
        lines(&replay).len(),
        1000,
        "replay keeps the newest 1000 log lines (A6)"
    );
    assert_eq!(lines(&replay).last().unwrap(), "after 19");
}

/// A burst whose fan-out message never reached the broker (DEC-37: published after the
/// commit, not through the outbox) is still seen by a CLI on another replica, in order, as
/// soon as the job's next event arrives there: the gap in the numbers is filled from MySQL.
#[tokio::test]
async fn a_burst_whose_fan_out_was_lost_reaches_another_replica_at_the_next_event() {
    let hub = TestHub::start().await;
    let other = hub.replica().await;
    let (job, _token, mut worker) = assigned(&hub).await;
    let mut cli = other.cli(&job).await;
    cli.expect("job_created").await;
    worker
        .send(
            json!({"type":"log","job_id":job,"stage":"compiling","line":"first","stream":"stdout"}),
        )
        .await;
    assert_eq!(cli.expect("log").await["line"], "first");
    // What a committed burst whose message was lost leaves behind: numbered, stored frames
    // that no replica was told about.
    let mut tx = shared::db::begin(hub.pool()).await.unwrap();
    let seq: i64 = {
        sqlx::query("UPDATE jobs SET event_seq = event_seq + 2 WHERE id = ?")
            .bind(&job)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT event_seq FROM jobs WHERE id = ?")
            .bind(&job)
            .fetch_one(&mut *tx)
            .await
            .unwrap()
    };
    for (n, line) in [(seq - 1, "lost one"), (seq, "lost two")] {
        let frame =
            json!({"type":"log","job_id":job,"stage":"compiling","line":line,"stream":"stdout"});
        sqlx::query("INSERT INTO job_events (job_id, seq, kind, payload, created_ms) VALUES (?, ?, 'log', ?, 0)")
            .bind(&job)
            .bind(n)
            .bind(frame.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    worker
        .send(
            json!({"type":"log","job_id":job,"stage":"compiling","line":"next","stream":"stdout"}),
        )
        .await;
    for expected in ["lost one", "lost two", "next"] {
        assert_eq!(cli.expect("log").await["line"], expected);
    }
}

#[tokio::test]
async fn an_artifact_whose_notice_no_session_received_is_announced_before_complete() {
    let hub = TestHub::start().await;
    let (job, _token, mut worker) = assigned(&hub).await;
    let mut cli = hub.cli(&job).await;
    cli.expect("job_created").await;
    // An artifact recorded without a notice reaching the session (as when the worker was
    // reconnecting): the completion must still announce it first.
    hub.insert_artifact_silently(&job, "quiet.tar.gz", "linux", b"quiet")
        .await;
    worker
        .send(json!({"type":"complete","job_id":job,"success":true,"duration_secs":1.0,"artifacts":[]}))
        .await;
    let frames = frames_until_complete(&mut cli).await;
    let kinds: Vec<String> = frame_types(&frames)
        .into_iter()
        .filter(|t| t != "queue_update")
        .collect();
    assert_eq!(kinds, ["artifact_ready", "complete"]);
    assert_eq!(frames.last().unwrap()["success"], true);
    assert_eq!(
        frames.last().unwrap()["artifacts"][0]["name"],
        "quiet.tar.gz"
    );
}

/// The stored `log` lines of a job, in sequence order.
async fn stored_lines(hub: &TestHub, job: &str) -> Vec<String> {
    let payloads: Vec<shared::db::Text> = sqlx::query_scalar(
        "SELECT payload FROM job_events WHERE job_id = ? AND kind = 'log' ORDER BY seq",
    )
    .bind(job)
    .fetch_all(hub.pool())
    .await
    .unwrap();
    payloads
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(&p.0).unwrap()["line"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_cli_resubscribing_after_the_workers_dispatcher_stopped_mid_burst_gets_every_stored_frame_once_in_order(
) {
    let hub = TestHub::start().await;
    let other = hub.replica().await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "linux", 10, b"tarball", json!({}))
        .await;
    let mut worker = other.worker("linux-burst", &["linux"], 1).await;
    worker.assignment().await;
    let mut first = hub.cli(&job).await;
    first.expect("job_created").await;

    let sending = job.clone();
    let sender = tokio::spawn(async move {
        for i in 0..900 {
            let frame = json!({"type":"log","job_id":sending,"stage":"compiling","line":format!("line {i}"),"stream":"stdout"});
            if !worker.ws.try_send(frame).await {
                break;
            }
        }
        worker
    });
    // Stop the worker's dispatcher once part of the burst is stored.
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    while stored_lines(&hub, &job).await.len() < 200 {
        assert!(tokio::time::Instant::now() < deadline, "no frames stored");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    other.stop().await;
    let _worker = sender.await.unwrap();
    drop(first);

    // Whatever was stored is a gap-free prefix of what the worker sent...
    let stored = stored_lines(&hub, &job).await;
    assert!(stored.len() >= 200);
    let prefix: Vec<String> = (0..stored.len()).map(|i| format!("line {i}")).collect();
    assert_eq!(
        stored, prefix,
        "stored frames are the worker's, in order, without a gap"
    );
    // ...and a CLI that subscribes again gets exactly that, once, in order.
    let mut again = hub.cli(&job).await;
    again.expect("job_created").await;
    let mut seen = Vec::new();
    while seen.len() < stored.len() {
        let frame = again.recv().await.expect("replay");
        if frame["type"] == "log" {
            seen.push(frame["line"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, stored);
}

#[tokio::test]
async fn a_cli_resubscribing_after_the_workers_hub_process_was_killed_mid_burst_gets_every_stored_frame_once_in_order(
) {
    let hub = TestHub::start().await;
    let other =
        perry_hub_tests::HubProcess::start(&hub, env!("CARGO_BIN_EXE_perry-hub-process")).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "linux", 10, b"tarball", json!({}))
        .await;
    let mut worker = perry_hub_tests::FakeWorker::connect(
        &other.ws_url(),
        json!({"type":"worker_hello","name":"linux-killed","secret":hub.worker_secret(),
               "capabilities":["linux"],"max_concurrent":1,"perry_version":"0.5.0"}),
    )
    .await;
    worker.assignment().await;

    let sending = job.clone();
    let sender = tokio::spawn(async move {
        for i in 0..20_000 {
            let frame = json!({"type":"log","job_id":sending,"stage":"compiling","line":format!("line {i}"),"stream":"stdout"});
            if !worker.ws.try_send(frame).await {
                break;
            }
        }
    });
    // SIGKILL the worker's hub once part of the burst is stored: no shutdown, nothing flushed.
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    while stored_lines(&hub, &job).await.len() < 200 {
        assert!(tokio::time::Instant::now() < deadline, "no frames stored");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    other.kill();
    sender.await.unwrap();

    // What was stored is a gap-free prefix of what the worker sent...
    let stored = stored_lines(&hub, &job).await;
    assert!(stored.len() >= 200);
    assert!(stored.len() < 20_000, "the kill landed mid-burst");
    let prefix: Vec<String> = (0..stored.len()).map(|i| format!("line {i}")).collect();
    assert_eq!(
        stored, prefix,
        "stored frames are the worker's, in order, without a gap"
    );
    // ...and a CLI that subscribes on the surviving hub gets its newest 1000 lines, once, in
    // order.
    let expected = &stored[stored.len().saturating_sub(1000)..];
    let mut again = hub.cli(&job).await;
    again.expect("job_created").await;
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let frame = again.recv().await.expect("replay");
        if frame["type"] == "log" {
            seen.push(frame["line"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, expected);
    assert!(
        again
            .recv_within(std::time::Duration::from_millis(300))
            .await
            .is_err(),
        "nothing after the stored frames"
    );
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "04-dispatcher-killed-mid-burst",
        fault: "Hub process SIGKILLed while a worker streams logs",
        outcome: "Every stored frame was a gap-free prefix of what the worker sent; a CLI that subscribed again on another replica got it once, in order. Frames of the unflushed group-commit batch are lost (DEC-14).".to_owned(),
        test: "dispatcher::bursts::a_cli_resubscribing_after_the_workers_hub_process_was_killed_mid_burst_gets_every_stored_frame_once_in_order",
    });
}
