//! A supervised consumer: (re)connects, declares, consumes, hands each decoded [`Message`] to a
//! handler and acks by its answer. When the stream ends (broker restart, channel error) it
//! rebuilds everything with backoff; deliveries from before a reconnect are never acked late.

use std::future::Future;

use futures_util::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    },
    types::FieldTable,
};
use tokio_util::sync::CancellationToken;

use super::{outbox::decode, Backoff, Broker, Message, Result, BROKER_TIMEOUT};

/// Where a consumer reads from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A durable queue declared by the topology (e.g. the finisher queue).
    Queue(String),
    /// A private, exclusive queue for one process bound to all events (dispatcher fan-out).
    Instance(String),
}

/// What to do with a delivery once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done (or a duplicate): remove it.
    Ack,
    /// Transient failure: put it back for another try.
    Requeue,
    /// Poison: send it to the dead-letter queue.
    Reject,
}

/// A delivered message with its metadata.
#[derive(Debug, Clone)]
pub struct Received {
    /// Outbox id (for duplicate detection).
    pub id: Option<u64>,
    /// The message.
    pub message: Message,
    /// Whether the broker delivered it before.
    pub redelivered: bool,
}

/// Consume `source` until `cancel` fires. `on_connected` runs after every (re)connection, before
/// the first delivery (to resynchronise state that may have missed messages meanwhile).
pub async fn run<H, Fut, C, CFut>(
    broker: Broker,
    source: Source,
    prefetch: u16,
    cancel: CancellationToken,
    mut on_connected: C,
    mut handler: H,
) where
    H: FnMut(Received) -> Fut,
    Fut: Future<Output = Disposition>,
    C: FnMut() -> CFut,
    CFut: Future<Output = ()>,
{
    let mut backoff = Backoff::default();
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let result = consume_once(
            &broker,
            &source,
            prefetch,
            &cancel,
            &mut on_connected,
            &mut handler,
            &mut backoff,
        )
        .await;
        if cancel.is_cancelled() {
            return;
        }
        match result {
            Ok(()) => tracing::warn!(?source, "consumer stream ended; reconnecting"),
            Err(error) => tracing::warn!(?source, %error, "consumer failed; reconnecting"),
        }
        // The connection reconnects by itself when it is down (Broker::connection); a channel
        // error alone needs only a new channel.
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {},
        }
    }
}

async fn consume_once<H, Fut, C, CFut>(
    broker: &Broker,
    source: &Source,
    prefetch: u16,
    cancel: &CancellationToken,
    on_connected: &mut C,
    handler: &mut H,
    backoff: &mut Backoff,
) -> Result<()>
where
    H: FnMut(Received) -> Fut,
    Fut: Future<Output = Disposition>,
    C: FnMut() -> CFut,
    CFut: Future<Output = ()>,
{
    let ch = broker.channel().await?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let queue = match source {
        Source::Queue(q) => q.clone(),
        Source::Instance(instance) => {
            broker
                .topology()
                .declare_instance_queue(&ch, instance)
                .await?
        }
    };
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    on_connected().await;
    backoff.reset();
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => {
                let _ = ch.close(200, "shutdown".into()).await;
                return Ok(());
            }
            next = consumer.next() => next,
        };
        let Some(delivery) = next else { return Ok(()) };
        let delivery = delivery?;
        let disposition = match decode(&delivery) {
            Ok((id, message)) => {
                handler(Received {
                    id,
                    message,
                    redelivered: delivery.redelivered,
                })
                .await
            }
            Err(error) => {
                tracing::error!(%error, "undecodable message; dead-lettering it");
                Disposition::Reject
            }
        };
        let ack = async {
            match disposition {
                Disposition::Ack => delivery.ack(BasicAckOptions::default()).await,
                Disposition::Requeue => {
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await
                }
                Disposition::Reject => delivery.reject(BasicRejectOptions { requeue: false }).await,
            }
        };
        tokio::time::timeout(BROKER_TIMEOUT, ack)
            .await
            .map_err(|_| super::Error::Timeout("ack"))??;
    }
}
