//! Licences, their usage and tier, and API tokens.

use perry_hub_tests::{api::assert_error, TestHub};
use serde_json::json;

use super::{admin_get, admin_post};

#[tokio::test]
async fn licences_are_listed_shown_and_retiered() {
    let hub = TestHub::start().await;
    let (_, free) = hub.insert_license("free").await;
    let (_, pro) = hub.insert_license("pro").await;

    let (status, page) = admin_get(&hub, "/api/v1/admin/licenses").await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<i64> = page["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![pro, free]);
    let (_, only_pro) = admin_get(&hub, "/api/v1/admin/licenses?tier=pro").await;
    assert_eq!(only_pro["licenses"].as_array().unwrap().len(), 1);
    let (_, first) = admin_get(&hub, "/api/v1/admin/licenses?limit=1").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = admin_get(
        &hub,
        &format!("/api/v1/admin/licenses?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(second["licenses"][0]["id"], free);

    let (status, body) = admin_post(
        &hub,
        &format!("/api/v1/admin/licenses/{free}/tier"),
        &json!({"tier": "pro"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, shown) = admin_get(&hub, &format!("/api/v1/admin/licenses/{free}")).await;
    assert_eq!(shown["tier"], "pro");
    assert_eq!(shown["publishes_this_period"], 0);
    assert_eq!(shown["usage"], json!([]));

    assert_error(
        &admin_post(
            &hub,
            &format!("/api/v1/admin/licenses/{free}/tier"),
            &json!({"tier": "gold"}),
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &admin_post(
            &hub,
            "/api/v1/admin/licenses/999999/tier",
            &json!({"tier": "pro"}),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &admin_get(&hub, "/api/v1/admin/licenses/abc").await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &admin_get(&hub, "/api/v1/admin/licenses/999999").await,
        404,
        "NOT_FOUND",
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_revoked_api_token_stops_working_at_once() {
    let hub = TestHub::start().await;
    let (_account, token) = hub.new_account(4242).await;
    let bearer = format!("Bearer {token}");
    assert_eq!(hub.get_account(&[("authorization", &bearer)]).await.0, 200);
    let (status, listed) = admin_get(&hub, "/api/v1/admin/accounts").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["accounts"][0]["github_username"], "user4242");
    assert_eq!(listed["accounts"][0]["active_tokens"], 1);
    let token_id: i64 = sqlx::query_scalar("SELECT id FROM api_tokens ORDER BY id DESC LIMIT 1")
        .fetch_one(hub.pool())
        .await
        .unwrap();

    let (status, body) = admin_post(
        &hub,
        &format!("/api/v1/admin/tokens/{token_id}/revoke"),
        &json!({}),
    )
    .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], token_id);
    assert!(body["revoked_ms"].as_i64().is_some());
    assert_error(
        &hub.get_account(&[("authorization", &bearer)]).await,
        401,
        "AUTH_INVALID",
    );
    let (_, listed) = admin_get(&hub, "/api/v1/admin/accounts").await;
    assert_eq!(listed["accounts"][0]["active_tokens"], 0);
    // Revoking again changes nothing.
    let (_, again) = admin_post(
        &hub,
        &format!("/api/v1/admin/tokens/{token_id}/revoke"),
        &json!({}),
    )
    .await;
    assert_eq!(again["revoked_ms"], body["revoked_ms"]);
    assert_error(
        &admin_post(&hub, "/api/v1/admin/tokens/999999/revoke", &json!({})).await,
        404,
        "NOT_FOUND",
    );
    hub.stop().await;
}
