//! CLI subscribers of this process, per job: small bounded inboxes, fan-out, limits per client
//! address and per job, and the throttle on subscriptions to unknown jobs (D35).

use std::{
    collections::VecDeque,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;

use super::Registry;

/// What a subscriber session receives.
#[derive(Debug, Clone)]
pub enum SubEvent {
    /// Event `seq` of the job, shared by every subscriber it goes to (a queue slot stays a
    /// pointer, and fan-out clones no frame).
    Event { seq: i64, event: Arc<job::Event> },
    /// Catch up from storage: the inbox overflowed, or the broker reconnected.
    Resync,
}

/// A subscriber's pending events. Bounded: when it is full the subscriber is marked lagged,
/// what it held is dropped, and the session catches up from storage, so a slow CLI costs
/// [`SUBSCRIBER_BUFFER`] pointers at most and misses nothing. Nothing is allocated while idle.
pub struct Inbox {
    state: Mutex<InboxState>,
    waker: AtomicWaker,
}

#[derive(Default)]
struct InboxState {
    events: VecDeque<(i64, Arc<job::Event>)>,
    lagged: bool,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inbox")
    }
}

impl Inbox {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(InboxState::default()),
            waker: AtomicWaker::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, event: &SubEvent) {
        {
            let mut s = self.lock();
            match event {
                SubEvent::Event { seq, event } if !s.lagged => {
                    if s.events.len() < SUBSCRIBER_BUFFER {
                        s.events.push_back((*seq, event.clone()));
                    } else {
                        s.events = VecDeque::new();
                        s.lagged = true;
                    }
                }
                SubEvent::Event { .. } => {}
                SubEvent::Resync => {
                    s.events = VecDeque::new();
                    s.lagged = true;
                }
            }
        }
        self.waker.wake();
    }

    /// The next event, or `Resync` when the session must catch up from storage first.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<SubEvent> {
        self.waker.register(cx.waker());
        let mut s = self.lock();
        if std::mem::take(&mut s.lagged) {
            return Poll::Ready(SubEvent::Resync);
        }
        match s.events.pop_front() {
            Some((seq, event)) => {
                if s.events.is_empty() && s.events.capacity() > 16 {
                    s.events = VecDeque::new();
                }
                Poll::Ready(SubEvent::Event { seq, event })
            }
            None => Poll::Pending,
        }
    }

    /// Wait for the next event.
    pub async fn recv(&self) -> SubEvent {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Whether the session must catch up from storage.
    pub fn is_lagged(&self) -> bool {
        self.lock().lagged
    }
}

pub(super) struct Subscriber {
    pub(super) id: u64,
    pub(super) addr: Option<IpAddr>,
    pub(super) inbox: Arc<Inbox>,
}

/// Unknown-job subscriptions allowed per client address and minute (D35).
pub const FAILED_SUBSCRIBE_LIMIT: u32 = 20;

/// Events a subscriber may have pending before it catches up from storage instead.
pub(super) const SUBSCRIBER_BUFFER: usize = 512;

/// Limits on subscriptions held at once.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeLimits {
    /// Per client address.
    pub per_address: usize,
    /// Per job.
    pub per_job: usize,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The client address holds its limit of subscriptions.
    Address,
    /// The job has its limit of subscribers.
    Job,
}

/// A subscription held by a session; dropped with [`Registry::unsubscribe`].
#[derive(Debug)]
pub struct Subscription {
    /// Id within the job's subscribers.
    pub id: u64,
    /// Where the job's events arrive.
    pub inbox: Arc<Inbox>,
}

impl Registry {
    /// Record a subscription to an unknown job from `addr`; false once the address is over
    /// [`FAILED_SUBSCRIBE_LIMIT`] in the current minute.
    pub fn note_failed_subscribe(&self, addr: IpAddr) -> bool {
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

    /// Subscribe to a job's events, within `limits`.
    pub fn subscribe(
        &self,
        job_id: &str,
        addr: Option<IpAddr>,
        limits: SubscribeLimits,
    ) -> Result<Subscription, Refused> {
        let mut inner = self.lock();
        if inner.subscribers.get(job_id).map_or(0, Vec::len) >= limits.per_job {
            return Err(Refused::Job);
        }
        if let Some(ip) = addr {
            let held = inner.subscriptions_by_address.entry(ip).or_default();
            if *held >= limits.per_address {
                return Err(Refused::Address);
            }
            *held += 1;
        }
        inner.next_subscriber += 1;
        let id = inner.next_subscriber;
        let inbox = Inbox::new();
        inner
            .subscribers
            .entry(job_id.to_owned())
            .or_default()
            .push(Subscriber {
                id,
                addr,
                inbox: inbox.clone(),
            });
        Ok(Subscription { id, inbox })
    }

    /// Remove a subscriber.
    pub fn unsubscribe(&self, job_id: &str, id: u64) {
        let mut inner = self.lock();
        let Some(list) = inner.subscribers.get_mut(job_id) else {
            return;
        };
        let Some(at) = list.iter().position(|s| s.id == id) else {
            return;
        };
        let gone = list.swap_remove(at);
        if list.is_empty() {
            inner.subscribers.remove(job_id);
        }
        if let Some(ip) = gone.addr {
            if let Some(held) = inner.subscriptions_by_address.get_mut(&ip) {
                *held -= 1;
                if *held == 0 {
                    inner.subscriptions_by_address.remove(&ip);
                }
            }
        }
    }

    /// Deliver an event to this process's subscribers of the job: a pointer into each inbox.
    /// A full inbox marks its subscriber lagged; it then catches up from storage, so nothing
    /// is lost.
    pub fn deliver(&self, job_id: &str, event: &SubEvent) {
        let inner = self.lock();
        if let Some(list) = inner.subscribers.get(job_id) {
            for s in list {
                s.inbox.push(event);
            }
        }
    }

    /// Tell every subscriber to resynchronise from storage.
    pub fn resync_all(&self) {
        let inner = self.lock();
        for s in inner.subscribers.values().flatten() {
            s.inbox.push(&SubEvent::Resync);
        }
    }
}
