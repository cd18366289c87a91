//! In-memory registry of this process's sockets: connected workers with their slots, and CLI
//! subscribers per job. MySQL holds the durable truth; this is only who is connected *here*.
//! Locks are held for map updates only, never across an await.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, MutexGuard},
};

use tokio::sync::{mpsc, watch};

use protocol::Outgoing;

mod subscribers;

use subscribers::Subscriber;
#[cfg(test)]
use subscribers::SUBSCRIBER_BUFFER;
pub use subscribers::{
    Inbox, Refused, SubEvent, SubscribeLimits, Subscription, FAILED_SUBSCRIBE_LIMIT,
};

/// Tells a worker session that an artifact of a job it holds was stored.
pub type NoticeTx = mpsc::UnboundedSender<(String, i32, job::event::ArtifactRecord)>;

pub use crate::conn::SocketTx;

/// Queue a hub frame on a socket. Returns false when the socket is gone or not reading.
pub fn send_frame(tx: &SocketTx, frame: &Outgoing) -> bool {
    tx.send_text(frame.to_json())
}

/// A connected worker.
#[derive(Debug)]
pub struct WorkerEntry {
    /// Connection id (also the `workers` row id).
    pub id: String,
    /// Worker name.
    pub name: String,
    /// Capabilities (lower-case, known targets only).
    pub capabilities: Vec<String>,
    /// Parallel job slots.
    pub max_concurrent: usize,
    /// Jobs held: job id -> attempt.
    pub jobs: HashMap<String, i32>,
    /// Slots reserved by an assignment in progress.
    pub reserved: usize,
    /// Updating its compiler: no dispatch until `update_result` or a reconnect.
    pub updating: bool,
    /// `update_perry` to send once idle.
    pub update_pending: bool,
    /// When the worker was told to update.
    pub updating_since: Option<std::time::Instant>,
    /// Drained by an operator: keeps what it holds, is given nothing new.
    pub draining: bool,
    /// The socket.
    pub tx: SocketTx,
    /// The session's notices.
    pub notices: NoticeTx,
}

impl WorkerEntry {
    fn free(&self) -> usize {
        if self.updating || self.draining {
            return 0;
        }
        self.max_concurrent
            .saturating_sub(self.jobs.len() + self.reserved)
    }
}

#[derive(Default)]
struct Inner {
    workers: HashMap<String, WorkerEntry>,
    subscribers: HashMap<String, Vec<Subscriber>>,
    subscriptions_by_address: HashMap<std::net::IpAddr, usize>,
    next_subscriber: u64,
}

/// A slot reserved on a worker for an assignment in progress.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// Worker connection id.
    pub worker_id: String,
    /// Worker name.
    pub worker_name: String,
    /// Its socket.
    pub tx: SocketTx,
}

