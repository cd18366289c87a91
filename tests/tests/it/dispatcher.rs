//! Dispatcher scenarios over real sockets with simulated workers and CLIs, against real
//! MariaDB and RabbitMQ.

use std::time::Duration;

use perry_hub_tests::{FakeWorker, TestHub, WsClient};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn frame_types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Receive frames until `complete`; returns all of them.
async fn until_complete(cli: &mut WsClient) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let f = cli.recv().await.expect("socket closed before complete");
        let done = f["type"] == "complete";
        out.push(f);
        if done {
            return out;
        }
    }
}

#[tokio::test]
async fn linux_job_runs_end_to_end_and_the_cli_sees_every_event_in_order() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let creds = json!({"android_keystore_password": "kspass"});
    let job = hub
        .insert_job(license, "linux", 10, b"tarball-bytes", creds.clone())
        .await;
    let mut cli = hub.cli(&job).await;
    let created = cli.expect("job_created").await;
    assert_eq!(created["job_id"], job.as_str());
    assert_eq!(created["position"], 1);
    assert!(created["estimated_wait_secs"].is_null());

    let mut worker = hub.worker("linux-1", &["linux", "android"], 2).await;
    let assign = worker.assignment().await;
    assert_eq!(assign["job_id"], job.as_str());
    assert_eq!(assign["credentials"], creds);
    assert_eq!(assign["manifest"]["targets"], json!(["linux"]));
    assert_eq!(
        assign["tarball_url"],
        hub.url(&format!("/api/v1/tarball/{job}"))
    );
    assert_eq!(
        assign["artifact_upload_url"],
        hub.url(&format!("/api/v1/artifact/upload/{job}"))
    );
    let token = assign["auth_token"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(token).unwrap().get_version_num(), 4);
    hub.wait_state(&job, "assigned").await;

    worker
        .send(json!({"type":"stage","job_id":job,"stage":"compiling","message":"Compiling"}))
        .await;
    worker.send(json!({"type":"log","job_id":job,"stage":"compiling","line":"warning: x","stream":"stderr"})).await;
    worker.send(json!({"type":"progress","job_id":job,"stage":"compiling","percent":55.4,"message":null})).await;
    hub.wait_state(&job, "running").await;
    hub.insert_artifact(&job, "app-linux.tar.gz", "linux", b"artifact-bytes")
        .await;
    worker.send(json!({"type":"complete","job_id":job,"success":true,"duration_secs":1.5,"artifacts":[{"name":"app-linux.tar.gz","size":14,"sha256":"x"}]})).await;

    let frames = until_complete(&mut cli).await;
    let types = frame_types(&frames);
    let tail: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| *t != "queue_update")
        .collect();
    assert_eq!(
        tail,
        ["stage", "log", "progress", "artifact_ready", "complete"]
    );
    let progress = &frames[types.iter().position(|t| t == "progress").unwrap()];
    assert_eq!(progress["percent"], 55);
    let ready = &frames[types.iter().position(|t| t == "artifact_ready").unwrap()];
    assert_eq!(ready["artifact_name"], "app-linux.tar.gz");
    assert_eq!(ready["artifact_size"], 14);
    assert_eq!(ready["expires_in_secs"], 600);
    assert!(ready.get("download_path").is_none());
    assert!(ready["download_url"]
        .as_str()
        .unwrap()
        .starts_with(&hub.url("/api/v1/dl/")));
    let complete = frames.last().unwrap();
    assert_eq!(complete["success"], true);
    assert_eq!(complete["artifacts"][0]["name"], "app-linux.tar.gz");
    assert!(complete["duration_secs"].is_number());

    hub.wait_state(&job, "completed").await;
    let usage: i64 = sqlx::query_scalar("SELECT publishes FROM license_usage WHERE license_id = ?")
        .bind(license)
        .fetch_one(hub.pool())
        .await
        .unwrap();
    assert_eq!(usage, 1);
    let creds_left: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT credentials_enc FROM jobs WHERE id = ?")
            .bind(&job)
            .fetch_one(hub.pool())
            .await
            .unwrap();
    assert!(
        creds_left.is_none(),
        "credentials are deleted when the job ends"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_target_without_workers_never_delays_another_target() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("free").await;
    let stuck = hub.insert_job(license, "macos", 1, b"t", json!({})).await;
    let runnable = hub.insert_job(license, "linux", 1, b"t", json!({})).await;
    let mut worker = hub.worker("linux-only", &["linux"], 1).await;
    let assign = worker.assignment().await;
    assert_eq!(assign["job_id"], runnable.as_str());
    assert_eq!(hub.job_state(&stuck).await, "queued");
    hub.stop().await;
}

