//! The older layout (licences without `account_id`, `device_bound`, `project_bundle_id`) and
//! sources that are not the original's at all.

use perry_hub_tests::TestHub;

use super::{counts, snapshot, submit, this_and_last_month, LegacyDb};

const OLD_KEY: &str = "FREE-0101-0202-0303";
const OLD_TOKEN: &str = "0d0e0f10-0000-4000-8000-00000000b001";

#[tokio::test]
async fn the_older_layout_imports_keys_unbound_with_their_usage() {
    let hub = TestHub::start().await;
    let db = LegacyDb::create(true).await;
    let (this, _) = this_and_last_month();
    db.exec(&format!(
        "INSERT INTO licenses (licenseKey, tier, githubUsername, platforms, createdAt) VALUES \
         ('{OLD_KEY}', 'free', 'old', '[\"macos\"]', 1000)"
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO accounts (id, github_username, github_id, tier, api_token, created_at) \
         VALUES ('acc-old-0001', 'old', '77', 'free', '{OLD_TOKEN}', 1000)"
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO usage_counters (license_key, period, publishes) VALUES ('{OLD_KEY}', '{this}', 13)"
    ))
    .await;

    let report = ::legacy::run(&db.args(), hub.pool()).await.expect("import");

    assert_eq!(
        report.layout,
        "older layout (licenses without account_id, device_bound, project_bundle_id)"
    );
    assert!(report.succeeded(false), "{report}");
    assert_eq!(counts(&report, "licenses"), (1, 0, 0, 0));
    assert_eq!(counts(&report, "api_tokens"), (1, 0, 0, 0));
    assert_eq!(counts(&report, "license_usage"), (1, 0, 0, 0));
    // The original never bound these keys: a second project is accepted too, until the
    // imported usage (13 of 15) plus the builds in flight reaches the monthly limit.
    for project in ["com.example.one", "com.example.two"] {
        let (status, body) = submit(&hub, project, Some(OLD_KEY), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = submit(&hub, "com.example.three", Some(OLD_KEY), None).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "PUBLISH_LIMIT_REACHED");
    let (status, body) = submit(&hub, "com.example.two", None, Some(OLD_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    db.drop_db().await;
    hub.stop().await;
}

#[tokio::test]
async fn a_source_that_is_not_the_original_is_refused_and_nothing_is_written() {
    let hub = TestHub::start().await;
    let db = LegacyDb::create(false).await;
    db.exec("DROP TABLE usage_counters").await;
    let before = snapshot(hub.pool()).await;

    let missing = ::legacy::run(&db.args(), hub.pool()).await.unwrap_err();
    let mut args = db.args();
    args.from = shared::config::Secret::new("postgres://u:hunter2@h/db");
    let bad_url = ::legacy::run(&args, hub.pool()).await.unwrap_err();

    assert!(
        matches!(missing, ::legacy::Error::NotLegacy(_)),
        "{missing}"
    );
    assert!(missing.to_string().contains("usage_counters"));
    assert!(matches!(bad_url, ::legacy::Error::SourceUrl));
    assert!(!bad_url.to_string().contains("hunter2"));
    assert!(!format!("{args:?}").contains("hunter2"));
    assert_eq!(snapshot(hub.pool()).await, before);
    db.drop_db().await;
    hub.stop().await;
}
