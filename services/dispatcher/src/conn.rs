//! One WebSocket connection after the handshake, as the session modules see it: the frames to
//! send, the incoming stream with liveness, and the decoding of text frames. A leaf module: it
//! knows nothing about roles.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{stream::SplitStream, StreamExt};
use protocol::{parse_incoming, FrameError, Incoming};
use shared::{
    clock::now_ms,
    metrics::{self, label},
};
use tokio_util::sync::CancellationToken;

use crate::registry::SocketTx;

/// Close code for policy violations (bad secret, wrong first frame).
pub const CLOSE_POLICY: u16 = 1008;

/// Close code for a message over the role's limit.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// One side of a connection after the handshake.
pub struct Conn {
    /// Frames to send.
    pub tx: SocketTx,
    /// Incoming frames.
    pub stream: SplitStream<WebSocket>,
    /// Cancelled when the connection ends (either side).
    pub closed: CancellationToken,
    /// Last time anything arrived (ms).
    pub last_seen: Arc<AtomicI64>,
    /// Peer address.
    pub addr: Option<SocketAddr>,
    /// Largest message accepted from this peer in its role; a larger one closes (1009).
    pub limit: usize,
}

impl Conn {
    /// Next frame (None when closed). Updates liveness.
    pub async fn next(&mut self) -> Option<Message> {
        let msg = tokio::select! {
            () = self.closed.cancelled() => None,
            m = self.stream.next() => m,
        };
        self.accept(msg)
    }

    /// An arrived message, checked against the role's limit, or `None` when the connection
    /// ended (or is ended here).
    fn accept(&mut self, msg: Option<Result<Message, axum::Error>>) -> Option<Message> {
        match msg {
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                self.closed.cancel();
                None
            }
            Some(Ok(m)) if size(&m) > self.limit => {
                ignored("too_big");
                self.close(CLOSE_TOO_BIG, "message too big");
                None
            }
            Some(Ok(m)) => {
                self.last_seen.store(now_ms(), Ordering::Relaxed);
                Some(m)
            }
        }
    }

    /// A frame that has already arrived, without waiting (None when none is ready or the
    /// connection ended; the next [`Conn::next`] tells which).
    pub fn ready(&mut self) -> Option<Message> {
        use futures_util::FutureExt as _;
        if self.closed.is_cancelled() {
            return None;
        }
        let msg = self.stream.next().now_or_never()?;
        self.accept(msg)
    }

    /// Close with a code and reason (after flushing queued frames).
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.tx.send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        })));
    }
}

/// A message's payload size.
fn size(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 0,
    }
}

/// A decoded text frame, or why it was skipped.
pub fn decode(msg: &Message) -> Option<Result<Incoming, FrameError>> {
    match msg {
        Message::Text(t) => Some(parse_incoming(t.as_str())),
        _ => None,
    }
}

/// Count an ignored frame.
pub fn ignored(reason: &str) {
    metrics::get()
        .frames_ignored
        .get_or_create(&label("reason", reason))
        .inc();
}