#[tokio::test]
async fn pro_jobs_are_dispatched_before_earlier_free_jobs() {
    let hub = TestHub::start().await;
    let (_, free) = hub.insert_license("free").await;
    let (_, pro) = hub.insert_license("pro").await;
    let mut free_jobs = Vec::new();
    for _ in 0..3 {
        free_jobs.push(hub.insert_job(free, "linux", 1, b"t", json!({})).await);
    }
    let pro_job = hub.insert_job(pro, "linux", 10, b"t", json!({})).await;
    hub.outbox_drained().await;
    let mut worker = hub.worker("w", &["linux"], 1).await;
    let first = worker.assignment().await;
    assert_eq!(first["job_id"], pro_job.as_str());
    hub.stop().await;
}

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

#[tokio::test]
async fn cancelling_a_queued_job_ends_it_and_a_running_job_is_cancelled_through_its_worker() {
    let hub = TestHub::start().await;
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

#[tokio::test]
async fn error_then_complete_frees_the_slot_exactly_once() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let a = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("single", &["linux"], 1).await;
    worker.assignment().await;
    worker.send(json!({"type":"error","job_id":a,"code":"INTERNAL_ERROR","message":"Compilation failed","stage":"compiling"})).await;
    hub.wait_state(&a, "running").await;
    assert_eq!(
        hub.dispatcher.registry.free_slots("linux"),
        0,
        "error does not free the slot"
    );
    worker.send(json!({"type":"complete","job_id":a,"success":false,"duration_secs":1.0,"artifacts":[]})).await;
    hub.wait_state(&a, "failed").await;
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

#[tokio::test]
async fn a_wrong_worker_secret_gets_auth_failed_and_a_close() {
    let hub = TestHub::start().await;
    let mut w = FakeWorker::connect(
        &hub.ws_url(),
        json!({"type":"worker_hello","name":"evil","secret":"wrong","capabilities":["linux"]}),
    )
    .await;
    let err = w.ws.recv().await.expect("error frame");
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "AUTH_FAILED");
    let (code, _) = w.ws.closed().await.expect("close frame");
    assert_eq!(code, 1008);
    // A hello without a secret is rejected the same way.
    let mut w = FakeWorker::connect(
        &hub.ws_url(),
        json!({"type":"worker_hello","name":"nosecret"}),
    )
    .await;
    assert_eq!(
        w.ws.recv().await.expect("error frame")["code"],
        "AUTH_FAILED"
    );
    hub.stop().await;
}

