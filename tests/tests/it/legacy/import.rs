//! The current layout: a pro licence linked to an account with a token, a bound free licence, a
//! licence near its monthly limit, and rows that must be skipped.

use perry_hub_tests::TestHub;
use serde_json::json;
use shared::auth::hash_token;

use super::{counts, snapshot, submit, this_and_last_month, LegacyDb};

pub const PRO_KEY: &str = "PRO-1A2B-3C4D-5E6F";
pub const PRO_TOKEN: &str = "7f1c2d3e-0000-4000-8000-00000000a001";
const FREE_TOKEN: &str = "7f1c2d3e-0000-4000-8000-00000000a002";
const BOUND_KEY: &str = "FREE-B0B0-0000-0001";
const QUOTA_KEY: &str = "FREE-C0C0-0000-0002";
const ODD_KEY: &str = "FREE-D0D0-0000-0003";
const MALFORMED_KEY: &str = "FREE-E0E0-0000-0004";
const GOLD_KEY: &str = "GOLD-F0F0-0000-0005";

/// The original's data in the current layout (see the module doc).
pub async fn seed(db: &LegacyDb) {
    let (this, last) = this_and_last_month();
    let all = r#"["macos","ios","android","windows","linux"]"#;
    db.exec(&format!(
        "INSERT INTO accounts (id, github_username, github_id, email, tier, polar_customer_id, \
         api_token, has_payment_method, created_at) VALUES \
         ('acc-pro-0001', 'octo', '1001', 'octo@example.com', 'pro', 'cus_1', '{PRO_TOKEN}', TRUE, 1000), \
         ('acc-free-0002', 'cat', '1002', '', 'free', NULL, '{FREE_TOKEN}', FALSE, 2000)"
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO licenses (licenseKey, tier, githubUsername, platforms, createdAt, notes, \
         account_id, device_bound, project_bundle_id) VALUES \
         ('{PRO_KEY}', 'pro', 'octo', '{all}', 1000, 'vip', 'acc-pro-0001', FALSE, NULL), \
         ('{BOUND_KEY}', 'free', '', '[\"macos\"]', 2000, NULL, NULL, TRUE, 'com.example.bound'), \
         ('{QUOTA_KEY}', 'free', '', '[\"macos\"]', 3000, NULL, NULL, FALSE, NULL), \
         ('{ODD_KEY}', 'free', '', '[\"macos\",\"ios\",\"android\"]', 4000, NULL, NULL, FALSE, NULL), \
         ('{MALFORMED_KEY}', 'free', '', 'macos, ios', 5000, NULL, NULL, TRUE, NULL), \
         ('{GOLD_KEY}', 'gold', '', '[\"macos\"]', 6000, NULL, NULL, FALSE, NULL)"
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO usage_counters (license_key, period, publishes, deep_verifies) VALUES \
         ('{PRO_KEY}', '{this}', 7, 1), ('{PRO_KEY}', '{last}', 40, 0), \
         ('{QUOTA_KEY}', '{this}', 14, 0), ('{QUOTA_KEY}', '{last}', 3, 0), \
         ('{GOLD_KEY}', '{this}', 2, 0), ('FREE-9999-9999-9999', '{this}', 1, 0)"
    ))
    .await;
}

/// A hub account that already holds the free account's token (a duplicate to skip).
async fn hub_account_with_free_token(hub: &TestHub) {
    sqlx::query("INSERT INTO accounts (id, github_id, github_username, tier, created_ms) VALUES ('hub-acc', '9999', 'other', 'free', 1)")
        .execute(hub.pool())
        .await
        .expect("hub account");
    sqlx::query(
        "INSERT INTO api_tokens (account_id, token_hash, created_ms) VALUES ('hub-acc', ?, 1)",
    )
    .bind(&hash_token(FREE_TOKEN)[..])
    .execute(hub.pool())
    .await
    .expect("hub token");
}

