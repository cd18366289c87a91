//! Slowloris, stalled bodies and connection floods against the standalone composition
//! (`shared::serve`, DEC-22).

use std::time::Duration;

use perry_hub_tests::attacks::{self, Attack};
use tokio::io::AsyncWriteExt;

use super::support::{connect_from, hub_with, read_until_closed, status_line, OTHER_ADDR};

#[tokio::test]
async fn a_client_dribbling_its_headers_is_cut_off_after_the_header_timeout() {
    let hub = hub_with(|h| h.header_timeout_secs = 1, |_| {}).await;
    let before = attacks::baseline(&hub).await;
    let (mut rd, mut wr) = connect_from(&hub, "127.0.0.1").await.into_split();
    wr.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: hub\r\n")
        .await
        .expect("request line");
    // The attack: one more header line every 200 ms, never the blank line that ends them.
    let dribble = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let line = format!("X-Slow-{i}: a\r\n");
            if wr.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    };
    let (_, took) = tokio::select! {
        closed = read_until_closed(&mut rd) => closed,
        () = dribble => read_until_closed(&mut rd).await,
    };
    assert!(
        took < Duration::from_secs(5),
        "the dribbling connection lived {took:?}"
    );
    // Another client is served as before.
    let mut other = connect_from(&hub, OTHER_ADDR).await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .await
        .expect("health request");
    let (health, _) = read_until_closed(&mut other).await;
    assert!(
        status_line(&health).contains("200"),
        "{}",
        status_line(&health)
    );
    attacks::record(
        &Attack {
            slug: "slowloris-headers",
            request:
                "`GET /api/v1/status`, then one header line every 200 ms, never ending the headers",
            limit: "`PERRY_HUB_HTTP_HEADER_TIMEOUT_SECS` (1 s in the test, 10 s by default)",
            response: &format!("connection closed after {:.1} s", took.as_secs_f64()),
        },
        before,
    );
    hub.stop().await;
}

/// A connection that has been served once (so the hub has surely counted it), kept open.
async fn served_connection(hub: &perry_hub_tests::TestHub, from: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncReadExt;
    let mut sock = connect_from(hub, from).await;
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .expect("request");
    let mut buf = vec![0u8; 1024];
    let n = sock.read(&mut buf).await.expect("response");
    assert!(
        status_line(&buf[..n]).contains("200"),
        "{}",
        status_line(&buf[..n])
    );
    sock
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_refused_while_another_address_is_served() {
    let hub = hub_with(|h| h.max_connections_per_addr = 4, |_| {}).await;
    // No warm-up: its connection would take one of the few places.
    let before = attacks::rss_kib();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(served_connection(&hub, "127.0.0.1").await);
    }
    let mut fifth = connect_from(&hub, "127.0.0.1").await;
    let (answer, took) = read_until_closed(&mut fifth).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(text.contains("\"code\":\"RATE_LIMITED\""), "{text}");
    // Another address is unaffected.
    let other = served_connection(&hub, OTHER_ADDR).await;
    drop(other);
    // A closed connection frees its place.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    loop {
        let mut again = connect_from(&hub, "127.0.0.1").await;
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            .await
            .ok();
        let (reply, _) = read_until_closed(&mut again).await;
        if status_line(&reply).contains("200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::task::yield_now().await;
    }
    attacks::record(
        &Attack {
            slug: "connections-per-address",
            request: "5 keep-alive connections from one address (cap 4 in the test)",
            limit: "`PERRY_HUB_MAX_CONNECTIONS_PER_ADDR` (128 by default; IPv6 per /64)",
            response: &format!(
                "5th: `429 RATE_LIMITED` and closed after {:.0} ms; another address served",
                took.as_secs_f64() * 1000.0
            ),
        },
        before,
    );
    hub.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_global_cap_are_refused_with_503() {
    let hub = hub_with(|h| h.max_connections = 3, |_| {}).await;
    // No warm-up: its connection would take one of the few places.
    let before = attacks::rss_kib();
    let _a = served_connection(&hub, "127.0.0.1").await;
    let _b = served_connection(&hub, "127.0.0.3").await;
    let _c = served_connection(&hub, "127.0.0.4").await;
    let mut fourth = connect_from(&hub, OTHER_ADDR).await;
    let (answer, _) = read_until_closed(&mut fourth).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"code\":\"UNAVAILABLE\""), "{text}");
    attacks::record(
        &Attack {
            slug: "connections-global",
            request: "4 connections from 4 addresses (cap 3 in the test)",
            limit: "`PERRY_HUB_MAX_CONNECTIONS` (16384 by default)",
            response: "4th: `503 UNAVAILABLE`, closed",
        },
        before,
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_gets_408_and_the_connection_closes() {
    let hub = hub_with(|h| h.idle_timeout_secs = 1, |_| {}).await;
    let before = attacks::baseline(&hub).await;
    let mut sock = connect_from(&hub, "127.0.0.1").await;
    sock.write_all(
        b"POST /api/v1/license/verify HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"license_key\":",
    )
    .await
    .expect("partial request");
    let (answer, took) = read_until_closed(&mut sock).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"REQUEST_TIMEOUT\""), "{text}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    attacks::record(
        &Attack {
            slug: "stalled-json-body",
            request: "`POST /api/v1/license/verify` announcing 100 bytes, sending 16, then nothing",
            limit: "`PERRY_HUB_HTTP_IDLE_TIMEOUT_SECS` (1 s in the test, 60 s by default)",
            response: &format!(
                "`408 REQUEST_TIMEOUT` after {:.1} s, closed",
                took.as_secs_f64()
            ),
        },
        before,
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_flood_of_silent_connections_from_one_address_holds_at_most_its_cap() {
    const FLOOD: usize = 1000;
    const CAP: u32 = 100;
    let hub = hub_with(
        |h| {
            h.max_connections_per_addr = CAP;
            h.header_timeout_secs = 2;
        },
        |_| {},
    )
    .await;
    let before = attacks::baseline(&hub).await;
    let mut socks = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        socks.push(connect_from(&hub, "127.0.0.1").await);
    }
    // Each socket either gets the refusal at once or is held until the header timeout closes
    // it; none stays open.
    let outcomes = futures_util::future::join_all(
        socks
            .iter_mut()
            .map(|s| async move { read_until_closed(s).await }),
    )
    .await;
    let peak = attacks::rss_kib();
    let refused = outcomes
        .iter()
        .filter(|(answer, _)| answer.starts_with(b"HTTP/1.1 429"))
        .count();
    let held = FLOOD - refused;
    assert!(held <= CAP as usize, "{held} connections held");
    assert!(refused >= FLOOD - CAP as usize, "{refused} refused");
    let longest = outcomes.iter().map(|(_, t)| *t).max().unwrap_or_default();
    assert!(longest < Duration::from_secs(10), "{longest:?}");
    drop(socks);
    // The hub is usable afterwards.
    let (status, _) = hub.get_status().await;
    assert_eq!(status, 200);
    attacks::record(
        &Attack {
            slug: "connection-flood",
            request: &format!("{FLOOD} TCP connections from one address that never send a byte"),
            limit: &format!(
                "`PERRY_HUB_MAX_CONNECTIONS_PER_ADDR` ({CAP} in the test) and the header timeout (2 s in the test)"
            ),
            response: &format!(
                "{refused} refused at once with `429 RATE_LIMITED`, {held} held and closed within {:.1} s; peak RSS {:.1} MiB",
                longest.as_secs_f64(),
                peak as f64 / 1024.0
            ),
        },
        before,
    );
    hub.stop().await;
}
