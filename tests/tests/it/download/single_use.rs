//! Artifact links are single use: concurrent claims, used, expired and unknown tokens.

use super::support::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn ten_concurrent_requests_with_one_token_give_exactly_one_download() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(300_000, 6)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);

    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (http, url) = (hub.http.clone(), url.clone());
            tokio::spawn(async move {
                let resp = http.get(&url).send().await.expect("request");
                let status = resp.status();
                (status, resp.bytes().await.expect("body"))
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }

    let ok: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert_eq!(
        ok.len(),
        1,
        "statuses: {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert_eq!(unb64(&ok[0].1), art.data);
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::NOT_FOUND);
        let v: Value = serde_json::from_slice(body).expect("envelope");
        assert_eq!(v["error"]["code"], "ARTIFACT_NOT_FOUND");
    }
    assert!(token_used(&hub, &token).await);
    assert_eq!(hub.db().count("downloads", "kind = 'artifact'").await, 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_used_token_is_404_artifact_not_found() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(1_000, 7)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);
    assert_eq!(
        get(&hub, &url, &[])
            .await
            .bytes()
            .await
            .expect("first download")
            .len(),
        1_336
    );

    let (status, body) = refusal(get(&hub, &url, &[]).await).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "ARTIFACT_NOT_FOUND");
    hub.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_410_gone_with_the_envelope() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(1_000, 8)).await;
    let token = mint_expired(&hub, &art.id).await;

    let (status, body) = refusal(get(&hub, &dl(&hub.base_url, &token), &[]).await).await;

    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["error"]["code"], "GONE");
    assert_eq!(body["error"]["message"], "Download link expired");
    assert!(!token_used(&hub, &token).await);
    assert_eq!(hub.db().count("downloads", "").await, 0);
    hub.stop().await;
}

#[tokio::test]
async fn unknown_malformed_and_used_tokens_get_the_same_404() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(500, 9)).await;
    let used = mint(&hub, &art.id).await;
    // Read the body: only a completed read consumes a token.
    let first = get(&hub, &dl(&hub.base_url, &used), &[]).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(unb64(&first.bytes().await.expect("body")).len(), 500);
    let valid = mint(&hub, &art.id).await;
    let long = "a".repeat(4_000);
    let candidates = [
        uuid::Uuid::new_v4().to_string(),
        used.clone(),
        valid.to_uppercase(),
        format!("{valid}0"),
        valid.replace('-', ""),
        "abc".to_owned(),
        "..%2F..%2Fetc%2Fpasswd".to_owned(),
        "%2e%2e".to_owned(),
        "%ff%fe".to_owned(),
        long,
    ];

    let mut bodies = Vec::new();
    for token in &candidates {
        let (status, body) = raw_get(&hub, &format!("/api/v1/dl/{token}"), &[]).await;
        assert_eq!(status, 404, "{token}");
        bodies.push(body);
    }

    assert_eq!(bodies[0]["error"]["code"], "ARTIFACT_NOT_FOUND");
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert!(
        !token_used(&hub, &valid).await,
        "near-misses never consume the real token"
    );
    assert_eq!(
        get(&hub, &dl(&hub.base_url, &valid), &[]).await.status(),
        StatusCode::OK
    );
    hub.stop().await;
}
