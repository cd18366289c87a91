//! A supervised consumer: subscribes, hands each decoded [`Message`] to a handler and settles
//! the delivery by its answer. When the subscription ends (broker restart, channel error, an
//! in-process event subscription that fell behind) it subscribes again with backoff; deliveries
//! from before that are never settled late.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::{Backoff, Message, Queue, Result};
pub use super::{Disposition, Source};

/// A delivered message with its metadata.
#[derive(Debug, Clone)]
pub struct Received {
    /// Outbox id (for duplicate detection).
    pub id: Option<u64>,
    /// The message.
    pub message: Message,
    /// Whether it was delivered before.
    pub redelivered: bool,
}

/// Consume `source` until `cancel` fires. `on_connected` runs after every (re)subscription,
/// before the first delivery (to resynchronise state that may have missed messages meanwhile).
pub async fn run<H, Fut, C, CFut>(
    queue: Queue,
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
            &queue,
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
    queue: &Queue,
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
    let mut subscription = queue.subscribe(source, prefetch).await?;
    on_connected().await;
    backoff.reset();
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => {
                subscription.close().await;
                return Ok(());
            }
            next = subscription.next() => next,
        };
        let Some(delivery) = next else { return Ok(()) };
        let delivery = delivery?;
        let disposition = match delivery.decode() {
            Ok(message) => {
                handler(Received {
                    id: delivery.id,
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
        delivery.settle(disposition).await?;
    }
}
