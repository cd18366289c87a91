//! Identification and frame hygiene: secrets, malformed frames, size limits, versions.

use perry_hub_tests::{FakeWorker, TestHub, WsClient};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

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
