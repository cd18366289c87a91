//! A link cannot be kept alive by partial reads (issue 15 item 6, DEC-23): every claim counts
//! an attempt, and a reader that stops taking bytes is cut off after the idle timeout.

use perry_hub_tests::{
    attacks::{self, Attack},
    HubOptions, TestHub,
};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::*;

async fn hub_with(adjust: impl FnOnce(&mut shared::config::HubConfig) + Send + 'static) -> TestHub {
    TestHub::start_with(HubOptions {
        no_finisher: true,
        fs_blobs: true,
        hub: Some(Box::new(adjust)),
        ..HubOptions::default()
    })
    .await
}

#[tokio::test]
async fn a_link_read_partially_again_and_again_is_spent_after_its_attempts() {
    let hub = hub_with(|h| h.download_max_attempts = 3).await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(16 << 20, 11)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);
    let before = attacks::baseline(&hub).await;
    for attempt in 1..=3 {
        let mut resp = get(&hub, &url, &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "attempt {attempt}");
        // Take one chunk and hang up: an incomplete read gives the token back.
        resp.chunk().await.expect("first chunk");
        drop(resp);
        eventually("the token released", || async {
            !token_used(&hub, &token).await
        })
        .await;
    }
    let (status, body) = refusal(get(&hub, &url, &[]).await).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"]["code"], "GONE");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("used up")),
        "{body}"
    );
    attacks::record(
        &Attack {
            slug: "download-partial-reads",
            request: "`GET /api/v1/dl/{token}` read one chunk and dropped, repeated",
            limit: "`PERRY_HUB_DOWNLOAD_MAX_ATTEMPTS` (3 in the test, 5 by default)",
            response: "4th request: `410 GONE` \"Download link used up: 3 incomplete downloads\"",
        },
        before,
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_download_whose_reader_stops_is_cut_off_and_its_link_given_back() {
    let hub = hub_with(|h| h.http.idle_timeout_secs = 1).await;
    // Far more than the socket buffers hold, so the hub's writes stall.
    let art = store_artifact(&hub, "big.tar.gz", bytes(16 << 20, 12)).await;
    let token = mint(&hub, &art.id).await;
    let before = attacks::baseline(&hub).await;
    let addr = hub.base_url.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    sock.write_all(format!("GET /api/v1/dl/{token} HTTP/1.1\r\nHost: hub\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut head = vec![0u8; 4096];
    let n = sock.read(&mut head).await.expect("response head");
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    let started = tokio::time::Instant::now();
    // Stop reading. The hub gives up on the stalled write and releases the token.
    eventually("the stalled download released", || async {
        !token_used(&hub, &token).await
    })
    .await;
    let took = started.elapsed();
    // What is left in the socket ends before the whole body.
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest).await;
    let encoded_len = art.data.len().div_ceil(3) * 4;
    assert!(n + rest.len() < encoded_len, "the whole body arrived");
    attacks::record(
        &Attack {
            slug: "download-stalled-reader",
            request: "`GET /api/v1/dl/{token}` of a 16 MiB artifact, reading only the first 4 KiB",
            limit:
                "`PERRY_HUB_HTTP_IDLE_TIMEOUT_SECS` (write stall; 1 s in the test, 60 s by default)",
            response: &format!(
                "connection closed, link given back (one attempt spent) after {:.1} s",
                took.as_secs_f64()
            ),
        },
        before,
    );
    hub.stop().await;
}
