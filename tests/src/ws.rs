//! Simulated WebSocket peers: a JSON-speaking client ([`WsClient`], the CLI side) and a build
//! worker ([`FakeWorker`]) that says hello and takes assignments.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::WAIT;

/// A WebSocket client speaking JSON frames.
pub struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Connect.
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Self { ws }
    }

    /// Connect with a receive buffer of a few KiB, so a client that stops reading makes the
    /// hub's writes wait after little data instead of after megabytes of kernel buffer.
    pub async fn connect_small_buffer(url: &str) -> Self {
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host");
        let addr = tokio::net::lookup_host(host)
            .await
            .expect("resolve")
            .next()
            .expect("an address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("receive buffer");
        let stream = socket.connect(addr).await.expect("connect");
        let (ws, _) =
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
                .await
                .expect("ws handshake");
        Self { ws }
    }

    /// Send a JSON frame.
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(WsMessage::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    /// Send a JSON frame; false once the connection is gone.
    pub async fn try_send(&mut self, v: Value) -> bool {
        self.ws
            .send(WsMessage::Text(v.to_string().into()))
            .await
            .is_ok()
    }

    /// Send a raw message.
    pub async fn send_raw(&mut self, m: WsMessage) {
        self.ws.send(m).await.expect("ws send");
    }

    /// Next JSON frame within [`WAIT`]; None when the socket closed.
    pub async fn recv(&mut self) -> Option<Value> {
        self.recv_within(WAIT)
            .await
            .expect("timed out waiting for a frame")
    }

    /// Next JSON frame within `d`: Err on timeout, Ok(None) when closed.
    pub async fn recv_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| ())?;
            match next {
                Some(Ok(WsMessage::Text(t))) => {
                    return Ok(Some(serde_json::from_str(t.as_str()).expect("json frame")))
                }
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => return Ok(None),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The close frame's code and reason (skipping other frames).
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for close")
            {
                Some(Ok(WsMessage::Close(Some(f)))) => {
                    return Some((f.code.into(), f.reason.to_string()))
                }
                Some(Ok(WsMessage::Close(None))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Receive frames until one of type `t` arrives; returns it (panics on close/timeout).
    pub async fn expect(&mut self, t: &str) -> Value {
        loop {
            let f = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("socket closed while waiting for {t}"));
            if f["type"] == t {
                return f;
            }
        }
    }

    /// Close the socket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A simulated build worker.
pub struct FakeWorker {
    /// The socket.
    pub ws: WsClient,
}

impl FakeWorker {
    /// Connect and say hello.
    pub async fn connect(url: &str, hello: Value) -> Self {
        let mut ws = WsClient::connect(url).await;
        ws.send(hello).await;
        Self { ws }
    }

    /// Wait for the next `job_assign`.
    pub async fn assignment(&mut self) -> Value {
        self.ws.expect("job_assign").await
    }

    /// Send a frame.
    pub async fn send(&mut self, v: Value) {
        self.ws.send(v).await;
    }
}
