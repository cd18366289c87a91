//! Artifact links: a failed or interrupted read keeps the token usable (D29).

use super::support::*;
use perry_hub_tests::put_bytes;
use reqwest::{header, StatusCode};

#[tokio::test]
async fn a_missing_artifact_blob_is_410_and_leaves_the_token_usable() {
    let hub = hub().await;
    let data = bytes(2_000, 10);
    let (id, _) = insert_artifact_row(&hub, "app.tar.gz", &data, None).await;
    let token = mint(&hub, &id).await;
    let url = dl(&hub.base_url, &token);

    for accept in ["text/plain", OCTET] {
        let (status, body) = refusal(get(&hub, &url, &[(header::ACCEPT, accept)]).await).await;
        assert_eq!(status, StatusCode::GONE);
        assert_eq!(body["error"]["code"], "GONE");
    }
    assert!(!token_used(&hub, &token).await);
    assert_eq!(hub.db().count("downloads", "").await, 0);

    put_bytes(
        &hub.deps.blob,
        &job::artifacts::artifact_key(&id),
        data.clone(),
    )
    .await;
    let resp = get(&hub, &url, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(unb64(&resp.bytes().await.expect("body")), data);
    hub.stop().await;
}

#[tokio::test]
async fn a_deleted_artifact_row_is_410_not_a_server_error() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(100, 11)).await;
    let token = mint(&hub, &art.id).await;
    sqlx::query("DELETE FROM artifacts WHERE id = ?")
        .bind(&art.id)
        .execute(hub.pool())
        .await
        .expect("delete");

    let (status, body) = refusal(get(&hub, &dl(&hub.base_url, &token), &[]).await).await;

    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["error"]["code"], "GONE");
    hub.stop().await;
}

#[tokio::test]
async fn a_store_read_failure_is_500_and_the_token_stays_valid() {
    let hub = hub().await;
    let data = bytes(4_000, 12);
    // A key the store refuses to open (a bug or a corrupted row): a read failure, not a 404.
    let (id, _) = insert_artifact_row(&hub, "app.tar.gz", &data, Some("../../etc/passwd")).await;
    put_bytes(
        &hub.deps.blob,
        &job::artifacts::artifact_key(&id),
        data.clone(),
    )
    .await;
    let token = mint(&hub, &id).await;
    let url = dl(&hub.base_url, &token);

    let (status, body) = refusal(get(&hub, &url, &[]).await).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "INTERNAL_ERROR");
    assert!(
        !body.to_string().contains("passwd"),
        "the cause is not sent: {body}"
    );
    assert!(!token_used(&hub, &token).await);
    sqlx::query("UPDATE artifacts SET blob_key = ? WHERE id = ?")
        .bind(job::artifacts::artifact_key(&id))
        .bind(&id)
        .execute(hub.pool())
        .await
        .expect("repair");
    let resp = get(&hub, &url, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(unb64(&resp.bytes().await.expect("body")), data);
    hub.stop().await;
}

#[tokio::test]
async fn an_interrupted_raw_download_releases_the_token_and_resumes_with_a_range() {
    let hub = hub().await;
    // Larger than the loopback socket buffers, so the server is still sending when we hang up.
    let art = store_artifact(&hub, "big.bin", bytes(32 << 20, 13)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);

    let mut resp = get(&hub, &url, &[(header::ACCEPT, OCTET)]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut head = Vec::new();
    while head.len() < 100_000 {
        head.extend_from_slice(&resp.chunk().await.expect("chunk").expect("more data"));
    }
    drop(resp);
    eventually("the interrupted download to release its token", || async {
        !token_used(&hub, &token).await
    })
    .await;

    let resume = format!("bytes={}-", head.len());
    let resp = get(
        &hub,
        &url,
        &[(header::ACCEPT, OCTET), (header::RANGE, resume.as_str())],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    head.extend_from_slice(&resp.bytes().await.expect("rest"));

    assert_eq!(sha_hex(&head), sha_hex(&art.data));
    assert!(
        token_used(&hub, &token).await,
        "the completed read consumed the token"
    );
    let interrupted: i64 = sqlx::query_scalar("SELECT bytes FROM downloads ORDER BY id LIMIT 1")
        .fetch_one(hub.pool())
        .await
        .expect("audit row");
    assert!(
        interrupted < (32 << 20),
        "the audit row records what was really sent: {interrupted}"
    );
    hub.stop().await;
}
