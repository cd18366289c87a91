//! Refused build submissions: every error code of §3.7 with its status, in the order of the
//! checks, and nothing left behind (no job row, outbox row, rate hit, binding or blob).

use perry_hub_tests::{HubOptions, TestHub};
use protocol::LOGIN_URL;
use serde_json::json;
use shared::config::HubConfig;

use super::support::{assert_error, b64, cli_form, leftovers, manifest, multipart};

#[tokio::test]
async fn malformed_submissions_get_400_and_leave_nothing_behind() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let good = manifest("linux", "com.example.bad").to_string();
    let tar = b64(b"tarball");
    let with_manifest = |m: &str| {
        multipart(&[
            ("manifest", m.as_bytes()),
            ("tarball_b64", tar.as_bytes()),
            ("license_key", key.as_bytes()),
        ])
    };
    let mut two_targets = manifest("linux", "x");
    two_targets["targets"] = json!(["linux", "android"]);
    let mut no_targets = manifest("linux", "x");
    no_targets["targets"] = json!([]);
    let mut bad_name = manifest("linux", "x");
    bad_name["app_name"] = json!("../../etc/passwd");
    // Workers refuse a dot in the app name; the hub says so at once.
    let mut dotted_name = manifest("linux", "x");
    dotted_name["app_name"] = json!("weather-app v1.2");
    let mut no_bundle = manifest("linux", "x");
    if let Some(m) = no_bundle.as_object_mut() {
        m.remove("bundle_id");
    }
    let truncated = {
        let mut b = with_manifest(&good);
        b.truncate(b.len() / 2);
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "missing manifest",
            multipart(&[
                ("tarball_b64", tar.as_bytes()),
                ("license_key", key.as_bytes()),
            ]),
        ),
        (
            "missing tarball",
            multipart(&[
                ("manifest", good.as_bytes()),
                ("license_key", key.as_bytes()),
            ]),
        ),
        (
            "missing licence",
            multipart(&[
                ("manifest", good.as_bytes()),
                ("tarball_b64", tar.as_bytes()),
            ]),
        ),
        ("invalid manifest JSON", with_manifest("{\"app_name\": ")),
        ("manifest not an object", with_manifest("[1,2]")),
        ("two targets", with_manifest(&two_targets.to_string())),
        ("no target", with_manifest(&no_targets.to_string())),
        (
            "unknown target",
            with_manifest(&manifest("amiga", "x").to_string()),
        ),
        ("path in app name", with_manifest(&bad_name.to_string())),
        ("dot in app name", with_manifest(&dotted_name.to_string())),
        (
            "no bundle id or name",
            with_manifest(&no_bundle.to_string()),
        ),
        (
            "credentials not an object",
            multipart(&[
                ("manifest", good.as_bytes()),
                ("credentials", b"[\"x\"]"),
                ("tarball_b64", tar.as_bytes()),
                ("license_key", key.as_bytes()),
            ]),
        ),
        (
            "invalid credentials JSON",
            multipart(&[
                ("manifest", good.as_bytes()),
                ("credentials", b"{nope"),
                ("tarball_b64", tar.as_bytes()),
                ("license_key", key.as_bytes()),
            ]),
        ),
        (
            "invalid base64",
            multipart(&[
                ("manifest", good.as_bytes()),
                ("tarball_b64", b"not*base64!"),
                ("license_key", key.as_bytes()),
            ]),
        ),
        (
            "empty tarball",
            multipart(&[
                ("manifest", good.as_bytes()),
                ("tarball_b64", b""),
                ("license_key", key.as_bytes()),
            ]),
        ),
        (
            "duplicate manifest",
            multipart(&[
                ("manifest", good.as_bytes()),
                ("manifest", good.as_bytes()),
                ("tarball_b64", tar.as_bytes()),
            ]),
        ),
        ("truncated multipart", truncated),
        ("garbage body", b"this is not multipart at all".to_vec()),
    ];
    let before = leftovers(&hub).await;

    for (what, body) in cases {
        let got = hub.submit_build(body, &[]).await;
        assert_eq!(got.0, 400, "{what}: {}", got.1);
        assert_eq!(got.1["error"]["code"], "BAD_REQUEST", "{what}: {}", got.1);
        assert_eq!(
            leftovers(&hub).await,
            before,
            "{what} left something behind"
        );
    }
    let not_multipart = hub
        .post_body("/api/v1/build", "application/json", b"{}".to_vec(), &[])
        .await;
    assert_error(&not_multipart, 400, "BAD_REQUEST");
    let no_boundary = hub
        .post_body(
            "/api/v1/build",
            "multipart/form-data",
            with_manifest(&good),
            &[],
        )
        .await;
    assert_error(&no_boundary, 400, "BAD_REQUEST");
    let bad_idempotency = hub
        .submit_build(with_manifest(&good), &[("idempotency-key", "has space")])
        .await;
    assert_error(&bad_idempotency, 400, "BAD_REQUEST");
    let raw_without_manifest = hub
        .submit_raw_build(b"tar".to_vec(), &[("x-perry-license-key", &key)])
        .await;
    assert_error(&raw_without_manifest, 400, "BAD_REQUEST");
    assert_eq!(leftovers(&hub).await, before);
    hub.stop().await;
}

