//! The in-process backend of [`super::Queue`], for `perry-hub all` without RabbitMQ (DEC-35).
//!
//! It keeps what the hub relies on from RabbitMQ: one priority queue per target (highest
//! priority first, FIFO within a priority) and the finisher queue, each consumed with a
//! prefetch and manual ack; a nack with requeue or a subscription that goes away puts its
//! unacknowledged deliveries back at their place, marked redelivered (at-least-once); job
//! messages for a queue that does not exist come back as unroutable; every event and control
//! message is copied to each dispatcher's private subscription, dropped when there is none.
//!
//! It lives in memory only: a crash or restart loses it, and the hub rebuilds it from MySQL
//! (the outbox still decides what is delivered; queued jobs are announced again at start).
//! Memory is bounded where RabbitMQ's would be: a private event subscription that falls
//! [`MAX_INSTANCE_BACKLOG`] messages (or [`MAX_INSTANCE_BACKLOG_BYTES`]) behind is ended (its dispatcher subscribes again and
//! resynchronises from MySQL, as after a broker outage) and at most [`MAX_DEAD_LETTERS`] dead
//! letters are kept. Job queues hold one message per queued job (plus short-lived duplicates),
//! as RabbitMQ's do.

#[cfg(test)]
mod tests;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::watch;

use super::{
    backend::{self, Delivery, Disposition, Publish, Source},
    Error, Exchange, Result, FINISHER_ROUTING_KEY, MAX_PRIORITY, TARGETS,
};

/// Messages a dispatcher's event subscription may hold before it is ended.
pub const MAX_INSTANCE_BACKLOG: usize = 65_536;
/// Bytes of messages a dispatcher's event subscription may hold before it is ended (a burst's
/// message carries up to 1 024 frames).
pub const MAX_INSTANCE_BACKLOG_BYTES: usize = 64 << 20;
/// Dead letters kept; beyond this the oldest is dropped.
pub const MAX_DEAD_LETTERS: usize = 10_000;

/// The in-process queue of one process. Cheap to clone (one shared state).
#[derive(Clone, Default)]
pub struct Memory {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    queues: HashMap<Source, Queue>,
    next_seq: u64,
    next_consumer: u64,
    dead: VecDeque<Arc<[u8]>>,
}

/// Ready messages by (priority descending, arrival), and those delivered and not yet settled.
struct Queue {
    ready: BTreeMap<(Reverse<u8>, u64), Item>,
    unacked: HashMap<u64, Held>,
    wake: watch::Sender<()>,
    /// The subscription owning a private event queue (it dies with it); `None` for a durable
    /// queue.
    owner: Option<u64>,
    /// A private queue that overflowed: its subscription ends.
    ended: bool,
    /// Bytes of the messages in `ready`.
    ready_bytes: usize,
}

#[derive(Clone)]
struct Item {
    id: Option<u64>,
    data: Arc<[u8]>,
    redelivered: bool,
}

struct Held {
    consumer: u64,
    priority: u8,
    item: Item,
}

impl Queue {
    fn new(owner: Option<u64>) -> Self {
        Self {
            ready: BTreeMap::new(),
            unacked: HashMap::new(),
            wake: watch::Sender::new(()),
            owner,
            ended: false,
            ready_bytes: 0,
        }
    }

    fn push(&mut self, seq: u64, priority: u8, item: Item) {
        self.ready_bytes += item.data.len();
        self.ready.insert((Reverse(priority), seq), item);
        self.wake.send_replace(());
    }

    /// Put `consumer`'s unsettled deliveries back at their place.
    fn give_back(&mut self, consumer: u64) {
        let mine: Vec<u64> = (self.unacked.iter())
            .filter(|(_, h)| h.consumer == consumer)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in mine {
            if let Some(held) = self.unacked.remove(&seq) {
                let item = Item {
                    redelivered: true,
                    ..held.item
                };
                self.push(seq, held.priority, item);
            }
        }
    }
}