#[tokio::test]
async fn imported_keys_and_tokens_keep_working_through_the_cli() {
    let hub = TestHub::start().await;
    let db = LegacyDb::create(false).await;
    seed(&db).await;
    hub_account_with_free_token(&hub).await;
    let before = snapshot(hub.pool()).await;

    let mut args = db.args();
    args.dry_run = true;
    let dry = ::legacy::run(&args, hub.pool()).await.expect("dry run");
    println!("{dry}");
    assert_eq!(
        snapshot(hub.pool()).await,
        before,
        "a dry run writes nothing"
    );
    args.dry_run = false;
    let report = ::legacy::run(&args, hub.pool()).await.expect("import");

    for r in [&dry, &report] {
        assert_eq!(counts(r, "accounts"), (2, 0, 0, 0));
        assert_eq!(counts(r, "api_tokens"), (1, 0, 0, 1));
        assert_eq!(counts(r, "licenses"), (4, 0, 0, 2));
        assert_eq!(counts(r, "license_usage"), (4, 0, 0, 2));
        assert!(!r.succeeded(false) && r.succeeded(true));
    }
    assert_eq!(dry.table("licenses"), report.table("licenses"));
    let text = report.to_string();
    for reason in [
        "malformed platforms JSON",
        "unknown tier \"gold\"",
        "duplicate token (another hub account has it)",
        "its licence (licenses row 6) was skipped",
        "no licence with this key",
        "platforms disagreed with tier free",
    ] {
        assert!(text.contains(reason), "{reason} in {text}");
    }
    for secret in [
        PRO_KEY, PRO_TOKEN, FREE_TOKEN, BOUND_KEY, GOLD_KEY, "perry@",
    ] {
        assert!(!text.contains(secret) && !dry.to_string().contains(secret));
    }
    let db_hub = hub.db();
    let hashed = format!("key_hash = UNHEX('{}')", hex::encode(hash_token(PRO_KEY)));
    assert_eq!(
        db_hub
            .count(
                "licenses",
                &format!("{hashed} AND account_id = 'acc-pro-0001'")
            )
            .await,
        1
    );

    let (status, body) = submit(&hub, "com.example.any", Some(PRO_KEY), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = submit(&hub, "com.example.other", None, Some(PRO_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let account = hub
        .http
        .get(hub.url("/api/v1/account"))
        .bearer_auth(PRO_TOKEN)
        .send()
        .await
        .expect("account");
    let account: serde_json::Value = account.json().await.expect("account json");
    assert_eq!(account["tier"], "pro");
    assert_eq!(account["usage"]["publishes"], 7, "{account}");

    let verify = |key: &'static str| {
        hub.http
            .post(hub.url("/api/v1/license/verify"))
            .json(&json!({ "license_key": key }))
            .send()
    };
    let odd: serde_json::Value = verify(ODD_KEY)
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (odd["tier"].clone(), odd["platforms"].clone()),
        (json!("free"), json!(["macos"]))
    );

    let (status, body) = submit(&hub, "com.example.bound", Some(BOUND_KEY), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = submit(&hub, "com.example.second", Some(BOUND_KEY), None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("ACCOUNT_REQUIRED"))
    );

    let (status, body) = submit(&hub, "com.example.quota", Some(QUOTA_KEY), None).await;
    assert_eq!(status, 200, "14 of 15 used: one more fits: {body}");
    let (status, body) = submit(&hub, "com.example.quota", Some(QUOTA_KEY), None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (429, json!("PUBLISH_LIMIT_REACHED"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("15/15")),
        "{body}"
    );

    for key in [MALFORMED_KEY, GOLD_KEY] {
        let (status, body) = submit(&hub, "com.example.any", Some(key), None).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (401, json!("LICENSE_INVALID"))
        );
    }
    db.drop_db().await;
    hub.stop().await;
}

#[tokio::test]
async fn running_twice_changes_nothing_and_updates_need_asking() {
    let hub = TestHub::start().await;
    let db = LegacyDb::create(false).await;
    seed(&db).await;
    let mut args = db.args();
    args.allow_skips = true;
    ::legacy::run(&args, hub.pool())
        .await
        .expect("first import");
    let first = snapshot(hub.pool()).await;

    let again = ::legacy::run(&args, hub.pool())
        .await
        .expect("second import");

    assert_eq!(snapshot(hub.pool()).await, first);
    assert_eq!(counts(&again, "accounts"), (0, 2, 0, 0));
    assert_eq!(counts(&again, "api_tokens"), (0, 2, 0, 0));
    assert_eq!(counts(&again, "licenses"), (0, 4, 0, 2));
    assert_eq!(counts(&again, "license_usage"), (0, 4, 0, 2));

    let (this, _) = this_and_last_month();
    db.exec(&format!(
        "UPDATE licenses SET tier = 'pro' WHERE licenseKey = '{QUOTA_KEY}'"
    ))
    .await;
    db.exec(&format!(
        "UPDATE usage_counters SET publishes = 15 WHERE license_key = '{QUOTA_KEY}' AND period = '{this}'"
    ))
    .await;
    let kept = ::legacy::run(&args, hub.pool())
        .await
        .expect("import without --update");
    assert_eq!(
        snapshot(hub.pool()).await,
        first,
        "a differing row is left alone"
    );
    assert_eq!(counts(&kept, "licenses"), (0, 4, 0, 2));
    assert!(kept
        .to_string()
        .contains("left alone (use --update to overwrite)"));

    args.update = true;
    let updated = ::legacy::run(&args, hub.pool())
        .await
        .expect("import with --update");
    assert_eq!(counts(&updated, "licenses"), (0, 3, 1, 2));
    assert_eq!(counts(&updated, "license_usage"), (0, 3, 1, 2));
    let db_hub = hub.db();
    let hashed = format!("key_hash = UNHEX('{}')", hex::encode(hash_token(QUOTA_KEY)));
    assert_eq!(
        db_hub
            .count("licenses", &format!("{hashed} AND tier = 'pro'"))
            .await,
        1
    );
    assert_eq!(
        db_hub
            .count(
                "license_usage",
                &format!("publishes = 15 AND period = '{this}'")
            )
            .await,
        1
    );
    db.drop_db().await;
    hub.stop().await;
}
