//! Uploads that stall, and anonymous uploads held open in numbers (DEC-22).

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use perry_hub_tests::{
    api::{cli_form, manifest, BOUNDARY},
    attacks::{self, Attack},
    TestHub, WAIT,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::support::{client_from, hub_with, OTHER_ADDR};

/// The multipart form up to the first bytes of the tarball, as the CLI starts it.
fn form_head() -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"credentials\"\r\n\r\n{{}}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"tarball_b64\"\r\n\r\nAAAA",
        manifest("linux", "com.example.stall")
    )
    .into_bytes()
}

/// A submission whose body is whatever `rx` yields; it ends when the sender is dropped.
fn streamed_submit(
    hub: &TestHub,
    from: &str,
    rx: mpsc::Receiver<Bytes>,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let url = hub.url("/api/v1/build");
    let client = client_from(from);
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    tokio::spawn(async move {
        let resp = client
            .post(url)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await;
        match resp {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    })
}

/// A complete submission with an unknown key from `from`.
async fn bogus_submit(hub: &TestHub, from: &str) -> (u16, Value) {
    let form = cli_form(
        &manifest("linux", "com.example.bogus"),
        &json!({}),
        b"tarball",
        "FREE-0000-0000-0000",
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

/// Submit from `from` until the answer has `status` (the slots are counted asynchronously).
async fn until_status(hub: &TestHub, from: &str, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (got, body) = bogus_submit(hub, from).await;
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {status}, last {got} {body}"
        );
    }
}

#[tokio::test]
async fn anonymous_uploads_in_flight_are_capped_per_address_and_in_all() {
    let hub = hub_with(
        |_| {},
        |s| {
            s.anonymous_uploads_per_addr = 1;
            s.anonymous_uploads_global = 2;
        },
    )
    .await;
    let before = attacks::baseline(&hub).await;
    let (tx_a, rx_a) = mpsc::channel(4);
    tx_a.send(Bytes::from(form_head())).await.expect("head");
    let held_a = streamed_submit(&hub, "127.0.0.1", rx_a);
    let per_addr = until_status(&hub, "127.0.0.1", 429).await;
    assert_eq!(per_addr["error"]["code"], "RATE_LIMITED", "{per_addr}");
    // Another address still gets as far as its (unknown) key.
    let (status, body) = bogus_submit(&hub, OTHER_ADDR).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("LICENSE_INVALID"))
    );
    // A second stalled upload fills the hub.
    let (tx_b, rx_b) = mpsc::channel(4);
    tx_b.send(Bytes::from(form_head())).await.expect("head");
    let held_b = streamed_submit(&hub, OTHER_ADDR, rx_b);
    let full = until_status(&hub, "127.0.0.3", 503).await;
    assert_eq!(full["error"]["code"], "UNAVAILABLE", "{full}");
    // Abandoned uploads free their slots and leave nothing behind.
    drop((tx_a, tx_b));
    let _ = tokio::join!(held_a, held_b);
    until_status(&hub, "127.0.0.1", 401).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !hub.deps.blob.list("").await.expect("list").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tarballs left behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hub.db().count("jobs", "").await, 0);
    attacks::record(
        &Attack {
            slug: "anonymous-uploads",
            request: "`POST /api/v1/build` (licence-key path) whose tarball part never ends, from one address, then from a second",
            limit: "`PERRY_HUB_ANONYMOUS_UPLOADS_PER_ADDR` (1 in the test, 2 by default), `PERRY_HUB_ANONYMOUS_UPLOADS_GLOBAL` (2 in the test, 32 by default)",
            response: "same address: `429 RATE_LIMITED`; hub full: `503 UNAVAILABLE`; other addresses reach the key check (`401 LICENSE_INVALID`); nothing stored",
        },
        before,
    );
    hub.stop().await;
}

#[tokio::test]
async fn an_upload_that_stalls_mid_tarball_gets_408_and_leaves_nothing() {
    let hub = hub_with(|h| h.idle_timeout_secs = 1, |_| {}).await;
    let before = attacks::baseline(&hub).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(Bytes::from(form_head())).await.expect("head");
    let started = tokio::time::Instant::now();
    let (status, body) = streamed_submit(&hub, "127.0.0.1", rx).await.expect("join");
    let took = started.elapsed();
    drop(tx);
    assert_eq!(
        (status, &body["error"]["code"]),
        (408, &json!("REQUEST_TIMEOUT")),
        "{body}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while !hub.deps.blob.list("").await.expect("list").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tarball left behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hub.db().count("jobs", "").await, 0);
    attacks::record(
        &Attack {
            slug: "stalled-upload",
            request: "`POST /api/v1/build` that stops sending in the middle of `tarball_b64`",
            limit: "`PERRY_HUB_HTTP_IDLE_TIMEOUT_SECS` (1 s in the test, 60 s by default)",
            response: &format!(
                "`408 REQUEST_TIMEOUT` after {:.1} s; the partial tarball deleted",
                took.as_secs_f64()
            ),
        },
        before,
    );
    hub.stop().await;
}