#[tokio::test]
async fn unknown_credentials_are_401_with_their_codes() {
    let hub = TestHub::start().await;
    let form = || {
        cli_form(
            &manifest("linux", "com.example.auth"),
            &json!({}),
            b"tarball",
            "FREE-DEAD-BEEF-0000",
        )
    };
    let before = leftovers(&hub).await;

    assert_error(&hub.submit_build(form(), &[]).await, 401, "LICENSE_INVALID");
    assert_error(
        &hub.submit_build(
            form(),
            &[(
                "authorization",
                "Bearer 0f8fad5b-d9cb-469f-a165-70867728950e",
            )],
        )
        .await,
        401,
        "AUTH_INVALID",
    );
    let (account_id, token) = hub.new_account(9).await;
    sqlx::query("UPDATE accounts SET deleted_ms = 1 WHERE id = ?")
        .bind(&account_id)
        .execute(hub.pool())
        .await
        .expect("delete");
    assert_error(
        &hub.submit_build(form(), &[("authorization", &format!("Bearer {token}"))])
            .await,
        401,
        "AUTH_INVALID",
    );

    assert_eq!(leftovers(&hub).await, before);
    hub.stop().await;
}

#[tokio::test]
async fn a_device_licence_on_a_second_project_needs_an_account() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let first = hub
        .submit_build(
            cli_form(
                &manifest("linux", "com.example.first"),
                &json!({}),
                b"t",
                &key,
            ),
            &[],
        )
        .await;
    assert_eq!(first.0, 200, "{}", first.1);
    let before = leftovers(&hub).await;

    let second = hub
        .submit_build(
            cli_form(
                &manifest("linux", "com.example.second"),
                &json!({}),
                b"t",
                &key,
            ),
            &[],
        )
        .await;

    assert_error(&second, 403, "ACCOUNT_REQUIRED");
    assert_eq!(second.1["error"]["login_url"], LOGIN_URL);
    assert!(second.1["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("perry login")));
    assert_eq!(leftovers(&hub).await, before);
    hub.stop().await;
}

#[tokio::test]
async fn the_monthly_quota_counts_builds_in_flight() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let license_id: i64 = sqlx::query_scalar("SELECT id FROM licenses")
        .fetch_one(hub.pool())
        .await
        .expect("licence");
    let period = shared::clock::current_period();
    sqlx::query("INSERT INTO license_usage (license_id, period, publishes) VALUES (?, ?, 14)")
        .bind(license_id)
        .bind(&period)
        .execute(hub.pool())
        .await
        .expect("usage");
    let form = || {
        cli_form(
            &manifest("linux", "com.example.quota"),
            &json!({}),
            b"t",
            &key,
        )
    };
    assert_eq!(
        hub.submit_build(form(), &[]).await.0,
        200,
        "the 15th publish is allowed"
    );
    let before = leftovers(&hub).await;

    let refused = hub.submit_build(form(), &[]).await;

    assert_error(&refused, 429, "PUBLISH_LIMIT_REACHED");
    assert_eq!(
        refused.1["error"]["usage"],
        json!({"publishes": 14, "limit": 15, "period": period})
    );
    let message = refused.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("You've used 15/15 free publishes this month"),
        "{message}"
    );
    assert!(
        message.contains("Resets on the 1st") && message.contains("perry login"),
        "{message}"
    );
    assert_eq!(leftovers(&hub).await, before);
    hub.stop().await;
}

#[tokio::test]
async fn the_sixth_free_build_within_an_hour_is_rate_limited() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let form = || {
        cli_form(
            &manifest("linux", "com.example.rate"),
            &json!({}),
            b"t",
            &key,
        )
    };
    for n in 1..=5 {
        assert_eq!(hub.submit_build(form(), &[]).await.0, 200, "build {n}");
    }
    let before = leftovers(&hub).await;

    let refused = hub.submit_build(form(), &[]).await;

    assert_error(&refused, 429, "RATE_LIMITED");
    assert_eq!(
        refused.1["error"]["message"],
        "Hourly build limit reached (5 per hour)"
    );
    assert_eq!(leftovers(&hub).await, before);
    sqlx::query("UPDATE rate_events SET at_ms = at_ms - 3600001")
        .execute(hub.pool())
        .await
        .expect("age hits");
    assert_eq!(
        hub.submit_build(form(), &[]).await.0,
        200,
        "the window rolls"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_self_hosted_hub_lifts_the_monthly_and_hourly_limits() {
    let hub = TestHub::start_with(HubOptions {
        hub: Some(Box::new(|h: &mut HubConfig| h.self_hosted = true)),
        ..HubOptions::default()
    })
    .await;
    let key = hub.registered_license().await;
    sqlx::query(
        "INSERT INTO license_usage (license_id, period, publishes) SELECT id, ?, 500 FROM licenses",
    )
    .bind(shared::clock::current_period())
    .execute(hub.pool())
    .await
    .expect("usage");
    sqlx::query(
        "INSERT INTO rate_events (bucket, at_ms) SELECT CONCAT('build:', id), ? FROM licenses",
    )
    .bind(shared::clock::now_ms())
    .execute(hub.pool())
    .await
    .expect("hits");
    for _ in 0..5 {
        sqlx::query(
            "INSERT INTO rate_events (bucket, at_ms) SELECT bucket, at_ms FROM rate_events LIMIT 1",
        )
        .execute(hub.pool())
        .await
        .expect("hits");
    }

    let got = hub
        .submit_build(
            cli_form(
                &manifest("linux", "com.example.self"),
                &json!({}),
                b"t",
                &key,
            ),
            &[],
        )
        .await;

    assert_eq!(got.0, 200, "{}", got.1);
    hub.stop().await;
}
