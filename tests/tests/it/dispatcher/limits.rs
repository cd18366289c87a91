//! What a worker sends is bounded before the hub keeps or relays it (DEC-17): hello strings,
//! failure reasons, log lines, and frames in both directions.

use perry_hub_tests::{FakeWorker, TestHub};
use serde_json::json;

/// The stored payloads of a job's events of one kind.
async fn payloads(hub: &TestHub, job_id: &str, kind: &str) -> Vec<String> {
    let payloads: Vec<shared::db::Text> = sqlx::query_scalar(
        "SELECT payload FROM job_events WHERE job_id = ? AND kind = ? ORDER BY seq",
    )
    .bind(job_id)
    .bind(kind)
    .fetch_all(hub.pool())
    .await
    .expect("events");
    payloads.into_iter().map(String::from).collect()
}

#[tokio::test]
async fn hello_strings_are_cleaned_and_bounded() {
    let hub = TestHub::start().await;
    let name = format!("evil\u{1b}[2J\n{}", "n".repeat(300));
    let version = format!("0.5.{}\r\n", "9".repeat(100));
    let mut worker = FakeWorker::connect(
        &hub.ws_url(),
        json!({"type":"worker_hello","name":name,"secret":hub.worker_secret(),
               "capabilities":["linux"],"perry_version":version}),
    )
    .await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;

    assert_eq!(worker.assignment().await["job_id"], job.as_str());
    let (stored_name, stored_version): (String, String) =
        sqlx::query_as("SELECT name, perry_version FROM workers")
            .fetch_one(hub.pool())
            .await
            .expect("worker row");
    assert_eq!(stored_name.chars().count(), 255);
    assert!(stored_name.starts_with("evil[2J"), "{stored_name:?}");
    assert!(!stored_name.chars().any(char::is_control));
    assert_eq!(stored_version.len(), 64);
    assert!(stored_version.starts_with("0.5.999"));
    hub.stop().await;
}

#[tokio::test]
async fn failure_reasons_are_stored_and_relayed_bounded() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let huge = "e".repeat(200 * 1024);
    let mut worker = hub.worker("w", &["linux"], 1).await;

    // The worker's `error` message.
    let a = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    worker.assignment().await;
    worker
        .send(json!({"type":"error","job_id":a,"code":"INTERNAL_ERROR","message":huge}))
        .await;
    worker
        .send(json!({"type":"complete","job_id":a,"success":false,"duration_secs":1.0,"artifacts":[]}))
        .await;
    hub.wait_state(&a, "failed").await;

    // `complete.error` alone.
    let b = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    worker.assignment().await;
    worker
        .send(json!({"type":"complete","job_id":b,"success":false,"duration_secs":1.0,"artifacts":[],"error":huge}))
        .await;
    hub.wait_state(&b, "failed").await;

    for job in [&a, &b] {
        let errors = payloads(&hub, job, "error").await;
        assert_eq!(errors.len(), 1, "{job}");
        assert!(
            errors[0].len() < 4 * 1024,
            "{job}: {} bytes",
            errors[0].len()
        );
        let kept: shared::db::Text =
            sqlx::query_scalar("SELECT error_message FROM jobs WHERE id = ?")
                .bind(job)
                .fetch_one(hub.pool())
                .await
                .expect("job");
        assert!(kept.0.chars().count() <= job::transition::MAX_REASON_CHARS);
    }
    hub.stop().await;
}

#[tokio::test]
async fn a_worker_gets_a_job_assign_with_a_large_keystore() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let keystore = perry_hub_tests::api::b64(&vec![7u8; 2_560 * 1024]);
    let job = hub
        .insert_job(
            license,
            "android",
            10,
            b"t",
            json!({"android_keystore": keystore, "android_keystore_password": "pw"}),
        )
        .await;
    let mut worker = hub.worker("w", &["android"], 1).await;

    let assign = worker.assignment().await;

    assert_eq!(assign["job_id"], job.as_str());
    assert_eq!(assign["credentials"]["android_keystore"], keystore.as_str());
    // The socket is still up: the worker's frames are taken.
    worker
        .send(json!({"type":"stage","job_id":job,"stage":"compiling","message":"Compiling"}))
        .await;
    hub.wait_state(&job, "running").await;
    hub.stop().await;
}

#[tokio::test]
async fn an_over_long_log_line_is_cut_not_the_socket() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("w", &["linux"], 1).await;
    worker.assignment().await;
    let line = "x".repeat(2 * 1024 * 1024);

    worker
        .send(json!({"type":"log","job_id":job,"stage":"compiling","line":line,"stream":"stderr"}))
        .await;
    worker
        .send(json!({"type":"stage","job_id":job,"stage":"bundling","message":"Bundling"}))
        .await;

    hub.wait_state(&job, "running").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while payloads(&hub, &job, "stage").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stage after the line never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logs = payloads(&hub, &job, "log").await;
    assert_eq!(logs.len(), 1);
    let stored: serde_json::Value = serde_json::from_str(&logs[0]).expect("json");
    let kept = stored["line"].as_str().expect("line");
    assert!(
        kept.len() < protocol::MAX_LOG_LINE_BYTES + 100,
        "{} bytes",
        kept.len()
    );
    assert!(kept.ends_with(&format!("[line cut at 16384 of {} bytes]", line.len())));
    hub.stop().await;
}

#[tokio::test]
async fn before_identifying_and_as_a_subscriber_the_small_limit_holds() {
    let hub = TestHub::start().await;
    let mut anon = perry_hub_tests::WsClient::connect(&hub.ws_url()).await;
    let big = "x".repeat(2 * 1024 * 1024);
    anon.send(json!({"type":"subscribe","job_id":big})).await;
    let closed = anon.closed().await;
    assert_eq!(closed.map(|(code, _)| code), Some(1009));
    hub.stop().await;
}
