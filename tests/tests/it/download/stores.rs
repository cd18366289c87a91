//! Large objects, presigned S3 redirects, the filesystem store, and the audit rows.

use super::support::*;
use futures_util::{StreamExt, TryStreamExt};
use perry_hub_tests::put_bytes;
use reqwest::{header, StatusCode};
use sha2::{Digest, Sha256};
use shared::clock::now_ms;

#[tokio::test]
async fn a_64_mib_artifact_round_trips_as_base64_and_raw_with_matching_sha256() {
    let hub = hub().await;
    let art = store_artifact(&hub, "large.tar.gz", bytes(64 << 20, 14)).await;
    let expected = sha_hex(&art.data);

    // base64, decoded while it streams in, as the CLI would (but without buffering it)
    let token = mint(&hub, &art.id).await;
    let resp = get(&hub, &dl(&hub.base_url, &token), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header_str(&resp, "content-length"),
        blob::b64::encoded_len(64 << 20).to_string()
    );
    let body = resp.bytes_stream().map_err(std::io::Error::other);
    let mut decoded = blob::b64::decode_stream(Box::pin(body));
    let (mut hasher, mut n) = (Sha256::new(), 0usize);
    while let Some(chunk) = decoded.next().await {
        let chunk = chunk.expect("valid base64 stream");
        n += chunk.len();
        hasher.update(&chunk);
    }
    assert_eq!(n, 64 << 20);
    assert_eq!(hex::encode(hasher.finalize()), expected);

    // raw
    let token = mint(&hub, &art.id).await;
    let resp = get(&hub, &dl(&hub.base_url, &token), &[(header::ACCEPT, OCTET)]).await;
    assert_eq!(header_str(&resp, "x-artifact-sha256"), expected);
    let mut stream = resp.bytes_stream();
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(chunk.expect("chunk"));
    }
    assert_eq!(hex::encode(hasher.finalize()), expected);
    hub.stop().await;
}

#[tokio::test]
async fn with_presigning_a_raw_download_redirects_to_s3_and_base64_is_still_proxied() {
    let hub = hub().await;
    let (base, cancel) = presigning_server(&hub).await;
    let art = store_artifact(&hub, "signed app.msi", bytes(50_000, 15)).await;
    let client = no_redirects();
    let token = mint(&hub, &art.id).await;
    let url = dl(&base, &token);

    let resp = client
        .get(&url)
        .header(header::ACCEPT, OCTET)
        .header(header::USER_AGENT, UA)
        .send()
        .await
        .expect("request");

    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header_str(&resp, "x-artifact-sha256"), sha_hex(&art.data));
    let location = header_str(&resp, "location").to_owned();
    assert!(
        location.starts_with(hub.blob_config.s3_endpoint.as_deref().expect("endpoint")),
        "{location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let from_s3 = client.get(&location).send().await.expect("GET presigned");
    assert_eq!(from_s3.status(), StatusCode::OK);
    assert_eq!(from_s3.bytes().await.expect("body").to_vec(), art.data);
    let (status, _) = refusal(
        client
            .get(&url)
            .header(header::ACCEPT, OCTET)
            .send()
            .await
            .expect("again"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the redirect consumed the token"
    );
    assert_eq!(
        hub.db()
            .count(
                "downloads",
                &format!(
                    "kind = 'presigned' AND artifact_id = '{}' AND bytes = 50000",
                    art.id
                )
            )
            .await,
        1
    );

    // Old clients (base64) never see a redirect: success is always 200 for them.
    let token = mint(&hub, &art.id).await;
    let resp = client.get(dl(&base, &token)).send().await.expect("base64");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(unb64(&resp.bytes().await.expect("body")), art.data);
    cancel.cancel();
    hub.stop().await;
}

#[tokio::test]
async fn with_presigning_a_missing_blob_is_410_before_the_token_is_spent() {
    let hub = hub().await;
    let (base, cancel) = presigning_server(&hub).await;
    let data = bytes(1_000, 16);
    let (id, _) = insert_artifact_row(&hub, "a.bin", &data, None).await;
    let token = mint(&hub, &id).await;
    let client = no_redirects();

    let (status, body) = refusal(
        client
            .get(dl(&base, &token))
            .header(header::ACCEPT, OCTET)
            .send()
            .await
            .expect("get"),
    )
    .await;

    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["error"]["code"], "GONE");
    assert!(!token_used(&hub, &token).await);
    put_bytes(&hub.deps.blob, &job::artifacts::artifact_key(&id), data).await;
    let resp = client
        .get(dl(&base, &token))
        .header(header::ACCEPT, OCTET)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    cancel.cancel();
    hub.stop().await;
}

