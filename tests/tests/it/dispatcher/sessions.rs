//! Worker and CLI sessions: re-attach, ownership, backlog replay, cancel, replicas.

use std::time::Duration;

use super::support::*;
use perry_hub_tests::TestHub;
use serde_json::json;

#[tokio::test]
async fn a_worker_that_reconnects_within_the_lease_reattaches_its_job() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("builder-7", &["linux"], 1).await;
    worker.assignment().await;
    let attempt_before: i32 = sqlx::query_scalar("SELECT attempt FROM jobs WHERE id = ?")
        .bind(&job)
        .fetch_one(hub.pool())
        .await
        .unwrap();
    worker.ws.close().await;

    let mut again = hub.worker("builder-7", &["linux"], 1).await;
    again
        .send(json!({"type":"stage","job_id":job,"stage":"bundling","message":"Bundling"}))
        .await;
    hub.wait_state(&job, "running").await;
    let attempt_after: i32 = sqlx::query_scalar("SELECT attempt FROM jobs WHERE id = ?")
        .bind(&job)
        .fetch_one(hub.pool())
        .await
        .unwrap();
    assert_eq!(
        attempt_before, attempt_after,
        "re-attach keeps the attempt (no retry)"
    );
    hub.insert_artifact(&job, "a.tar.gz", "linux", b"x").await;
    again.send(json!({"type":"complete","job_id":job,"success":true,"duration_secs":2.0,"artifacts":[]})).await;
    hub.wait_state(&job, "completed").await;
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "05-worker-fast-reconnect",
        fault: "Worker reconnects before its old session has noticed the disconnect",
        outcome: "The new session waited for the old one to let go and re-attached the job with the same attempt and token (DEC-19).".to_owned(),
        test: "dispatcher::sessions::a_worker_that_reconnects_within_the_lease_reattaches_its_job",
    });
    hub.stop().await;
}

#[tokio::test]
async fn a_different_worker_cannot_send_frames_for_a_job_it_does_not_hold() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut owner = hub.worker("owner", &["linux"], 1).await;
    owner.assignment().await;
    let mut intruder = hub.worker("intruder", &["linux"], 1).await;
    intruder.send(json!({"type":"complete","job_id":job,"success":false,"duration_secs":1.0,"artifacts":[]})).await;
    intruder
        .send(json!({"type":"log","job_id":job,"stage":"x","line":"forged","stream":"stderr"}))
        .await;
    // The owner's frame after the intruder's proves the intruder's were processed first.
    owner
        .send(json!({"type":"stage","job_id":job,"stage":"compiling","message":"Compiling"}))
        .await;
    hub.wait_state(&job, "running").await;
    let forged: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_events WHERE job_id = ? AND payload LIKE '%forged%'",
    )
    .bind(&job)
    .fetch_one(hub.pool())
    .await
    .unwrap();
    assert_eq!(forged, 0);
    assert_eq!(hub.job_state(&job).await, "running");
    hub.stop().await;
}

#[tokio::test]
async fn a_late_subscriber_gets_the_backlog_then_live_events_without_gap_or_duplicate() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("w", &["linux"], 1).await;
    worker.assignment().await;
    for i in 0..20 {
        worker.send(json!({"type":"log","job_id":job,"stage":"compiling","line":format!("line {i}"),"stream":"stdout"})).await;
    }
    // Wait until the backlog is stored, then subscribe late and keep the worker talking.
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    while hub
        .db()
        .count("job_events", &format!("job_id = '{job}' AND kind = 'log'"))
        .await
        < 20
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut cli = hub.cli(&job).await;
    assert_eq!(cli.expect("job_created").await["position"], 0);
    for i in 20..40 {
        worker.send(json!({"type":"log","job_id":job,"stage":"compiling","line":format!("line {i}"),"stream":"stdout"})).await;
    }
    hub.insert_artifact(&job, "a.tar.gz", "linux", b"x").await;
    worker.send(json!({"type":"complete","job_id":job,"success":true,"duration_secs":2.0,"artifacts":[]})).await;
    let frames = until_complete(&mut cli).await;
    let lines: Vec<String> = frames
        .iter()
        .filter(|f| f["type"] == "log")
        .map(|f| f["line"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected);
    // A subscriber after the end replays everything and ends with the real complete.
    let mut after = hub.cli(&job).await;
    let replay = until_complete(&mut after).await;
    assert_eq!(replay.iter().filter(|f| f["type"] == "log").count(), 40);
    assert_eq!(
        replay
            .iter()
            .filter(|f| f["type"] == "artifact_ready")
            .count(),
        1
    );
    assert_eq!(replay.last().unwrap()["success"], true);
    hub.stop().await;
}

