//! Artifact links: the base64 and raw bodies, their headers, and ranges.

use super::support::*;
use reqwest::{header, StatusCode};

#[tokio::test]
async fn artifact_link_serves_one_line_of_base64_text_with_the_legacy_headers() {
    let hub = hub().await;
    let art = store_artifact(&hub, "my app (1).tar.gz", bytes(100_003, 1)).await;
    let token = mint(&hub, &art.id).await;

    let resp = get(&hub, &dl(&hub.base_url, &token), &[(header::ACCEPT, "*/*")]).await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, "content-type"), "text/plain");
    assert_eq!(
        header_str(&resp, "content-disposition"),
        "attachment; filename=\"my_app__1_.tar.gz\""
    );
    assert_eq!(header_str(&resp, "x-artifact-sha256"), sha_hex(&art.data));
    let declared: usize = header_str(&resp, "content-length").parse().expect("length");
    let body = resp.bytes().await.expect("body");
    assert_eq!(declared, body.len());
    assert_eq!(
        &body[..],
        b64(&art.data).as_bytes(),
        "one clean line, padded, no newline"
    );
    assert!(
        body.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)),
        "the CLI's decode test passes"
    );
    assert_eq!(unb64(&body), art.data);
    hub.stop().await;
}

#[tokio::test]
async fn raw_download_sends_the_bytes_with_length_disposition_and_sha256() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.exe", bytes(70_000, 2)).await;
    let token = mint(&hub, &art.id).await;

    let resp = get(&hub, &dl(&hub.base_url, &token), &[(header::ACCEPT, OCTET)]).await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, "content-type"), OCTET);
    assert_eq!(header_str(&resp, "content-length"), "70000");
    assert_eq!(
        header_str(&resp, "content-disposition"),
        "attachment; filename=\"app.exe\""
    );
    assert_eq!(header_str(&resp, "x-artifact-sha256"), sha_hex(&art.data));
    assert_eq!(header_str(&resp, "accept-ranges"), "bytes");
    let body = resp.bytes().await.expect("body");
    assert_eq!(sha_hex(&body), sha_hex(&art.data));
    hub.stop().await;
}

#[tokio::test]
async fn a_range_on_a_raw_download_is_served_as_206_and_consumes_the_token() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(10_000, 3)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);

    let resp = get(
        &hub,
        &url,
        &[(header::ACCEPT, OCTET), (header::RANGE, "bytes=100-199")],
    )
    .await;

    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_str(&resp, "content-range"), "bytes 100-199/10000");
    assert_eq!(header_str(&resp, "content-length"), "100");
    assert_eq!(&resp.bytes().await.expect("body")[..], &art.data[100..200]);
    let (status, body) = refusal(get(&hub, &url, &[(header::ACCEPT, OCTET)]).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "ARTIFACT_NOT_FOUND");
    hub.stop().await;
}

#[tokio::test]
async fn an_unsatisfiable_range_is_416_with_the_envelope_and_keeps_the_token() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(1_000, 4)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);

    let resp = get(
        &hub,
        &url,
        &[(header::ACCEPT, OCTET), (header::RANGE, "bytes=5000-")],
    )
    .await;

    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header_str(&resp, "content-range"), "bytes */1000");
    let (_, body) = refusal(resp).await;
    assert_eq!(body["error"]["code"], "RANGE_NOT_SATISFIABLE");
    assert!(!token_used(&hub, &token).await);
    let resp = get(&hub, &url, &[(header::ACCEPT, OCTET)]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.expect("body").to_vec(), art.data);
    hub.stop().await;
}

#[tokio::test]
async fn a_range_header_on_a_base64_download_is_ignored() {
    let hub = hub().await;
    let art = store_artifact(&hub, "a.zip", bytes(3_000, 5)).await;
    let token = mint(&hub, &art.id).await;

    let resp = get(
        &hub,
        &dl(&hub.base_url, &token),
        &[(header::RANGE, "bytes=0-9")],
    )
    .await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("content-range").is_none());
    assert_eq!(unb64(&resp.bytes().await.expect("body")), art.data);
    hub.stop().await;
}
