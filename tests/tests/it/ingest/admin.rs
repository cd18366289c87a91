//! Admin endpoints (§3.11, §3.12) and `/status` (§3.1), from worker presence in MySQL.

use serde_json::json;

use perry_hub_tests::TestHub;

use super::support::{assert_error, cli_form, manifest};

#[tokio::test]
async fn update_perry_persists_the_version_and_reaches_idle_workers() {
    let hub = TestHub::start().await;
    let mut worker = hub.worker("linux-7", &["linux", "android"], 2).await;
    let admin = format!("Bearer {}", hub.admin_secret());
    let admin_h = [("authorization", admin.as_str())];
    // The hello is recorded asynchronously: wait until the admin view lists the worker.
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    let listed = loop {
        let (status, body) = hub.admin_workers(&admin_h).await;
        assert_eq!(status, 200);
        if body["workers"].as_array().is_some_and(|w| !w.is_empty()) {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker never listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        listed,
        json!({"expected_version": "", "drained": [], "workers": [{"name": "linux-7", "perry_version": "0.5.0", "capabilities": ",linux,android,", "busy": false,
            "slots": 2, "jobs": [], "draining": false,
            "connected_ms": listed["workers"][0]["connected_ms"], "last_seen_ms": listed["workers"][0]["last_seen_ms"]}]})
    );

    let (status, body) = hub
        .admin_update_perry(&json!({"expected_version": "0.6.0"}), &admin_h)
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"ok": true, "workers_notified": 1, "expected_version": "0.6.0", "workers": [{"name": "linux-7", "perry_version": "0.5.0", "busy": false}]})
    );
    // The broadcast is live fan-out: one published before the dispatcher's own queue is bound
    // (it connects lazily at start) reaches nobody, so repeat the request until it arrives.
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    loop {
        match worker
            .ws
            .recv_within(std::time::Duration::from_millis(500))
            .await
        {
            Ok(Some(frame)) if frame["type"] == "update_perry" => break,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("worker socket closed"),
            Err(()) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "update_perry never reached the idle worker"
                );
                assert_eq!(hub.admin_update_perry(&json!({}), &admin_h).await.0, 200);
            }
        }
    }
    let shared::db::Text(stored) =
        sqlx::query_scalar("SELECT value FROM settings WHERE name = 'expected_version'")
            .fetch_one(hub.pool())
            .await
            .expect("setting");
    assert_eq!(stored, "0.6.0");
    let (_, status) = hub.get_status().await;
    assert_eq!(status["expected_perry_version"], "0.6.0");
    assert_eq!(status["supported_targets"], json!(["android", "linux"]));
    assert_eq!(status["connected_workers"], 1);
    let empty = hub
        .post_body(
            "/api/v1/admin/update-perry",
            "application/json",
            Vec::new(),
            &admin_h,
        )
        .await;
    assert_eq!(empty.1["expected_version"], "0.6.0");
    assert_error(
        &hub.admin_update_perry(&json!({"expected_version": "1; rm -rf /"}), &admin_h)
            .await,
        400,
        "BAD_REQUEST",
    );
    hub.stop().await;
}

#[tokio::test]
async fn status_reports_the_queue_and_no_targets_without_workers() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    assert_eq!(
        hub.submit_build(
            cli_form(&manifest("ios", "com.example.st"), &json!({}), b"t", &key),
            &[]
        )
        .await
        .0,
        200
    );

    let (status, body) = hub.get_status().await;

    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "ok", "queue_length": 1, "connected_workers": 0, "perry_version": env!("CARGO_PKG_VERSION"), "expected_perry_version": "", "supported_targets": []})
    );
    hub.stop().await;
}