on_both_queues! {
    /// On both queues: the cancel of a running job reaches its worker through the events
    /// fan-out (`control.cancel`).
    async fn cancelling_a_queued_job_ends_it_and_a_running_job_is_cancelled_through_its_worker(
        queue: QueueKind,
    ) {
        let hub = TestHub::start_with(queue.options()).await;
        let (_, license) = hub.insert_license("pro").await;
        let queued = hub.insert_job(license, "ios", 10, b"t", json!({})).await;
        let mut cli = hub.cli(&queued).await;
        cli.expect("job_created").await;
        cli.send(json!({"type":"cancel","job_id":queued})).await;
        let complete = cli.expect("complete").await;
        assert_eq!(complete["success"], false);
        hub.wait_state(&queued, "cancelled").await;

        let running = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
        let mut worker = hub.worker("w", &["linux"], 1).await;
        worker.assignment().await;
        let mut cli = hub.cli(&running).await;
        cli.expect("job_created").await;
        cli.send(json!({"type":"cancel","job_id":running})).await;
        let cancel = worker.ws.expect("cancel").await;
        assert_eq!(cancel["job_id"], running.as_str());
        worker.send(json!({"type":"error","job_id":running,"code":"INTERNAL_ERROR","message":"Build cancelled"})).await;
        worker.send(json!({"type":"complete","job_id":running,"success":false,"duration_secs":1.0,"artifacts":[]})).await;
        hub.wait_state(&running, "cancelled").await;
        hub.stop().await;
    }
}

#[tokio::test]
async fn error_then_complete_frees_the_slot_exactly_once() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let a = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("single", &["linux"], 1).await;
    worker.assignment().await;
    let mut cli = hub.cli(&a).await;
    cli.expect("job_created").await;
    worker.send(json!({"type":"error","job_id":a,"code":"INTERNAL_ERROR","message":"Compilation failed","stage":"compiling"})).await;
    hub.wait_state(&a, "running").await;
    assert_eq!(
        hub.dispatcher.registry.free_slots("linux"),
        0,
        "error does not free the slot"
    );
    worker.send(json!({"type":"complete","job_id":a,"success":false,"duration_secs":1.0,"artifacts":[]})).await;
    hub.wait_state(&a, "failed").await;
    let shared::db::Text(stored) =
        sqlx::query_scalar("SELECT error_message FROM jobs WHERE id = ?")
            .bind(&a)
            .fetch_one(hub.pool())
            .await
            .unwrap();
    assert_eq!(
        stored, "Build failed: Compilation failed",
        "the worker's reason"
    );
    // The CLI sees the worker's error once, then the failed complete, as before.
    let mut errors = Vec::new();
    loop {
        let f = cli.recv().await.expect("frame");
        match f["type"].as_str() {
            Some("error") => errors.push(f["message"].clone()),
            Some("complete") => {
                assert_eq!(f["success"], false);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(errors, vec![json!("Compilation failed")]);
    let b = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    assert_eq!(worker.assignment().await["job_id"], b.as_str());
    assert_eq!(
        hub.dispatcher.registry.free_slots("linux"),
        0,
        "one slot, one job"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_worker_and_a_subscriber_on_different_replicas_see_each_others_events() {
    let a = TestHub::start().await;
    let b = a.replica().await;
    let (_, license) = a.insert_license("pro").await;
    let job = a.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut cli = b.cli(&job).await;
    cli.expect("job_created").await;
    let mut worker = a.worker("w-a", &["linux"], 1).await;
    worker.assignment().await;
    worker
        .send(json!({"type":"stage","job_id":job,"stage":"compiling","message":"on replica a"}))
        .await;
    let stage = cli.expect("stage").await;
    assert_eq!(stage["message"], "on replica a");
    b.stop().await;
    a.stop().await;
}
