//! The frames waiting to be written to one socket: a bounded queue shared by the socket's
//! session (which writes them) and whoever sends to the peer (dispatch, fan-out, the sweeper).
//! Nothing is allocated until a frame is queued, so an idle socket costs one small struct.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use axum::extract::ws::{CloseFrame, Message};
use futures_util::task::AtomicWaker;

/// Most frames queued for one socket. A peer that lets more pile up is not reading: it is
/// closed rather than allowed to grow the hub's memory (DEC-18).
pub const MAX_QUEUED_FRAMES: usize = 1024;

/// The sending side of a socket (cheap to clone).
pub type SocketTx = Arc<Outbox>;

/// Where a socket's queue stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Frames are accepted.
    Open,
    /// A close frame is queued: what is before it is still written, nothing is accepted.
    Closing,
    /// Nothing more is written; the connection is dropped.
    Dead,
}

struct Queue {
    frames: VecDeque<Message>,
    bytes: usize,
    phase: Phase,
}

/// One socket's outgoing frames and liveness.
pub struct Outbox {
    queue: Mutex<Queue>,
    /// The session task waiting for frames (or for the end).
    waker: AtomicWaker,
    /// Most queued bytes.
    max_bytes: usize,
    /// Last time anything arrived from the peer (ms).
    last_seen: AtomicI64,
    /// Last ping queued (ms).
    last_ping: AtomicI64,
    /// Since when a write has waited for the peer (ms); 0 while writes go through.
    stalled_since: AtomicI64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

/// A message's payload size.
pub fn size(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 0,
    }
}

impl Outbox {
    /// An empty queue holding at most `max_bytes` of frames.
    pub fn new(max_bytes: usize, now_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                bytes: 0,
                phase: Phase::Open,
            }),
            waker: AtomicWaker::new(),
            max_bytes,
            last_seen: AtomicI64::new(now_ms),
            last_ping: AtomicI64::new(now_ms),
            stalled_since: AtomicI64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Plain pushes and pops: a poisoned lock leaves a consistent queue.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queue a frame. False when the socket is closing or gone, or when the peer has let
    /// [`MAX_QUEUED_FRAMES`] or the byte limit pile up: the socket is then dropped (it is not
    /// reading, and a CLI reconnects and replays from storage).
    pub fn send(&self, msg: Message) -> bool {
        let len = size(&msg);
        let accepted = {
            let mut q = self.lock();
            if q.phase != Phase::Open {
                return false;
            }
            if q.frames.len() >= MAX_QUEUED_FRAMES || q.bytes + len > self.max_bytes {
                q.frames = VecDeque::new();
                q.bytes = 0;
                q.phase = Phase::Dead;
                false
            } else {
                q.frames.push_back(msg);
                q.bytes += len;
                true
            }
        };
        if !accepted {
            crate::conn::ignored("send_queue_full");
            tracing::warn!("a peer stopped reading its socket; closing it");
        }
        self.waker.wake();
        accepted
    }

    /// Queue a text frame.
    pub fn send_text(&self, text: String) -> bool {
        self.send(Message::Text(text.into()))
    }

    /// Queue a close frame after what is queued; nothing is accepted after it.
    pub fn close(&self, code: u16, reason: &str) {
        {
            let mut q = self.lock();
            if q.phase != Phase::Open {
                return;
            }
            q.frames.push_back(close_frame(code, reason));
            q.phase = Phase::Closing;
        }
        self.waker.wake();
    }

    /// Drop what is queued and close now with `code`: a frame that cannot be written in time is
    /// no longer worth writing.
    pub fn close_now(&self, code: u16, reason: &str) {
        {
            let mut q = self.lock();
            if q.phase == Phase::Dead {
                return;
            }
            q.frames = VecDeque::from([close_frame(code, reason)]);
            q.bytes = 0;
            q.phase = Phase::Closing;
        }
        self.waker.wake();
    }

    /// End the connection without writing anything more.
    pub fn kill(&self) {
        {
            let mut q = self.lock();
            q.frames = VecDeque::new();
            q.bytes = 0;
            q.phase = Phase::Dead;
        }
        self.waker.wake();
    }

    /// Where the queue stands.
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Frames waiting.
    pub fn queued(&self) -> usize {
        self.lock().frames.len()
    }

    /// Frames and bytes waiting.
    pub fn backlog(&self) -> (usize, usize) {
        let q = self.lock();
        (q.frames.len(), q.bytes)
    }

    /// The next frame to write.
    pub(super) fn pop(&self) -> Option<Message> {
        let mut q = self.lock();
        let msg = q.frames.pop_front()?;
        q.bytes -= size(&msg);
        if q.frames.is_empty() && q.frames.capacity() > 16 {
            // A burst is written: give its memory back.
            q.frames = VecDeque::new();
        }
        Some(msg)
    }

    /// Wake the session on the next send, close or kill.
    pub(super) fn register(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// Something arrived from the peer.
    pub(super) fn seen(&self, now_ms: i64) {
        self.last_seen.store(now_ms, Ordering::Relaxed);
    }

    /// Last time anything arrived from the peer (ms).
    pub fn last_seen(&self) -> i64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    /// A write is waiting for the peer (from `now_ms` unless it already was).
    pub(super) fn stalled(&self, now_ms: i64) {
        let _ = self.stalled_since.compare_exchange(
            0,
            now_ms.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Writes go through again.
    pub(super) fn unstalled(&self) {
        self.stalled_since.store(0, Ordering::Relaxed);
    }

    /// Since when a write has waited for the peer (ms), if it is waiting.
    pub fn stalled_since(&self) -> Option<i64> {
        Some(self.stalled_since.load(Ordering::Relaxed)).filter(|s| *s != 0)
    }

    /// Queue a ping when the last one is `every_ms` old. True when one was queued.
    pub(super) fn ping_if_due(&self, now_ms: i64, every_ms: i64) -> bool {
        if now_ms - self.last_ping.load(Ordering::Relaxed) < every_ms {
            return false;
        }
        self.last_ping.store(now_ms, Ordering::Relaxed);
        self.send(Message::Ping(Vec::new().into()))
    }
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }))
}
