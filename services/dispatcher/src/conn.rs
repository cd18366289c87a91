//! One WebSocket connection after the handshake, as the session modules see it: one task owns
//! the socket, reads the peer's frames and writes the queued ones in the same poll, so a
//! connection is one task, one small queue and the socket's own buffers. A leaf module: it
//! knows nothing about roles.
//!
//! - [`outbox`]: the bounded queue of frames to write (the [`SocketTx`] others send through).
//! - [`sweep`]: pings, silence and stalled writes for every socket, from one task.

use std::{
    future::poll_fn,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{Sink, SinkExt, Stream};
use protocol::{parse_incoming, FrameError, Incoming, Outgoing};
use shared::{
    clock::now_ms,
    metrics::{self, label},
};

pub mod outbox;
pub mod sweep;

pub use outbox::{size, Phase, SocketTx};

/// Close code for policy violations (bad secret, wrong first frame).
pub const CLOSE_POLICY: u16 = 1008;

/// Close code for a message over the role's limit.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Frames a producing session lets pile up before it waits for its peer.
const HIGH_WATER_FRAMES: usize = 256;
/// Bytes a producing session lets pile up before it waits for its peer.
const HIGH_WATER_BYTES: usize = 256 * 1024;
/// How long the last frames (a close) may take once a session is over.
const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where writing stands after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Everything queued is written and flushed.
    Idle,
    /// Waiting for the peer to take more.
    Waiting,
    /// The connection is over (socket error, close sent, or dropped).
    Over,
}

/// One side of a connection after the handshake.
pub struct Conn {
    socket: WebSocket,
    /// Frames to send.
    pub tx: SocketTx,
    /// Peer address.
    pub addr: Option<SocketAddr>,
    /// Largest message accepted from this peer in its role; a larger one closes (1009).
    pub limit: usize,
    /// A frame is handed to the socket and not yet flushed.
    flushing: bool,
    /// The close frame is handed to the socket.
    close_sent: bool,
    /// Nothing more is read.
    ended: bool,
}

impl Conn {
    /// Wrap an upgraded socket whose frames are queued on `tx`.
    pub fn new(socket: WebSocket, tx: SocketTx, addr: Option<SocketAddr>, limit: usize) -> Self {
        Self {
            socket,
            tx,
            addr,
            limit,
            flushing: false,
            close_sent: false,
            ended: false,
        }
    }

    /// Next frame from the peer (None when the connection is over). Queued frames are written
    /// meanwhile.
    pub async fn next(&mut self) -> Option<Message> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        if self.ended {
            return Poll::Ready(None);
        }
        self.tx.register(cx.waker());
        if self.poll_writes(cx) == Writes::Over {
            return self.end();
        }
        let msg = match Pin::new(&mut self.socket).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(m) => m,
        };
        match self.accept(msg) {
            Some(m) => Poll::Ready(Some(m)),
            None => self.end(),
        }
    }

    fn end(&mut self) -> Poll<Option<Message>> {
        self.ended = true;
        Poll::Ready(None)
    }

    /// Write what is queued, as far as the peer takes it.
    fn poll_writes(&mut self, cx: &mut Context<'_>) -> Writes {
        loop {
            // Dropped (a peer that does not read): stop even while a flush is pending.
            if self.tx.phase() == Phase::Dead {
                return Writes::Over;
            }
            if self.flushing {
                match Pin::new(&mut self.socket).poll_flush(cx) {
                    Poll::Pending => {
                        self.tx.stalled(now_ms());
                        return Writes::Waiting;
                    }
                    Poll::Ready(Err(_)) => return Writes::Over,
                    Poll::Ready(Ok(())) => {
                        self.flushing = false;
                        self.tx.unstalled();
                        if self.close_sent {
                            return Writes::Over;
                        }
                    }
                }
            }
            if self.tx.queued() == 0 {
                return Writes::Idle;
            }
            // Hand the socket every queued frame it takes, then flush them together.
            loop {
                match Pin::new(&mut self.socket).poll_ready(cx) {
                    Poll::Pending => {
                        self.tx.stalled(now_ms());
                        return Writes::Waiting;
                    }
                    Poll::Ready(Err(_)) => return Writes::Over,
                    Poll::Ready(Ok(())) => {}
                }
                let Some(msg) = self.tx.pop() else { break };
                let is_close = matches!(msg, Message::Close(_));
                if Pin::new(&mut self.socket).start_send(msg).is_err() {
                    return Writes::Over;
                }
                self.flushing = true;
                if is_close {
                    self.close_sent = true;
                    break;
                }
            }
        }
    }

    /// An arrived message, checked against the role's limit, or `None` when the connection
    /// ended (or is ended here).
    fn accept(&mut self, msg: Option<Result<Message, axum::Error>>) -> Option<Message> {
        match msg {
            Some(Ok(Message::Close(_)) | Err(_)) | None => None,
            Some(Ok(m)) if size(&m) > self.limit => {
                ignored("too_big");
                self.close(CLOSE_TOO_BIG, "message too big");
                None
            }
            Some(Ok(m)) => {
                self.tx.seen(now_ms());
                Some(m)
            }
        }
    }

    /// A frame that has already arrived, without waiting (None when none is ready or the
    /// connection ended; the next [`Conn::next`] tells which).
    pub fn ready(&mut self) -> Option<Message> {
        if self.ended {
            return None;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.socket).poll_next(&mut cx) {
            Poll::Pending => None,
            Poll::Ready(msg) => {
                let accepted = self.accept(msg);
                self.ended = accepted.is_none();
                accepted
            }
        }
    }

    /// Queue a hub frame, and once many are waiting, write until the peer has taken most of
    /// them: a session producing frames (a replay, a fast log) keeps pace with its peer
    /// instead of growing memory. False once the connection is over.
    pub async fn send(&mut self, frame: &Outgoing) -> bool {
        if !self.tx.send_text(frame.to_json()) {
            return false;
        }
        let (frames, bytes) = self.tx.backlog();
        if frames < HIGH_WATER_FRAMES && bytes < HIGH_WATER_BYTES {
            return true;
        }
        poll_fn(|cx| {
            self.tx.register(cx.waker());
            match self.poll_writes(cx) {
                Writes::Over => Poll::Ready(false),
                Writes::Idle => Poll::Ready(true),
                Writes::Waiting => {
                    let (frames, bytes) = self.tx.backlog();
                    if frames < HIGH_WATER_FRAMES / 4 && bytes < HIGH_WATER_BYTES / 4 {
                        Poll::Ready(true)
                    } else {
                        Poll::Pending
                    }
                }
            }
        })
        .await
    }

    /// Close with a code and reason (after the frames queued before it).
    pub fn close(&self, code: u16, reason: &str) {
        self.tx.close(code, reason);
    }

    /// The session is over: write what is still queued (a close frame, usually) for a short
    /// while, close the socket, and refuse further frames.
    pub async fn finish(mut self) {
        if self.tx.phase() == Phase::Dead {
            // Dropped (a peer that does not read): nothing more is written.
            return;
        }
        let _ = tokio::time::timeout(
            FINISH_TIMEOUT,
            poll_fn(|cx| {
                self.tx.register(cx.waker());
                match self.poll_writes(cx) {
                    Writes::Waiting => Poll::Pending,
                    Writes::Idle | Writes::Over => Poll::Ready(()),
                }
            }),
        )
        .await;
        self.tx.kill();
        if !self.close_sent {
            let _ = tokio::time::timeout(FINISH_TIMEOUT, self.socket.close()).await;
        }
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
