//! Helpers of the attack scenarios: hubs with adjusted limits, raw sockets from a chosen local
//! address, and reading what the hub sends until it closes.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use perry_hub_tests::{HubOptions, TestHub, WAIT};
use shared::config::HttpLimits;
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    net::{TcpSocket, TcpStream},
};

/// The second client address (Linux routes all of 127/8 to loopback).
pub const OTHER_ADDR: &str = "127.0.0.2";

/// A hub with adjusted HTTP limits and ingest settings.
pub async fn hub_with(
    http: impl FnOnce(&mut HttpLimits) + Send + 'static,
    ingest: impl FnOnce(&mut ingest::Settings),
) -> TestHub {
    let mut settings = perry_hub_tests::ingest_settings();
    ingest(&mut settings);
    TestHub::start_with(HubOptions {
        ingest: Some(settings),
        hub: Some(Box::new(move |h| http(&mut h.http))),
        ..HubOptions::default()
    })
    .await
}

/// The hub's socket address.
pub fn addr(hub: &TestHub) -> SocketAddr {
    hub.base_url
        .trim_start_matches("http://")
        .parse()
        .expect("hub address")
}

/// A TCP connection to the hub from `local` (an address on loopback).
pub async fn connect_from(hub: &TestHub, local: &str) -> TcpStream {
    let local: IpAddr = local.parse().expect("local address");
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(local, 0)).expect("bind local");
    socket.connect(addr(hub)).await.expect("connect")
}

/// Everything the hub sends until it closes the connection (or resets it), and how long that
/// took; panics when it is still open after [`WAIT`].
pub async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> (Vec<u8>, Duration) {
    let started = tokio::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(started + WAIT, stream.read(&mut buf)).await {
            Err(_) => panic!("the hub kept the connection open for {WAIT:?}"),
            Ok(Ok(0) | Err(_)) => return (got, started.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status line of a raw HTTP response.
pub fn status_line(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A reqwest client whose connections leave from `local`.
pub fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().ok())
        .timeout(WAIT)
        .build()
        .expect("client")
}