impl Memory {
    /// An empty queue with every target queue and the finisher queue.
    pub fn new() -> Self {
        let mut state = State::default();
        for target in TARGETS {
            let source = Source::Target((*target).to_owned());
            state.queues.insert(source, Queue::new(None));
        }
        state.queues.insert(Source::Finisher, Queue::new(None));
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Route every message; returns the indexes of job messages no queue takes.
    pub fn publish(&self, batch: &[Publish<'_>]) -> Vec<usize> {
        let mut guard = self.state();
        let state = &mut *guard;
        let mut returned = Vec::new();
        for (index, m) in batch.iter().enumerate() {
            let item = Item {
                id: u64::try_from(m.id).ok(),
                data: Arc::from(m.payload),
                redelivered: false,
            };
            match m.exchange {
                Exchange::Jobs => {
                    let (source, priority) = if m.routing_key == FINISHER_ROUTING_KEY {
                        // Like the broker's finisher queue: no priorities, FIFO.
                        (Source::Finisher, 0)
                    } else {
                        let source = Source::Target(m.routing_key.to_owned());
                        (source, m.priority.min(MAX_PRIORITY))
                    };
                    let Some(queue) = state.queues.get_mut(&source) else {
                        returned.push(index);
                        continue;
                    };
                    state.next_seq += 1;
                    queue.push(state.next_seq, priority, item);
                }
                Exchange::Events => {
                    // Each dispatcher's subscription is bound to `job.#` and `control.#`.
                    let key = m.routing_key;
                    if !(key.starts_with("job.") || key.starts_with("control.")) {
                        continue;
                    }
                    for queue in state.queues.values_mut() {
                        if queue.owner.is_none() || queue.ended {
                            continue;
                        }
                        if queue.ready.len() >= MAX_INSTANCE_BACKLOG
                            || queue.ready_bytes + item.data.len() > MAX_INSTANCE_BACKLOG_BYTES
                        {
                            tracing::warn!("an event subscription fell too far behind; ending it");
                            queue.ended = true;
                            queue.ready.clear();
                            queue.ready_bytes = 0;
                            queue.wake.send_replace(());
                            continue;
                        }
                        state.next_seq += 1;
                        queue.push(state.next_seq, 0, item.clone());
                    }
                }
            }
        }
        returned
    }

    /// Consume `source` with at most `prefetch` deliveries unsettled. An instance source gets
    /// a fresh private queue (replacing an earlier one of the same name).
    pub fn subscribe(&self, source: &Source, prefetch: usize) -> Subscription {
        let mut state = self.state();
        state.next_consumer += 1;
        let consumer = state.next_consumer;
        if matches!(source, Source::Instance(_)) {
            state
                .queues
                .insert(source.clone(), Queue::new(Some(consumer)));
        }
        let wake = state.queues.get(source).map(|q| q.wake.subscribe());
        Subscription {
            memory: self.clone(),
            source: source.clone(),
            consumer,
            prefetch,
            wake,
        }
    }

    /// Ready messages of a queue (0 for one that does not exist).
    pub fn ready(&self, source: &Source) -> u32 {
        let state = self.state();
        let ready = state.queues.get(source).map_or(0, |q| q.ready.len());
        u32::try_from(ready).unwrap_or(u32::MAX)
    }

    /// Dead letters kept.
    pub fn dead_count(&self) -> u32 {
        u32::try_from(self.state().dead.len()).unwrap_or(u32::MAX)
    }

    /// Take up to `max` dead letters, oldest first.
    pub fn take_dead(&self, max: u32) -> Vec<Arc<[u8]>> {
        let mut state = self.state();
        let n = state.dead.len().min(max as usize);
        state.dead.drain(..n).collect()
    }

    /// Keep a dead letter (a rejected delivery, or one replay left alone).
    pub fn add_dead(&self, payload: Arc<[u8]>) {
        self.state().add_dead(payload);
    }
}

impl State {
    fn add_dead(&mut self, payload: Arc<[u8]>) {
        if self.dead.len() >= MAX_DEAD_LETTERS {
            tracing::warn!("dead letters full; dropping the oldest");
            self.dead.pop_front();
        }
        self.dead.push_back(payload);
    }
}

/// A consumer of one queue. Dropping it gives its unsettled deliveries back (or, for a
/// private event queue, deletes the queue).
pub struct Subscription {
    memory: Memory,
    source: Source,
    consumer: u64,
    prefetch: usize,
    wake: Option<watch::Receiver<()>>,
}

impl Subscription {
    /// The next delivery, waiting for one; `None` when the queue is gone or ended.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            {
                let mut state = self.memory.state();
                let queue = state.queues.get_mut(&self.source)?;
                if queue.ended || queue.owner.is_some_and(|o| o != self.consumer) {
                    return None;
                }
                // Seen under the lock: a message pushed after this wakes the wait below.
                self.wake.as_mut()?.borrow_and_update();
                let held = (queue.unacked.values())
                    .filter(|h| h.consumer == self.consumer)
                    .count();
                if held < self.prefetch {
                    if let Some(((Reverse(priority), seq), item)) = queue.ready.pop_first() {
                        queue.ready_bytes -= item.data.len();
                        let delivery = Delivery {
                            id: item.id,
                            data: item.data.to_vec(),
                            redelivered: item.redelivered,
                            acker: backend::Acker::Memory(Acker {
                                memory: self.memory.clone(),
                                source: self.source.clone(),
                                seq,
                                consumer: self.consumer,
                            }),
                        };
                        let consumer = self.consumer;
                        let held = Held {
                            consumer,
                            priority,
                            item,
                        };
                        queue.unacked.insert(seq, held);
                        return Some(delivery);
                    }
                }
            }
            self.wake.as_mut()?.changed().await.ok()?;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.memory.state();
        let Some(queue) = state.queues.get_mut(&self.source) else {
            return;
        };
        match queue.owner {
            Some(owner) if owner == self.consumer => {
                state.queues.remove(&self.source);
            }
            Some(_) => {}
            None => queue.give_back(self.consumer),
        }
    }
}

/// Settles one in-process delivery.
#[derive(Debug)]
pub struct Acker {
    memory: Memory,
    source: Source,
    seq: u64,
    /// The subscription the message was delivered to: once it ended, the message may be
    /// with another consumer under the same number, which only that consumer may settle (as
    /// a delivery tag belongs to one channel on the broker).
    consumer: u64,
}

impl Acker {
    /// Ack (forget), requeue (back at its place, redelivered) or reject (dead-letter; a
    /// private event queue has no dead letters, as on the broker).
    pub fn settle(&self, disposition: Disposition) -> Result<()> {
        let mut guard = self.memory.state();
        let state = &mut *guard;
        let gone = || Error::Closed("the delivery's subscription has ended");
        let queue = state.queues.get_mut(&self.source).ok_or_else(gone)?;
        if queue
            .unacked
            .get(&self.seq)
            .is_none_or(|held| held.consumer != self.consumer)
        {
            return Err(gone());
        }
        let held = queue.unacked.remove(&self.seq).ok_or_else(gone)?;
        match disposition {
            Disposition::Ack => queue.wake.send_replace(()),
            Disposition::Requeue => {
                let item = Item {
                    redelivered: true,
                    ..held.item
                };
                queue.push(self.seq, held.priority, item);
            }
            Disposition::Reject => {
                queue.wake.send_replace(());
                if queue.owner.is_none() {
                    state.add_dead(held.item.data);
                }
            }
        }
        Ok(())
    }
}
