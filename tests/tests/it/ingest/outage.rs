//! With MySQL unreachable the API answers at once with 503 `UNAVAILABLE` and `Retry-After`, an
//! outage the CLI can wait out, rather than 500 `INTERNAL_ERROR`, which reads as a bug.

use perry_hub_tests::{
    api::{assert_error, cli_form, manifest},
    TestHub,
};
use serde_json::json;

#[tokio::test]
async fn with_the_database_unreachable_the_api_answers_503_with_retry_after() {
    let hub = TestHub::start().await;
    let (key, _) = hub.insert_license("pro").await;
    // No connection can be had any more, as in an outage.
    hub.pool().close().await;

    let reply = hub
        .submit_build(
            cli_form(
                &manifest("linux", "com.example.app"),
                &json!({}),
                b"t",
                &key,
            ),
            &[],
        )
        .await;
    assert_error(&reply, 503, "UNAVAILABLE");
    assert_error(&hub.get_status().await, 503, "UNAVAILABLE");
    let resp = hub
        .http
        .get(hub.url("/api/v1/status"))
        .send()
        .await
        .expect("status");
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "07-mysql-unreachable",
        fault: "MySQL unreachable",
        outcome: "Submissions, /status and other API requests answered 503 UNAVAILABLE with Retry-After: 5 at once; /readyz answered 503.".to_owned(),
        test: "ingest::outage::with_the_database_unreachable_the_api_answers_503_with_retry_after",
    });
    hub.stop().await;
}
