//! What a worker sends is bounded before the hub keeps or relays it (DEC-16): hello strings,
//! failure reasons, log lines, and frames in both directions.

use perry_hub_tests::{FakeWorker, TestHub};
use serde_json::json;

/// The stored payloads of a job's events of one kind.
async fn payloads(hub: &TestHub, job_id: &str, kind: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT payload FROM job_events WHERE job_id = ? AND kind = ? ORDER BY seq")
        .bind(job_id)
        .bind(kind)
        .fetch_all(hub.pool())
        .await
        .expect("events")
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
        let kept: String = sqlx::query_scalar("SELECT error_message FROM jobs WHERE id = ?")
            .bind(job)
            .fetch_one(hub.pool())
            .await
            .expect("job");
        assert!(kept.chars().count() <= job::transition::MAX_REASON_CHARS);
    }
    hub.stop().await;
}
