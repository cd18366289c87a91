//! A download that never completes lapses; a completed one stays single-use (issue 12 item 6,
//! DEC-30). The first scenario kills the serving process with SIGKILL mid-body, so nothing runs
//! to give the claim back.

use std::time::Duration;

use perry_hub_tests::{HubOptions, HubProcess, TestHub};
use reqwest::{header, StatusCode};
use shared::{auth, clock::now_ms};

use super::support::*;

async fn hub_with(fs_blobs: bool, claim_secs: u64) -> TestHub {
    TestHub::start_with(HubOptions {
        no_finisher: true,
        fs_blobs,
        hub: Some(Box::new(move |h| h.download_claim_secs = claim_secs)),
        ..HubOptions::default()
    })
    .await
}

/// `(used_ms, claim_until_ms, attempts)` of a token.
async fn claim(hub: &TestHub, token: &str) -> (Option<i64>, Option<i64>, i32) {
    sqlx::query_as(
        "SELECT used_ms, claim_until_ms, attempts FROM download_tokens WHERE token_hash = ?",
    )
    .bind(&auth::hash_token(token)[..])
    .fetch_one(hub.pool())
    .await
    .expect("token row")
}

/// Read at least `n` bytes of a body that is still streaming.
async fn read_some(resp: &mut reqwest::Response, n: usize) -> Vec<u8> {
    let mut head = Vec::new();
    while head.len() < n {
        head.extend_from_slice(&resp.chunk().await.expect("chunk").expect("more data"));
    }
    head
}

/// Everything that is left of a body, and whether it ended with an error.
async fn read_rest(resp: &mut reqwest::Response, mut got: Vec<u8>) -> (Vec<u8>, bool) {
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => return (got, false),
            Err(_) => return (got, true),
        }
    }
}

/// Sleep until the wall clock has passed `ms` (a claim's lapse is a point in time, not an event).
async fn until_past(ms: i64) {
    let wait = (ms - now_ms()).max(0) + 50;
    tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
}

async fn assert_used_404(hub: &TestHub, url: &str) {
    let resp = get(hub, url, &[]).await;
    assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    let (status, body) = refusal(resp).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "ARTIFACT_NOT_FOUND");
}

#[tokio::test]
async fn a_link_whose_download_process_was_killed_mid_body_downloads_in_full_after_its_claim_lapses(
) {
    let hub = hub_with(false, 3).await;
    let exe = env!("CARGO_BIN_EXE_perry-hub-process");
    let art = store_artifact(&hub, "big.tar.gz", bytes(32 << 20, 31)).await;
    let token = mint(&hub, &art.id).await;

    let process = HubProcess::start(&hub, exe).await;
    let mut resp = get(&hub, &dl(&process.base_url, &token), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    read_some(&mut resp, 100_000).await;
    process.kill();
    drop(resp);

    // Nothing gave the claim back: the link is held until the claim lapses, and says so.
    let (used, until, attempts) = claim(&hub, &token).await;
    let until = until.expect("the claim is still held, not consumed");
    assert!(used.is_some() && until > now_ms(), "{used:?} {until}");
    assert_eq!(attempts, 1);
    let url = dl(&hub.base_url, &token);
    let held = get(&hub, &url, &[]).await;
    let retry: u64 = header_str(&held, "retry-after").parse().expect("seconds");
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    let (status, body) = refusal(held).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "ARTIFACT_NOT_FOUND");

    // The download role started again serves the same link in full once the claim lapsed.
    let process = HubProcess::start(&hub, exe).await;
    until_past(until).await;
    let again = dl(&process.base_url, &token);
    let resp = get(&hub, &again, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let data = unb64(&resp.bytes().await.expect("body"));
    assert_eq!(sha_hex(&data), sha_hex(&art.data));

    // Completed: consumed for good, on either process, however long one waits.
    let (used, until, attempts) = claim(&hub, &token).await;
    assert!(used.is_some() && until.is_none(), "{used:?} {until:?}");
    assert_eq!(attempts, 2);
    assert_used_404(&hub, &again).await;
    assert_used_404(&hub, &url).await;
    process.kill();
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "16-download-killed",
        fault: "Download process SIGKILLed mid-download",
        outcome: "The link answered 404 with Retry-After while the dead process's claim held; once the claim lapsed (PERRY_HUB_DOWNLOAD_CLAIM_SECS, 60 by default, 3 s here) the same link downloaded in full on a restarted process with a matching SHA-256, then was 404 for good (DEC-30).".to_owned(),
        test: "download::lapse::a_link_whose_download_process_was_killed_mid_body_downloads_in_full_after_its_claim_lapses",
    });
    hub.stop().await;
}

#[tokio::test]
async fn a_download_that_streams_longer_than_its_claim_renews_it_and_completes_alone() {
    let hub = hub_with(true, 1).await;
    let art = store_artifact(&hub, "big.bin", bytes(32 << 20, 32)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);

    let mut resp = get(&hub, &url, &[(header::ACCEPT, OCTET)]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let head = read_some(&mut resp, 100_000).await;
    let (_, first_until, _) = claim(&hub, &token).await;
    until_past(first_until.expect("held") + 500).await;

    // Well past the first claim's end, the live download still holds the link.
    let (_, until, _) = claim(&hub, &token).await;
    assert!(until.expect("held") > now_ms(), "the claim was renewed");
    let held = get(&hub, &url, &[(header::ACCEPT, OCTET)]).await;
    assert!(held.headers().get(header::RETRY_AFTER).is_some());
    assert_eq!(held.status(), StatusCode::NOT_FOUND);

    let (data, failed) = read_rest(&mut resp, head).await;
    assert!(!failed);
    assert_eq!(sha_hex(&data), sha_hex(&art.data));
    assert_used_404(&hub, &url).await;
    hub.stop().await;
}

#[tokio::test]
async fn a_read_whose_claim_lapsed_and_was_taken_over_cannot_complete() {
    let hub = hub_with(false, 60).await;
    let art = store_artifact(&hub, "big.bin", bytes(32 << 20, 33)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);

    let mut first = get(&hub, &url, &[(header::ACCEPT, OCTET)]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let head = read_some(&mut first, 100_000).await;
    // As if the first read's process had stopped renewing (paused, partitioned) past the lapse.
    sqlx::query("UPDATE download_tokens SET claim_until_ms = ? WHERE token_hash = ?")
        .bind(now_ms() - 1)
        .bind(&auth::hash_token(&token)[..])
        .execute(hub.pool())
        .await
        .expect("lapse the claim");

    let second = get(&hub, &url, &[(header::ACCEPT, OCTET)]).await;
    assert_eq!(second.status(), StatusCode::OK);
    let data = second.bytes().await.expect("second body");
    assert_eq!(sha_hex(&data), sha_hex(&art.data));

    // The first read goes on, but its last byte needs the claim it lost: it ends short.
    let (got, failed) = read_rest(&mut first, head).await;
    assert!(failed, "the first read ended cleanly");
    assert!(got.len() < art.data.len(), "the first read completed too");
    let (used, until, attempts) = claim(&hub, &token).await;
    assert!(used.is_some() && until.is_none());
    assert_eq!(attempts, 2);
    assert_used_404(&hub, &url).await;
    hub.stop().await;
}
