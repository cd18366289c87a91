//! Liveness of every socket of this process, checked by one task once a second rather than by
//! a timer per socket: a ping when one is due, a close after silence, and a drop when a write
//! has waited on the peer too long. It never waits on a socket, so a peer that stops reading
//! cannot stop its own liveness check.

use std::{
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use shared::clock::now_ms;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::outbox::{Outbox, Phase, SocketTx};

/// How often sockets are checked.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Liveness timing, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A ping is queued this long after the previous one.
    pub ping_ms: i64,
    /// A peer silent this long is closed (1001).
    pub silence_ms: i64,
    /// A write waiting on the peer this long drops the connection.
    pub write_timeout_ms: i64,
}

/// What a sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Sockets checked.
    pub live: usize,
    /// Pings queued.
    pub pinged: usize,
    /// Closed after silence.
    pub silent: usize,
    /// Dropped after a stalled write.
    pub stalled: usize,
}

/// The sockets of this process.
#[derive(Default)]
pub struct Sockets {
    list: Mutex<Vec<Weak<Outbox>>>,
}

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sockets")
    }
}

impl Sockets {
    /// Watch a new socket (forgotten once its last sender is gone).
    pub fn add(&self, tx: &SocketTx) {
        self.lock().push(Arc::downgrade(tx));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Outbox>>> {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Check every socket once at `now` (ms).
    pub fn sweep(&self, now: i64, timing: Timing) -> Swept {
        let mut swept = Swept::default();
        let mut list = self.lock();
        list.retain(|weak| {
            let Some(tx) = weak.upgrade() else {
                return false;
            };
            swept.live += 1;
            if tx.phase() == Phase::Dead {
                return true;
            }
            if tx
                .stalled_since()
                .is_some_and(|since| now - since > timing.write_timeout_ms)
            {
                swept.stalled += 1;
                super::ignored("write_timeout");
                tx.kill();
            } else if now - tx.last_seen() > timing.silence_ms {
                swept.silent += 1;
                tx.close_now(1001, "no traffic");
            } else if tx.ping_if_due(now, timing.ping_ms) {
                swept.pinged += 1;
            }
            true
        });
        if list.capacity() > 64 && list.len() < list.capacity() / 4 {
            let keep = list.len() * 2;
            list.shrink_to(keep);
        }
        swept
    }
}

/// Sweep `sockets` every [`SWEEP_INTERVAL`] until `cancel`.
pub fn spawn(
    sockets: Arc<Sockets>,
    timing: Timing,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            sockets.sweep(now_ms(), timing);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        ping_ms: 1_000,
        silence_ms: 5_000,
        write_timeout_ms: 3_000,
    };

    #[test]
    fn due_sockets_are_pinged_silent_ones_closed_and_stalled_ones_dropped() {
        let sockets = Sockets::default();
        let fresh = Outbox::new(1 << 20, 10_000);
        let silent = Outbox::new(1 << 20, 10_000);
        let stalled = Outbox::new(1 << 20, 10_000);
        for tx in [&fresh, &silent, &stalled] {
            sockets.add(tx);
        }
        let gone = Outbox::new(1 << 20, 10_000);
        sockets.add(&gone);
        drop(gone);

        // Nothing is due yet.
        assert_eq!(
            sockets.sweep(10_500, TIMING),
            Swept {
                live: 3,
                ..Swept::default()
            }
        );
        fresh.seen(15_000);
        stalled.seen(15_000);
        stalled.stalled(12_000);
        let swept = sockets.sweep(15_500, TIMING);
        assert_eq!(
            swept,
            Swept {
                live: 3,
                pinged: 1,
                silent: 1,
                stalled: 1
            }
        );
        assert_eq!(fresh.queued(), 1, "a ping is queued");
        assert_eq!(silent.phase(), Phase::Closing, "a close frame goes out");
        assert_eq!(silent.queued(), 1);
        assert_eq!(stalled.phase(), Phase::Dead, "nothing more is written");
        // The ping is not repeated before it is due again.
        assert_eq!(sockets.sweep(15_900, TIMING).pinged, 0);
    }

    #[test]
    fn a_peer_that_stops_reading_is_dropped_at_the_queue_limit() {
        let tx = Outbox::new(1000, 0);
        assert!(tx.send_text("x".repeat(600)));
        assert!(!tx.send_text("y".repeat(600)), "over the byte limit");
        assert_eq!(tx.phase(), Phase::Dead);
        assert_eq!(tx.queued(), 0, "queued frames are released");

        let tx = Outbox::new(usize::MAX, 0);
        for _ in 0..super::super::outbox::MAX_QUEUED_FRAMES {
            assert!(tx.send_text("z".into()));
        }
        assert!(!tx.send_text("z".into()), "over the frame limit");
        assert_eq!(tx.phase(), Phase::Dead);
    }

    #[test]
    fn a_close_is_written_after_what_is_queued_and_ends_sending() {
        let tx = Outbox::new(1 << 20, 0);
        assert!(tx.send_text("a".into()));
        tx.close(1000, "bye");
        assert!(!tx.send_text("b".into()));
        assert!(matches!(
            tx.pop(),
            Some(axum::extract::ws::Message::Text(_))
        ));
        assert!(matches!(
            tx.pop(),
            Some(axum::extract::ws::Message::Close(_))
        ));
        assert!(tx.pop().is_none());
    }
}
