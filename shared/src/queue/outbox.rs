//! The transactional outbox: [`enqueue`] writes a message in the caller's transaction; the
//! [`Relay`] publishes pending rows in id order with publisher confirms and marks them sent.
//!
//! Delivery is at-least-once: a crash between the broker's confirm and the commit republishes
//! the batch, so every message carries its outbox id as `message_id` and consumers drop
//! duplicates. Several relays (one per process) share the table through `SKIP LOCKED`.

use std::{sync::Arc, time::Duration};

use sqlx::{AnyConnection, AnyPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Backoff, Exchange, Message, Publish, Queue, Result};
use crate::{clock::now_ms, db};

/// Write `msg` to the outbox inside the caller's transaction. Returns the outbox id.
pub async fn enqueue(conn: &mut AnyConnection, msg: &Message) -> Result<u64> {
    enqueue_at(conn, msg, None).await
}

/// [`enqueue`], published no earlier than `not_before_ms` when it is given.
pub async fn enqueue_at(
    conn: &mut AnyConnection,
    msg: &Message,
    not_before_ms: Option<i64>,
) -> Result<u64> {
    let (exchange, routing_key, priority) = msg.route();
    let payload = serde_json::to_string(msg)?;
    let res = sqlx::query(
        "INSERT INTO outbox (exchange, routing_key, payload, priority, created_ms, not_before_ms) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(exchange.as_str())
    .bind(routing_key)
    .bind(payload)
    .bind(i16::from(priority))
    .bind(now_ms())
    .bind(not_before_ms)
    .execute(&mut *conn)
    .await?;
    Ok(u64::try_from(db::inserted_id(conn, &res).await?).unwrap_or(0))
}

/// Publishes outbox rows to the [`Queue`]. Wake it with [`Relay::notifier`] after a commit for low latency; it
/// also polls, so rows written by a crashed process or another service are picked up.
pub struct Relay {
    pool: AnyPool,
    queue: Queue,
    notify: Arc<Notify>,
    batch: u32,
    poll: Duration,
}

impl Relay {
    /// A relay over `pool` publishing to `queue`.
    pub fn new(pool: AnyPool, queue: Queue) -> Self {
        Self {
            pool,
            queue,
            notify: Arc::new(Notify::new()),
            batch: 200,
            poll: Duration::from_millis(250),
        }
    }

    /// The handle to wake the relay after committing outbox rows.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Run until `cancel` fires, retrying through broker and database outages.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::default();
        loop {
            if cancel.is_cancelled() {
                break;
            }
            match self.relay_batch().await {
                Ok(n) => {
                    backoff.reset();
                    if n >= self.batch as usize {
                        continue;
                    }
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = self.notify.notified() => {},
                        () = tokio::time::sleep(self.poll) => {},
                    }
                }
                Err(error) => {
                    crate::metrics::get().outbox_errors.inc();
                    tracing::warn!(%error, "outbox relay: publish failed; retrying");
                    self.queue.reset().await;
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff.next_delay()) => {},
                    }
                }
            }
        }
        tracing::debug!("outbox relay stopped");
    }

    /// Job messages that came back unroutable: declare the queues again (which recreates
    /// missing ones) and publish them once more. One that still finds no queue has a routing
    /// key no queue is declared for: it is logged, counted and dropped, and a queued job it
    /// announced is announced again by the reaper's sweep (DEC-20).
    async fn route_again(&self, batch: &[Publish<'_>], returned: &[usize]) -> Result<()> {
        tracing::warn!(
            count = returned.len(),
            "job messages returned unroutable; declaring the queues again"
        );
        self.queue.redeclare().await?;
        let again: Vec<Publish<'_>> = returned.iter().map(|&i| batch[i]).collect();
        for index in self.queue.publish(&again).await? {
            crate::metrics::get().outbox_errors.inc();
            tracing::error!(
                id = again[index].id,
                routing_key = again[index].routing_key,
                "job message unroutable even after declaring the queues; dropped"
            );
        }
        Ok(())
    }

    /// Publish one batch of pending rows. Returns how many were published.
    async fn relay_batch(&self) -> Result<usize> {
        let mut tx = db::begin(&self.pool).await?;
        let sql = db::sql(
            db::Dialect::of(&tx),
            "SELECT id, exchange, routing_key, payload, priority FROM outbox \
             WHERE sent_ms IS NULL AND (not_before_ms IS NULL OR not_before_ms <= ?) \
             ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
        );
        let rows: Vec<OutboxRow> = sqlx::query_as(&sql)
            .bind(now_ms())
            .bind(i64::from(self.batch))
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let mut batch = Vec::with_capacity(rows.len());
        for (id, exchange, routing_key, payload, priority) in &rows {
            let Some(exchange) = Exchange::parse(exchange) else {
                tracing::error!(
                    id,
                    exchange,
                    "outbox row with unknown exchange; marking it sent"
                );
                continue;
            };
            batch.push(Publish {
                id: *id,
                exchange,
                routing_key,
                payload: payload.0.as_bytes(),
                priority: u8::try_from(*priority).unwrap_or(0),
            });
        }
        let returned = self.queue.publish(&batch).await?;
        if !returned.is_empty() {
            self.route_again(&batch, &returned).await?;
        }
        let ids: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
        // Every value is an integer of ours (the ids from our own SELECT), so the statement is
        // sent as text: a prepared statement per distinct id list would make the server parse
        // each one and push the hot statements out of the connection's statement cache.
        let sql = format!(
            "UPDATE outbox SET sent_ms = {} WHERE id IN ({})",
            now_ms(),
            ids.join(",")
        );
        sqlx::Executor::execute(&mut *tx, sql.as_str()).await?;
        tx.commit().await?;
        crate::metrics::get()
            .outbox_published
            .inc_by(rows.len() as u64);
        Ok(rows.len())
    }
}

/// An outbox row as the relay reads it: id, exchange, routing key, payload, priority.
type OutboxRow = (i64, String, String, db::Text, i16);