/// The registry.
pub struct Registry {
    inner: Mutex<Inner>,
    capacity: watch::Sender<u64>,
    failed_subscribes: Mutex<HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
    /// Every socket of this process, for liveness checks.
    pub sockets: std::sync::Arc<crate::conn::sweep::Sockets>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: watch::channel(0).0,
            failed_subscribes: Mutex::new(HashMap::new()),
            sockets: std::sync::Arc::default(),
        }
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent (plain inserts and
        // removes), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wake every dispatch pump (a worker came, left, freed a slot or finished updating).
    pub fn capacity_changed(&self) {
        self.capacity.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Watch capacity changes.
    pub fn watch_capacity(&self) -> watch::Receiver<u64> {
        self.capacity.subscribe()
    }

    /// Register a worker.
    pub fn add_worker(&self, entry: WorkerEntry) {
        self.lock().workers.insert(entry.id.clone(), entry);
        shared::metrics::get().active_workers.inc();
        self.capacity_changed();
    }

    /// Remove a worker; returns the jobs it held.
    pub fn remove_worker(&self, id: &str) -> Vec<(String, i32)> {
        let removed = self.lock().workers.remove(id);
        self.capacity_changed();
        match removed {
            Some(w) => {
                shared::metrics::get().active_workers.dec();
                w.jobs.into_iter().collect()
            }
            None => Vec::new(),
        }
    }

    /// Free slots for `target` across connected workers.
    pub fn free_slots(&self, target: &str) -> usize {
        self.lock()
            .workers
            .values()
            .filter(|w| w.capabilities.iter().any(|c| c == target))
            .map(WorkerEntry::free)
            .sum()
    }

    /// Reserve a slot for `job_id` on the capable worker with the most free slots. A
    /// connection still holding an earlier attempt of the job is passed over: its `complete`
    /// carries no attempt, so it would be taken for the new one.
    pub fn reserve(&self, target: &str, job_id: &str) -> Option<Reservation> {
        let mut inner = self.lock();
        let w = inner
            .workers
            .values_mut()
            .filter(|w| {
                w.free() > 0
                    && w.capabilities.iter().any(|c| c == target)
                    && !w.jobs.contains_key(job_id)
            })
            .max_by_key(|w| w.free())?;
        w.reserved += 1;
        Some(Reservation {
            worker_id: w.id.clone(),
            worker_name: w.name.clone(),
            tx: w.tx.clone(),
        })
    }

    /// Turn a reservation into a held job (or just drop it when `job` is None).
    pub fn settle(&self, worker_id: &str, job: Option<(&str, i32)>) {
        let mut inner = self.lock();
        if let Some(w) = inner.workers.get_mut(worker_id) {
            w.reserved = w.reserved.saturating_sub(1);
            if let Some((job_id, attempt)) = job {
                w.jobs.insert(job_id.to_owned(), attempt);
            }
        }
        drop(inner);
        if job.is_none() {
            self.capacity_changed();
        }
    }

    /// The attempt of `job_id` held by this worker connection, if any.
    pub fn held_attempt(&self, worker_id: &str, job_id: &str) -> Option<i32> {
        self.lock()
            .workers
            .get(worker_id)?
            .jobs
            .get(job_id)
            .copied()
    }

    /// The only job a worker holds (for an `error` frame without `job_id`).
    pub fn only_job(&self, worker_id: &str) -> Option<String> {
        let inner = self.lock();
        let w = inner.workers.get(worker_id)?;
        (w.jobs.len() == 1)
            .then(|| w.jobs.keys().next().cloned())
            .flatten()
    }

    /// Record a re-attached job.
    pub fn attach(&self, worker_id: &str, job_id: &str, attempt: i32) {
        if let Some(w) = self.lock().workers.get_mut(worker_id) {
            w.jobs.insert(job_id.to_owned(), attempt);
        }
    }

    /// Free the slot of (job, attempt) once. Returns the `update_perry` target socket when the
    /// worker became idle with an update pending.
    pub fn release(&self, worker_id: &str, job_id: &str, attempt: i32) -> Option<SocketTx> {
        let mut inner = self.lock();
        let w = inner.workers.get_mut(worker_id)?;
        if w.jobs.get(job_id) != Some(&attempt) {
            return None;
        }
        w.jobs.remove(job_id);
        let update = if w.jobs.is_empty() && w.reserved == 0 && w.update_pending {
            w.update_pending = false;
            w.updating = true;
            w.updating_since = Some(std::time::Instant::now());
            Some(w.tx.clone())
        } else {
            None
        };
        drop(inner);
        self.capacity_changed();
        update
    }

    /// Job ids this worker connection holds.
    pub fn held_jobs(&self, worker_id: &str) -> Vec<String> {
        self.lock()
            .workers
            .get(worker_id)
            .map(|w| w.jobs.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Give jobs again to a worker that was told to update more than `timeout` ago and never
    /// answered.
    pub fn expire_update(&self, worker_id: &str, timeout: std::time::Duration) {
        let expired = {
            let mut inner = self.lock();
            match inner.workers.get_mut(worker_id) {
                Some(w)
                    if w.updating && w.updating_since.is_some_and(|t| t.elapsed() > timeout) =>
                {
                    w.updating = false;
                    w.updating_since = None;
                    true
                }
                _ => false,
            }
        };
        if expired {
            tracing::warn!(
                worker_id,
                "no update_result after update_perry; dispatching to the worker again"
            );
            self.capacity_changed();
        }
    }

    /// Mark a worker as updating (or done updating).
    pub fn set_updating(&self, worker_id: &str, updating: bool) {
        if let Some(w) = self.lock().workers.get_mut(worker_id) {
            w.updating = updating;
        }
        self.capacity_changed();
    }

    /// Ask local workers to update: idle ones now (returned), busy ones once idle. With `only`,
    /// just those worker ids.
    pub fn request_update(&self, only: Option<&HashSet<String>>) -> Vec<SocketTx> {
        let mut inner = self.lock();
        let mut now = Vec::new();
        for w in inner
            .workers
            .values_mut()
            .filter(|w| only.is_none_or(|o| o.contains(&w.id)))
        {
            if w.updating || w.update_pending {
                continue;
            }
            if w.jobs.is_empty() && w.reserved == 0 {
                w.updating = true;
                w.updating_since = Some(std::time::Instant::now());
                now.push(w.tx.clone());
            } else {
                w.update_pending = true;
            }
        }
        now
    }

    /// The socket of the worker holding `attempt` of `job_id`.
    pub fn worker_holding(&self, job_id: &str, attempt: i32) -> Option<SocketTx> {
        self.lock()
            .workers
            .values()
            .find(|w| w.jobs.get(job_id) == Some(&attempt))
            .map(|w| w.tx.clone())
    }

    /// Hand a stored artifact to the session holding `attempt` of its job. False when no
    /// session here holds it.
    pub fn notify_holder(&self, attempt: i32, record: job::event::ArtifactRecord) -> bool {
        let inner = self.lock();
        let holder = inner
            .workers
            .values()
            .find(|w| w.jobs.get(&record.job_id) == Some(&attempt));
        match holder {
            Some(w) => w
                .notices
                .send((record.job_id.clone(), attempt, record))
                .is_ok(),
            None => false,
        }
    }

    /// The socket of a connected worker.
    pub fn worker_tx(&self, worker_id: &str) -> Option<SocketTx> {
        self.lock().workers.get(worker_id).map(|w| w.tx.clone())
    }

    /// Drain (or undrain) every local connection of the worker called `name`; with `only`,
    /// set every local worker: drained when its name is in the set, else undrained.
    pub fn set_draining(&self, name: Option<&str>, draining: bool, only: Option<&HashSet<String>>) {
        let mut inner = self.lock();
        for w in inner.workers.values_mut() {
            match (name, only) {
                (Some(n), _) if w.name == n => w.draining = draining,
                (None, Some(set)) => w.draining = set.contains(&w.name),
                _ => {}
            }
        }
        drop(inner);
        self.capacity_changed();
    }

    /// Targets that have at least one capable worker here.
    pub fn served_targets(&self) -> HashSet<String> {
        self.lock()
            .workers
            .values()
            .flat_map(|w| w.capabilities.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests;