#[tokio::test]
async fn the_filesystem_store_serves_base64_raw_and_ranges_and_never_redirects() {
    let hub = fs_hub().await;
    let (presigning, cancel) = presigning_server(&hub).await;
    let art = store_artifact(&hub, "fs app.tar.gz", bytes(20_000, 17)).await;

    let t1 = mint(&hub, &art.id).await;
    let resp = get(&hub, &dl(&hub.base_url, &t1), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header_str(&resp, "content-disposition"),
        "attachment; filename=\"fs_app.tar.gz\""
    );
    assert_eq!(unb64(&resp.bytes().await.expect("body")), art.data);

    let t2 = mint(&hub, &art.id).await;
    let resp = get(
        &hub,
        &dl(&hub.base_url, &t2),
        &[(header::ACCEPT, OCTET), (header::RANGE, "bytes=-100")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header_str(&resp, "content-range"),
        "bytes 19900-19999/20000"
    );
    assert_eq!(&resp.bytes().await.expect("body")[..], &art.data[19_900..]);

    // Presigning is an S3 feature; the filesystem store streams through the hub instead.
    let t3 = mint(&hub, &art.id).await;
    let resp = no_redirects()
        .get(dl(&presigning, &t3))
        .header(header::ACCEPT, OCTET)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.expect("body").to_vec(), art.data);

    let (missing_id, _) = insert_artifact_row(&hub, "gone.bin", b"x", None).await;
    let t4 = mint(&hub, &missing_id).await;
    let (status, _) = refusal(get(&hub, &dl(&hub.base_url, &t4), &[]).await).await;
    assert_eq!(
        status,
        StatusCode::GONE,
        "a missing file is a clear 410, not a 5xx"
    );
    assert!(!token_used(&hub, &t4).await);
    cancel.cancel();
    hub.stop().await;
}

/// One `downloads` row.
#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    kind: String,
    job_id: String,
    artifact_id: Option<String>,
    attempt: Option<i32>,
    client_addr: Option<String>,
    user_agent: Option<String>,
    bytes: i64,
    at_ms: i64,
}

#[tokio::test]
async fn every_download_is_recorded_with_client_artifact_time_and_bytes() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(3_000, 18)).await;
    let before = now_ms();
    let token = mint(&hub, &art.id).await;
    let body = get(&hub, &dl(&hub.base_url, &token), &[])
        .await
        .bytes()
        .await
        .expect("body");
    let token = mint(&hub, &art.id).await;
    let raw = get(&hub, &dl(&hub.base_url, &token), &[(header::ACCEPT, OCTET)])
        .await
        .bytes()
        .await
        .expect("raw");

    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT kind, job_id, artifact_id, attempt, client_addr, user_agent, bytes, at_ms \
         FROM downloads ORDER BY id",
    )
    .fetch_all(hub.pool())
    .await
    .expect("audit rows");

    assert_eq!(rows.len(), 2);
    for (row, len) in rows.iter().zip([body.len(), raw.len()]) {
        assert_eq!(row.kind, "artifact");
        assert_eq!(row.job_id, art.job_id);
        assert_eq!(row.artifact_id.as_deref(), Some(art.id.as_str()));
        assert_eq!(row.attempt, Some(1));
        assert_eq!(row.client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(row.user_agent.as_deref(), Some(UA));
        assert_eq!(row.bytes, i64::try_from(len).expect("len"));
        assert!(row.at_ms >= before && row.at_ms <= now_ms());
    }
    let metrics = hub
        .http
        .get(hub.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("perry_hub_bytes_out_total{kind=\"artifact\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("perry_hub_downloads_total{kind=\"artifact\",outcome=\"completed\"}"),
        "{metrics}"
    );
    hub.stop().await;
}
