//! Guessing licence keys (DEC-24): failed lookups are counted per address and cut off.

use perry_hub_tests::{
    api::{cli_form, manifest, BOUNDARY},
    attacks::{self, Attack},
    TestHub,
};
use serde_json::{json, Value};

use super::support::{client_from, hub_with, OTHER_ADDR};

async fn verify(hub: &TestHub, from: &str, key: &str) -> (u16, Value) {
    let resp = client_from(from)
        .post(hub.url("/api/v1/license/verify"))
        .json(&json!({ "license_key": key }))
        .send()
        .await
        .expect("verify");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn submit(hub: &TestHub, from: &str, key: &str) -> (u16, Value) {
    let form = cli_form(
        &manifest("linux", "com.example.guess"),
        &json!({}),
        b"t",
        key,
    );
    let resp = client_from(from)
        .post(hub.url("/api/v1/build"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form)
        .send()
        .await
        .expect("submit");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn job_with_key(hub: &TestHub, from: &str, key: &str) -> u16 {
    client_from(from)
        .get(hub.url(&format!("/api/v1/jobs/{}", uuid::Uuid::new_v4())))
        .bearer_auth(key)
        .send()
        .await
        .expect("job")
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_address_guessing_licence_keys_is_refused_every_lookup_after_its_failures() {
    let hub = hub_with(|_| {}, |s| s.key_failures_per_addr = 3).await;
    let (real, _) = hub.insert_license("pro").await;
    let before = attacks::baseline(&hub).await;
    // Verify: three wrong guesses are answered as before, the fourth lookup is refused even
    // with the right key.
    for i in 0..3 {
        let (status, body) = verify(&hub, "127.0.0.1", &format!("PRO-0000-0000-000{i}")).await;
        assert_eq!((status, &body["valid"]), (200, &json!(false)), "{body}");
    }
    let (status, body) = verify(&hub, "127.0.0.1", &real).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("RATE_LIMITED")),
        "{body}"
    );
    let (status, body) = submit(&hub, "127.0.0.1", &real).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("RATE_LIMITED")),
        "{body}"
    );
    // Another address is unaffected.
    let (status, body) = verify(&hub, OTHER_ADDR, &real).await;
    assert_eq!((status, &body["valid"]), (200, &json!(true)), "{body}");
    // Build submissions and job lookups count too.
    let (status, _) = submit(&hub, "127.0.0.3", "FREE-0000-0000-0001").await;
    assert_eq!(status, 401);
    assert_eq!(
        job_with_key(&hub, "127.0.0.3", "FREE-0000-0000-0002").await,
        401
    );
    let (status, _) = submit(&hub, "127.0.0.3", "FREE-0000-0000-0003").await;
    assert_eq!(status, 401);
    let (status, body) = submit(&hub, "127.0.0.3", "FREE-0000-0000-0004").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("RATE_LIMITED")),
        "{body}"
    );
    assert_eq!(job_with_key(&hub, "127.0.0.3", &real).await, 429);
    assert_eq!(hub.db().count("jobs", "").await, 0);
    attacks::record(
        &Attack {
            slug: "licence-key-guessing",
            request: "`POST /api/v1/license/verify`, `POST /api/v1/build` and `GET /api/v1/jobs/{id}` with unknown keys from one address",
            limit: "`PERRY_HUB_KEY_FAILURES_PER_ADDR` per `PERRY_HUB_KEY_FAILURE_WINDOW_SECS` (3 in the test; 20 per hour by default)",
            response: "after 3 failures every key lookup from the address: `429 RATE_LIMITED`, also with the right key; other addresses unaffected",
        },
        before,
    );
    hub.stop().await;
}

#[tokio::test]
async fn licence_keys_are_stored_with_the_server_pepper_and_bare_rows_convert_on_use() {
    use shared::{config::Secret, license_hash::LicenseHashing};
    const PEPPER: &str = "attack-test-pepper-0123456789";
    let hub = perry_hub_tests::TestHub::start_with(perry_hub_tests::HubOptions {
        hub: Some(Box::new(|h| h.license_pepper = Secret::new(PEPPER))),
        ..perry_hub_tests::HubOptions::default()
    })
    .await;
    let before = attacks::baseline(&hub).await;
    let hashing = LicenseHashing::new(&Secret::new(PEPPER));
    let stored = |key: &str| hex::encode(hashing.hashes(key).1);
    let bare = |key: &str| hex::encode(shared::auth::hash_token(key));
    // A new key is stored keyed: its bare SHA-256 is nowhere in the table.
    let (status, body) = hub.register_license(&json!({}), &[]).await;
    assert_eq!(status, 200, "{body}");
    let key = body["license_key"].as_str().expect("key").to_owned();
    let db = hub.db();
    assert_eq!(
        db.count("licenses", &format!("key_hash = UNHEX('{}')", bare(&key)))
            .await,
        0
    );
    assert_eq!(
        db.count(
            "licenses",
            &format!("key_hash = UNHEX('{}') AND key_hash_kind = 1", stored(&key))
        )
        .await,
        1
    );
    // A row stored bare (before the pepper) still works, and is converted by its first use.
    let (old, _) = hub.insert_license("pro").await;
    let (status, body) = verify(&hub, "127.0.0.1", &old).await;
    assert_eq!((status, &body["valid"]), (200, &json!(true)), "{body}");
    assert_eq!(
        db.count("licenses", &format!("key_hash = UNHEX('{}')", bare(&old)))
            .await,
        0
    );
    assert_eq!(db.count("licenses", "key_hash_kind = 0").await, 0);
    let (status, body) = verify(&hub, "127.0.0.1", &old).await;
    assert_eq!((status, &body["valid"]), (200, &json!(true)), "{body}");
    attacks::record(
        &Attack {
            slug: "licence-table-leak",
            request: "a copy of the `licenses` table, to brute-force the 48-bit keys offline",
            limit: "`PERRY_HUB_LICENSE_PEPPER`: `key_hash` = HMAC-SHA256(pepper, SHA-256(key)); bare rows converted at start and on use",
            response: "no bare SHA-256 of any key left in the table; guessing needs the pepper, which is not in the database",
        },
        before,
    );
    hub.stop().await;
}
