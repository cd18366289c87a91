//! Overage billing to Polar.

use std::time::Duration;

use perry_hub_tests::TestHub;
use serde_json::{json, Value};

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
