//! The transactional outbox: [`enqueue`] writes a message in the caller's transaction; the
//! [`Relay`] publishes pending rows in id order with publisher confirms and marks them sent.
//!
//! Delivery is at-least-once: a crash between the broker's confirm and the commit republishes
//! the batch, so every message carries its outbox id as `message_id` and consumers drop
//! duplicates. Several relays (one per process) share the table through `SKIP LOCKED`.

use std::{sync::Arc, time::Duration};

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    BasicProperties, Channel,
};
use sqlx::{MySqlConnection, MySqlPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Backoff, Broker, Error, Exchange, Message, Result, BROKER_TIMEOUT};
use crate::clock::now_ms;

/// Write `msg` to the outbox inside the caller's transaction. Returns the outbox id.
pub async fn enqueue(conn: &mut MySqlConnection, msg: &Message) -> Result<u64> {
    enqueue_at(conn, msg, None).await
}

/// [`enqueue`], published no earlier than `not_before_ms` when it is given.
pub async fn enqueue_at(
    conn: &mut MySqlConnection,
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
    .bind(priority)
    .bind(now_ms())
    .bind(not_before_ms)
    .execute(conn)
    .await?;
    Ok(res.last_insert_id())
}

/// Publishes outbox rows. Wake it with [`Relay::notifier`] after a commit for low latency; it
/// also polls, so rows written by a crashed process or another service are picked up.
pub struct Relay {
    pool: MySqlPool,
    broker: Broker,
    notify: Arc<Notify>,
    batch: u32,
    poll: Duration,
}

impl Relay {
    /// A relay over `pool` publishing through `broker`.
    pub fn new(pool: MySqlPool, broker: Broker) -> Self {
        Self {
            pool,
            broker,
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
        let mut channel: Option<Channel> = None;
        let mut backoff = Backoff::default();
        loop {
            if cancel.is_cancelled() {
                break;
            }
            match self.relay_batch(&mut channel).await {
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
                    channel = None;
                    self.broker.reset().await;
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff.next_delay()) => {},
                    }
                }
            }
        }
        tracing::debug!("outbox relay stopped");
    }

    async fn confirm_channel(&self, channel: &mut Option<Channel>) -> Result<Channel> {
        if let Some(ch) = channel.as_ref() {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let ch = self.broker.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *channel = Some(ch.clone());
        Ok(ch)
    }

    /// Publish one outbox row. Job messages are mandatory: a job queue that is missing (deleted
    /// by hand, or a broker that lost its definitions) returns them instead of dropping them.
    async fn publish(
        &self,
        ch: &Channel,
        exchange: Exchange,
        (id, _, routing_key, payload, priority): &OutboxRow,
    ) -> Result<lapin::PublisherConfirm> {
        let props = BasicProperties::default()
            .with_message_id(id.to_string().into())
            .with_content_type("application/json".into())
            // Persistent: job messages must survive a broker restart.
            .with_delivery_mode(2)
            .with_priority(u8::try_from(*priority).unwrap_or(0));
        let options = BasicPublishOptions {
            // Events go to whichever dispatchers are running, possibly none.
            mandatory: exchange == Exchange::Jobs,
            ..BasicPublishOptions::default()
        };
        Ok(ch
            .basic_publish(
                self.broker.topology().exchange(exchange).into(),
                routing_key.as_str().into(),
                options,
                payload.as_bytes(),
                props,
            )
            .await?)
    }

    /// Job messages the broker returned as unroutable: declare the topology again (which
    /// recreates missing queues) and publish them once more. One that still finds no queue has
    /// a routing key no queue is declared for: it is logged, counted and dropped, and a queued
    /// job it announced is announced again by the reaper's sweep (DEC-20).
    async fn route_again(
        &self,
        ch: &Channel,
        rows: &[OutboxRow],
        returned: &[usize],
    ) -> Result<()> {
        tracing::warn!(
            count = returned.len(),
            "job messages returned unroutable; declaring the queues again"
        );
        self.broker.topology().declare(ch).await?;
        for &index in returned {
            let row = &rows[index];
            let confirm = self.publish(ch, Exchange::Jobs, row).await?;
            if await_confirm(confirm).await? {
                crate::metrics::get().outbox_errors.inc();
                tracing::error!(
                    id = row.0,
                    routing_key = row.2,
                    "job message unroutable even after declaring the queues; dropped"
                );
            }
        }
        Ok(())
    }

    /// Publish one batch of pending rows. Returns how many were published.
    async fn relay_batch(&self, channel: &mut Option<Channel>) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT id, exchange, routing_key, payload, priority FROM outbox \
             WHERE sent_ms IS NULL AND (not_before_ms IS NULL OR not_before_ms <= ?) \
             ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
        )
        .bind(now_ms())
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let ch = self.confirm_channel(channel).await?;
        let mut confirms = Vec::with_capacity(rows.len());
        for (index, row) in rows.iter().enumerate() {
            let Some(exchange) = Exchange::parse(&row.1) else {
                tracing::error!(
                    id = row.0,
                    exchange = row.1,
                    "outbox row with unknown exchange; marking it sent"
                );
                continue;
            };
            confirms.push((index, self.publish(&ch, exchange, row).await?));
        }
        let mut returned = Vec::new();
        for (index, confirm) in confirms {
            if await_confirm(confirm).await? {
                returned.push(index);
            }
        }
        if !returned.is_empty() {
            self.route_again(&ch, &rows, &returned).await?;
        }
        let ids: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
        // The ids are integers from our own SELECT, so building the IN list is safe.
        let sql = format!(
            "UPDATE outbox SET sent_ms = ? WHERE id IN ({})",
            ids.join(",")
        );
        sqlx::query(&sql).bind(now_ms()).execute(&mut *tx).await?;
        tx.commit().await?;
        crate::metrics::get()
            .outbox_published
            .inc_by(rows.len() as u64);
        Ok(rows.len())
    }
}

/// An outbox row as the relay reads it: id, exchange, routing key, payload, priority.
type OutboxRow = (i64, String, String, String, i8);

/// Wait for the broker's confirm of one publish. Returns whether the message came back
/// unroutable; a nack or no confirm in time is an error (the batch is published again).
async fn await_confirm(confirm: lapin::PublisherConfirm) -> Result<bool> {
    let confirmation = tokio::time::timeout(BROKER_TIMEOUT, confirm)
        .await
        .map_err(|_| Error::Timeout("publisher confirm"))??;
    if confirmation.is_nack() {
        return Err(Error::NotConfirmed("broker nacked a message".into()));
    }
    Ok(matches!(confirmation, lapin::Confirmation::Ack(Some(_))))
}

/// Decode a delivered message and its outbox id.
pub fn decode(delivery: &lapin::message::Delivery) -> Result<(Option<u64>, Message)> {
    let id = delivery
        .properties
        .message_id()
        .as_ref()
        .and_then(|s| s.as_str().parse().ok());
    Ok((id, serde_json::from_slice(&delivery.data)?))
}
