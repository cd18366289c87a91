//! Accounts (§3.4–3.6) and the admin secret that guards them (D2, D4).

use perry_hub_tests::{HubOptions, TestHub};
use serde_json::json;
use shared::config::{HubConfig, Secret};

use super::support::{assert_error, cli_form, manifest};

#[tokio::test]
async fn account_endpoints_accept_only_the_exact_admin_secret() {
    let hub = TestHub::start().await;
    let body = json!({"github_id": 1, "github_username": "octo"});
    let secret = hub.admin_secret();

    for auth in [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer junk{secret}")),
        Some(format!("Basic {secret}")),
        Some(secret.clone()),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        assert_error(&hub.create_account(&body, &headers).await, 403, "FORBIDDEN");
        assert_error(
            &hub.update_account(&json!({"account_id": "x"}), &headers)
                .await,
            403,
            "FORBIDDEN",
        );
        assert_error(
            &hub.admin_update_perry(&json!({}), &headers).await,
            403,
            "FORBIDDEN",
        );
        assert_error(&hub.admin_workers(&headers).await, 403, "FORBIDDEN");
    }
    // 403 comes before 400: a bad body without the secret is still 403.
    assert_error(
        &hub.post_body(
            "/api/v1/account/create",
            "application/json",
            b"{nope".to_vec(),
            &[],
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(hub.db().count("accounts", "").await, 0);
    hub.stop().await;
}

#[tokio::test]
async fn an_unset_admin_secret_keeps_the_admin_endpoints_closed() {
    let open = |h: &mut HubConfig| {
        h.dev_mode = true;
        h.admin_secret = Secret::default();
    };
    let hub = TestHub::start_with(HubOptions {
        hub: Some(Box::new(open)),
        ..HubOptions::default()
    })
    .await;

    for auth in [None, Some("Bearer "), Some("Bearer")] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        assert_error(&hub.admin_workers(&headers).await, 403, "FORBIDDEN");
        assert_error(
            &hub.create_account(&json!({"github_id": 1, "github_username": "u"}), &headers)
                .await,
            403,
            "FORBIDDEN",
        );
    }
    hub.stop().await;
}

#[tokio::test]
async fn an_account_is_created_read_and_updated() {
    let hub = TestHub::start().await;
    let admin = format!("Bearer {}", hub.admin_secret());
    let admin_h = [("authorization", admin.as_str())];

    let created = hub
        .create_account(
            &json!({"github_id": 12345, "github_username": "octo", "email": "o@example.com"}),
            &admin_h,
        )
        .await;
    assert_eq!(created.0, 200, "{}", created.1);
    assert_eq!(
        (
            created.1["created"].as_bool(),
            created.1["tier"].as_str(),
            created.1["github_username"].as_str()
        ),
        (Some(true), Some("free"), Some("octo"))
    );
    let id = created.1["id"].as_str().expect("id").to_owned();
    let first_token = created.1["api_token"].as_str().expect("token").to_owned();
    let again = hub
        .create_account(
            &json!({"github_id": "12345", "github_username": "octo"}),
            &admin_h,
        )
        .await;
    assert_eq!(
        (again.1["created"].as_bool(), again.1["id"].as_str()),
        (Some(false), Some(id.as_str()))
    );
    let second_token = again.1["api_token"].as_str().expect("token").to_owned();
    assert_ne!(second_token, first_token);

    for token in [&first_token, &second_token] {
        let (status, account) = hub
            .get_account(&[("authorization", &format!("Bearer {token}"))])
            .await;
        assert_eq!(status, 200, "{account}");
        assert_eq!(account["id"], id.as_str());
        assert_eq!(account["email"], "o@example.com");
        assert_eq!(account["has_payment_method"], false);
        let usage = json!({"publishes": 0, "publish_limit": 15, "deep_verifies": 0, "verify_limit": 2, "period": shared::clock::current_period()});
        assert_eq!(account["usage"], usage);
    }
    let token_h = format!("Bearer {first_token}");
    let build = hub
        .submit_build(
            cli_form(&manifest("linux", "com.example.acct"), &json!({}), b"t", ""),
            &[("authorization", &token_h)],
        )
        .await;
    assert_eq!(build.0, 200, "{}", build.1);

    let update = json!({"account_id": id, "tier": "pro", "polar_customer_id": "cus_1", "has_payment_method": true});
    assert_eq!(
        hub.update_account(&update, &admin_h).await,
        (200, json!({"ok": true}))
    );
    let (_, account) = hub.get_account(&[("authorization", &token_h)]).await;
    assert_eq!(
        (
            account["tier"].as_str(),
            account["has_payment_method"].as_bool()
        ),
        (Some("pro"), Some(true))
    );
    assert_eq!(
        (
            account["usage"]["publish_limit"].as_u64(),
            account["usage"]["verify_limit"].as_u64()
        ),
        (Some(50), Some(20))
    );
    assert_eq!(
        hub.db()
            .count("licenses", &format!("account_id = '{id}' AND tier = 'pro'"))
            .await,
        1
    );
    assert_eq!(
        hub.db()
            .count("accounts", "polar_customer_id = 'cus_1'")
            .await,
        1
    );
    hub.stop().await;
}

#[tokio::test]
async fn account_errors_use_their_codes() {
    let hub = TestHub::start().await;
    let admin = format!("Bearer {}", hub.admin_secret());
    let admin_h = [("authorization", admin.as_str())];
    let (id, _) = hub.new_account(5).await;

    assert_error(&hub.get_account(&[]).await, 401, "AUTH_REQUIRED");
    assert_error(
        &hub.get_account(&[(
            "authorization",
            "Bearer 0f8fad5b-d9cb-469f-a165-70867728950e",
        )])
        .await,
        401,
        "AUTH_INVALID",
    );
    assert_error(
        &hub.create_account(&json!({"github_username": "x"}), &admin_h)
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &hub.create_account(&json!({"github_id": 1}), &admin_h).await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &hub.update_account(&json!({"tier": "pro"}), &admin_h).await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &hub.update_account(&json!({"account_id": id, "tier": "gold"}), &admin_h)
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &hub.update_account(&json!({"account_id": "nope"}), &admin_h)
            .await,
        404,
        "NOT_FOUND",
    );
    assert_eq!(hub.db().count("accounts", "tier = 'free'").await, 1);
    hub.stop().await;
}
