//! Licence registration and verification (§3.2, §3.3).

use perry_hub_tests::TestHub;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::support::{self, assert_error};

#[tokio::test]
async fn register_mints_a_free_device_bound_key_stored_only_as_a_hash() {
    let hub = TestHub::start().await;

    let (status, body) = hub.register_license(&json!({}), &[]).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tier"], "free");
    assert_eq!(body["platforms"], json!(["macos"]));
    let key = body["license_key"].as_str().expect("key");
    assert!(key.starts_with("FREE-") && key.len() == 19, "{key}");
    let hash: shared::db::OptHex = sqlx::query_scalar(
        "SELECT HEX(key_hash) FROM licenses WHERE device_bound = TRUE AND tier = 'free'",
    )
    .fetch_one(hub.pool())
    .await
    .expect("licence");
    let hash = hash.0.expect("a key hash");
    assert_eq!(hash, Sha256::digest(key.as_bytes()).to_vec());
    // The CLI may also send no body at all.
    assert_eq!(
        hub.post_body(
            "/api/v1/license/register",
            "application/json",
            Vec::new(),
            &[]
        )
        .await
        .0,
        200
    );
    hub.stop().await;
}

#[tokio::test]
async fn verify_answers_valid_with_the_tier_or_invalid_with_nulls() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let (pro_key, _) = hub.insert_license("pro").await;

    let valid = hub.verify_license(&json!({"license_key": key}), &[]).await;
    assert_eq!(
        valid,
        (
            200,
            json!({"valid": true, "tier": "free", "platforms": ["macos"]})
        )
    );
    let pro = hub
        .verify_license(&json!({"license_key": pro_key}), &[])
        .await;
    assert_eq!(pro.1["tier"], "pro");
    assert_eq!(
        pro.1["platforms"],
        json!(["macos", "ios", "android", "windows", "linux"])
    );
    let invalid = hub
        .verify_license(&json!({"license_key": "FREE-0000-0000-0000"}), &[])
        .await;
    assert_eq!(
        invalid,
        (
            200,
            json!({"valid": false, "tier": null, "platforms": null})
        )
    );
    assert_error(
        &hub.post_body(
            "/api/v1/license/verify",
            "application/json",
            Vec::new(),
            &[],
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &hub.verify_license(&json!({}), &[]).await,
        400,
        "BAD_REQUEST",
    );
    hub.stop().await;
}

#[tokio::test]
async fn register_is_throttled_per_address_and_per_device() {
    let hub = support::hub_with(|s| {
        s.register_limit_per_addr = 3;
        s.register_limit_per_device = 1;
    })
    .await;

    let first = hub
        .register_license(&json!({"device_id": "device-a"}), &[])
        .await;
    assert_eq!(first.0, 200);
    let same_device = hub
        .register_license(&json!({"device_id": "device-a"}), &[])
        .await;
    assert_error(&same_device, 429, "RATE_LIMITED");
    assert_eq!(
        hub.register_license(&json!({"device_id": "device-b"}), &[])
            .await
            .0,
        200
    );
    assert_eq!(hub.register_license(&json!({}), &[]).await.0, 200);
    let per_address = hub.register_license(&json!({}), &[]).await;

    assert_error(&per_address, 429, "RATE_LIMITED");
    assert_eq!(
        hub.db().count("licenses", "").await,
        3,
        "refused registrations create nothing"
    );
    assert_eq!(
        hub.db()
            .count(
                "rate_events",
                "bucket LIKE 'register:device:%' AND bucket NOT LIKE '%device-a%'"
            )
            .await,
        2
    );
    hub.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_from_one_address_never_exceed_the_limit() {
    let hub = support::hub_with(|s| s.register_limit_per_addr = 5).await;

    let empty = json!({});
    let attempts = (0..30).map(|_| hub.register_license(&empty, &[]));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();

    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(accepted, 5, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(hub.db().count("licenses", "").await, 5);
    hub.stop().await;
}

#[tokio::test]
async fn ipv6_clients_share_their_64_and_every_address_shares_a_global_ceiling() {
    let hub = support::hub_with(|s| {
        s.trust_forwarded_for = true;
        s.register_limit_per_addr = 1;
        s.register_limit_global = 3;
    })
    .await;
    let empty = json!({});
    let from = |ip: &'static str| async {
        hub.register_license(&empty, &[("x-forwarded-for", ip)])
            .await
    };

    assert_eq!(from("2001:db8:1:2::1").await.0, 200);
    assert_error(&from("2001:db8:1:2:aaaa::9").await, 429, "RATE_LIMITED");
    assert_eq!(from("2001:db8:1:3::1").await.0, 200);
    assert_eq!(from("192.0.2.1").await.0, 200);
    // A fresh address, but the window's global ceiling (3) is reached.
    assert_error(&from("192.0.2.2").await, 429, "RATE_LIMITED");
    assert_eq!(hub.db().count("licenses", "").await, 3);
    hub.stop().await;
}
