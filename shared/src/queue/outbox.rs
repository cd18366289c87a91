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
    let (exchange, routing_key, priority) = msg.route();
    let payload = serde_json::to_string(msg)?;
    let res = sqlx::query(
        "INSERT INTO outbox (exchange, routing_key, payload, priority, created_ms) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(exchange.as_str())
    .bind(routing_key)
    .bind(payload)
    .bind(priority)
    .bind(now_ms())
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

    /// Publish one batch of pending rows. Returns how many were published.
    async fn relay_batch(&self, channel: &mut Option<Channel>) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(i64, String, String, String, i8)> = sqlx::query_as(
            "SELECT id, exchange, routing_key, payload, priority FROM outbox \
             WHERE sent_ms IS NULL ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let ch = self.confirm_channel(channel).await?;
        let topology = self.broker.topology();
        let mut confirms = Vec::with_capacity(rows.len());
        for (id, exchange, routing_key, payload, priority) in &rows {
            let Some(exchange) = Exchange::parse(exchange) else {
                tracing::error!(
                    id,
                    exchange,
                    "outbox row with unknown exchange; marking it sent"
                );
                continue;
            };
            let props = BasicProperties::default()
                .with_message_id(id.to_string().into())
                .with_content_type("application/json".into())
                // Persistent: job messages must survive a broker restart.
                .with_delivery_mode(2)
                .with_priority(u8::try_from(*priority).unwrap_or(0));
            let confirm = ch
                .basic_publish(
                    topology.exchange(exchange).into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    payload.as_bytes(),
                    props,
                )
                .await?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            let confirmation = tokio::time::timeout(BROKER_TIMEOUT, confirm)
                .await
                .map_err(|_| Error::Timeout("publisher confirm"))??;
            if confirmation.is_nack() {
                return Err(Error::NotConfirmed("broker nacked a message".into()));
            }
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

/// Decode a delivered message and its outbox id.
pub fn decode(delivery: &lapin::message::Delivery) -> Result<(Option<u64>, Message)> {
    let id = delivery
        .properties
        .message_id()
        .as_ref()
        .and_then(|s| s.as_str().parse().ok());
    Ok((id, serde_json::from_slice(&delivery.data)?))
}
