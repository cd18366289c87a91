//! Log bursts to the other replicas (DEC-37). A burst of a worker's frames is stored by one
//! group commit; its fan-out message then goes straight to the events exchange, in commit
//! order, from one task per dispatcher, instead of through an outbox row that the relay reads
//! back, publishes and marks sent (one more transaction and one more durable write of every
//! frame per burst).
//!
//! The frames are already durable in `job_events`, so the message is only the fast path: one
//! that is lost (broker down, process killed right after the commit, backlog full) leaves a
//! gap in the sequence numbers that the other replicas' subscribers notice at the job's next
//! event (every job ends with `complete`, which goes through the outbox) and fill from MySQL.
//! State changes, `artifact_ready` and `complete` still go through the outbox.

use std::time::{Duration, Instant};

use shared::{
    queue::{Backoff, Message, Publish, Queue},
    runtime::Deps,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages waiting to be published; past this a burst's message is dropped (its frames are
/// in MySQL; other replicas catch up at the job's next event).
const BACKLOG: usize = 4096;
/// Most messages published together (pipelined, then their confirms awaited).
const BATCH: usize = 256;
/// Least time between two warnings about failed publishes.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// The sending side, kept in the dispatcher's state.
#[derive(Debug, Clone)]
pub struct Bursts {
    tx: mpsc::Sender<(String, Vec<u8>)>,
}

impl Bursts {
    /// Start the publishing task on `deps`' queue.
    pub fn spawn(deps: &Deps) -> Self {
        let (tx, rx) = mpsc::channel(BACKLOG);
        deps.tracker
            .spawn(publish_all(deps.publisher.clone(), rx, deps.cancel.clone()));
        Self { tx }
    }

    /// Queue the fan-out message of a committed burst. Never waits.
    pub fn send(&self, message: &Message) {
        let (_, routing_key, _) = message.route();
        match serde_json::to_vec(message) {
            Ok(payload) => {
                if self.tx.try_send((routing_key, payload)).is_err() {
                    tracing::debug!(
                        "burst fan-out backlog full; other replicas read it from MySQL"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "burst fan-out message not encodable"),
        }
    }
}

async fn publish_all(
    queue: Queue,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut backoff = Backoff::default();
    let mut warned: Option<Instant> = None;
    loop {
        let received = tokio::select! {
            () = cancel.cancelled() => break,
            n = rx.recv_many(&mut batch, BATCH) => n,
        };
        if received == 0 {
            break;
        }
        let publishes: Vec<Publish<'_>> = batch
            .iter()
            .map(|(routing_key, payload)| Publish {
                id: 0,
                exchange: shared::queue::Exchange::Events,
                routing_key,
                payload,
                priority: 0,
            })
            .collect();
        let published = queue.publish(&publishes).await;
        drop(publishes);
        batch.clear();
        match published {
            Ok(_) => backoff.reset(),
            Err(error) => {
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    tracing::warn!(%error, "burst fan-out not published; other replicas read those frames from MySQL");
                    warned = Some(Instant::now());
                }
                queue.reset().await;
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}