#[tokio::test]
async fn malformed_binary_and_unknown_frames_are_ignored_and_the_session_survives() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut ws = WsClient::connect(&hub.ws_url()).await;
    // Before identification: garbage, binary and malformed frames do not count.
    ws.send_raw(WsMessage::Text("not json".into())).await;
    ws.send_raw(WsMessage::Binary(vec![0, 1, 2].into())).await;
    ws.send(json!({"type":"subscribe"})).await;
    ws.send(json!({"type":"worker_hello","name":"w","secret":hub.worker_secret(),"capabilities":["linux"]})).await;
    let assign = ws.expect("job_assign").await;
    assert_eq!(assign["job_id"], job.as_str());
    // After identification: unknown types, bad fields and legacy frames are dropped.
    ws.send(json!({"type":"launch_missiles","job_id":job}))
        .await;
    ws.send(json!({"type":"progress","job_id":job,"stage":"x","percent":"lots"}))
        .await;
    ws.send(json!({"type":"artifact_ready","job_id":job,"path":"/etc/passwd"}))
        .await;
    ws.send(json!({"type":"stage","job_id":job,"stage":"compiling","message":"still alive"}))
        .await;
    hub.wait_state(&job, "running").await;
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM job_events WHERE job_id = ? ORDER BY seq")
            .bind(&job)
            .fetch_all(hub.pool())
            .await
            .unwrap();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k != "queue_update")
            .collect::<Vec<_>>(),
        ["stage"]
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_first_frame_that_is_neither_hello_nor_subscribe_closes_the_connection() {
    let hub = TestHub::start().await;
    let mut ws = WsClient::connect(&hub.ws_url()).await;
    ws.send(json!({"type":"stage","job_id":"x","stage":"s","message":"m"}))
        .await;
    let (code, reason) = ws.closed().await.expect("close frame");
    assert_eq!(code, 1008);
    assert!(reason.contains("worker_hello"));
    hub.stop().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_only_that_connection() {
    let hub = TestHub::start().await;
    let mut ws = WsClient::connect(&hub.ws_url()).await;
    ws.send_raw(WsMessage::Text("x".repeat(2 * 1024 * 1024).into()))
        .await;
    assert!(ws
        .recv_within(perry_hub_tests::WAIT)
        .await
        .expect("closes promptly")
        .is_none());
    // The hub still serves new connections.
    let mut cli = WsClient::connect(&hub.ws_url()).await;
    cli.send(json!({"type":"subscribe","job_id": uuid::Uuid::new_v4().to_string()}))
        .await;
    let err = cli.expect("error").await;
    assert_eq!(err["code"], "JOB_NOT_FOUND");
    hub.stop().await;
}

#[tokio::test]
async fn a_version_mismatch_gets_update_perry_and_no_job_until_update_result() {
    let hub = TestHub::start().await;
    sqlx::query(
        "INSERT INTO settings (name, value, updated_ms) VALUES ('expected_version', '0.9.9', 0)",
    )
    .execute(hub.pool())
    .await
    .unwrap();
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("old", &["linux"], 1).await;
    assert_eq!(worker.ws.recv().await.unwrap()["type"], "update_perry");
    hub.outbox_drained().await;
    assert_eq!(
        hub.job_state(&job).await,
        "queued",
        "no dispatch while updating"
    );
    worker.send(json!({"type":"update_result","success":true,"old_version":"0.5.0","new_version":"0.9.9"})).await;
    assert_eq!(worker.assignment().await["job_id"], job.as_str());
    hub.stop().await;
}

/// A local stand-in for the Polar API that records each request's bearer and body.
async fn fake_polar() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
) {
    use axum::{http::HeaderMap, routing::post, Json, Router};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new().route(
        "/v1/events",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let tx = tx.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send((auth, body));
                Json(json!({"inserted": 1}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test]
async fn a_pro_publish_past_the_monthly_limit_is_billed_to_polar_once() {
    let (polar_url, mut billed) = fake_polar().await;
    let settings = dispatcher::Settings {
        polar: shared::config::PolarConfig {
            access_token: shared::config::Secret::new("polar-token-123"),
            meter_publish: "meter-1".into(),
            api_url: polar_url,
        },
        ..dispatcher::Settings::default()
    };
    let hub = TestHub::start_with(perry_hub_tests::HubOptions {
        dispatcher: Some(settings),
        ..Default::default()
    })
    .await;
    let (_, license) = hub.insert_license("pro").await;
    let account = uuid::Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO accounts (id, github_id, github_username, tier, polar_customer_id, created_ms) VALUES (?, '42', 'octo', 'pro', 'cus_1', 0)")
        .bind(&account)
        .execute(hub.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE licenses SET account_id = ?, device_bound = FALSE WHERE id = ?")
        .bind(&account)
        .bind(license)
        .execute(hub.pool())
        .await
        .unwrap();
    let period = shared::clock::current_period();
    sqlx::query("INSERT INTO license_usage (license_id, period, publishes) VALUES (?, ?, 50)")
        .bind(license)
        .bind(&period)
        .execute(hub.pool())
        .await
        .unwrap();

    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("w", &["linux"], 1).await;
    worker.assignment().await;
    hub.insert_artifact(&job, "a.tar.gz", "linux", b"x").await;
    worker.send(json!({"type":"complete","job_id":job,"success":true,"duration_secs":1.0,"artifacts":[]})).await;
    let (auth, body) = tokio::time::timeout(perry_hub_tests::WAIT, billed.recv())
        .await
        .expect("billing call")
        .expect("request");
    assert_eq!(auth, "Bearer polar-token-123");
    assert_eq!(
        body,
        json!({"customer_id":"cus_1","meter_id":"meter-1","value":1})
    );
    // A repeated complete for the finished job is ignored and bills nothing more.
    worker.send(json!({"type":"complete","job_id":job,"success":true,"duration_secs":1.0,"artifacts":[]})).await;
    hub.wait_state(&job, "completed").await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), billed.recv())
            .await
            .is_err()
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_requeued_job_goes_ahead_of_jobs_submitted_after_it() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("free").await;
    let first = hub.insert_job(license, "linux", 1, b"t", json!({})).await;
    let mut lost = hub.worker("lost", &["linux"], 1).await;
    assert_eq!(lost.assignment().await["job_id"], first.as_str());
    let later = hub.insert_job(license, "linux", 1, b"t", json!({})).await;
    hub.outbox_drained().await;
    lost.ws.close().await;
    // Past the re-attach window: the finisher's reaper requeues the first job.
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    while hub
        .db()
        .count("workers", "disconnected_ms IS NOT NULL")
        .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "disconnect not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query("UPDATE jobs SET lease_expires_ms = 1 WHERE id = ?")
        .bind(&first)
        .execute(hub.pool())
        .await
        .unwrap();
    hub.wait_state(&first, "queued").await;
    hub.outbox_drained().await;
    let mut next = hub.worker("next", &["linux"], 1).await;
    assert_eq!(
        next.assignment().await["job_id"],
        first.as_str(),
        "the requeued job keeps its place"
    );
    assert_eq!(hub.job_state(&later).await, "queued");
    hub.stop().await;
}
