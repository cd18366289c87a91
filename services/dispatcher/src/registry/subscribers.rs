//! CLI subscribers of this process, per job: bounded queues, fan-out, and the throttle on
//! subscriptions to unknown jobs (D35).

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use tokio::sync::mpsc;

use super::Registry;

/// What a subscriber session receives.
#[derive(Debug, Clone)]
pub enum SubEvent {
    /// Event `seq` of the job, shared by every subscriber it goes to (a queue slot stays a
    /// pointer, and fan-out clones no frame).
    Event { seq: i64, event: Arc<job::Event> },
    /// Resynchronise from MySQL (after a broker reconnect).
    Resync,
}

pub(super) struct Subscriber {
    pub(super) id: u64,
    pub(super) tx: mpsc::Sender<SubEvent>,
    pub(super) lagged: Arc<AtomicBool>,
}

/// Unknown-job subscriptions allowed per client address and minute (D35).
pub const FAILED_SUBSCRIBE_LIMIT: u32 = 20;

/// Subscriber queue length before it is marked lagged and catches up from MySQL.
pub(super) const SUBSCRIBER_BUFFER: usize = 512;

impl Registry {
    /// Record a subscription to an unknown job from `addr`; false once the address is over
    /// [`FAILED_SUBSCRIBE_LIMIT`] in the current minute.
    pub fn note_failed_subscribe(&self, addr: std::net::IpAddr) -> bool {
        let mut map = self
            .failed_subscribes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        if map.len() > 10_000 {
            map.retain(|_, (_, start)| {
                now.duration_since(*start) < std::time::Duration::from_secs(60)
            });
        }
        let entry = map.entry(addr).or_insert((0, now));
        if now.duration_since(entry.1) >= std::time::Duration::from_secs(60) {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.0 <= FAILED_SUBSCRIBE_LIMIT
    }

    /// Subscribe to a job's events.
    pub fn subscribe(&self, job_id: &str) -> (u64, mpsc::Receiver<SubEvent>, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut inner = self.lock();
        inner.next_subscriber += 1;
        let id = inner.next_subscriber;
        inner
            .subscribers
            .entry(job_id.to_owned())
            .or_default()
            .push(Subscriber {
                id,
                tx,
                lagged: lagged.clone(),
            });
        (id, rx, lagged)
    }

    /// Remove a subscriber.
    pub fn unsubscribe(&self, job_id: &str, id: u64) {
        let mut inner = self.lock();
        if let Some(list) = inner.subscribers.get_mut(job_id) {
            list.retain(|s| s.id != id);
            if list.is_empty() {
                inner.subscribers.remove(job_id);
            }
        }
    }

    /// Deliver an event to this process's subscribers of the job. A full queue marks the
    /// subscriber lagged; it then catches up from MySQL, so nothing is lost.
    pub fn deliver(&self, job_id: &str, event: &SubEvent) {
        let inner = self.lock();
        if let Some(list) = inner.subscribers.get(job_id) {
            for s in list {
                if s.tx.try_send(event.clone()).is_err() {
                    s.lagged.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// Tell every subscriber to resynchronise from MySQL.
    pub fn resync_all(&self) {
        let inner = self.lock();
        for s in inner.subscribers.values().flatten() {
            if s.tx.try_send(SubEvent::Resync).is_err() {
                s.lagged.store(true, Ordering::Relaxed);
            }
        }
    }
}
