//! Dead letters: messages a consumer rejected as undecodable land in the dead-letter queue
//! (`<prefix>.dead`). Operators see how many there are and replay them: each one that decodes
//! as a [`Message`] is written to the outbox again (so it is published like any other, with a
//! new id) and removed from the queue in that order; one that does not decode stays.

use lapin::options::{BasicAckOptions, BasicGetOptions};
use sqlx::MySqlPool;

use super::{outbox, Broker, Error, Message, Result, BROKER_TIMEOUT};

/// Messages waiting in the dead-letter queue.
pub async fn count(broker: &Broker) -> Result<u32> {
    let queue = broker.topology().dead_letter_queue();
    tokio::time::timeout(BROKER_TIMEOUT, broker.ready_messages(&queue))
        .await
        .map_err(|_| Error::Timeout("dead-letter count"))?
}

/// What [`replay`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    /// Written to the outbox again and removed from the dead-letter queue.
    pub replayed: u32,
    /// Left in the queue: they do not decode as a hub message.
    pub kept: u32,
}

/// Replay at most `max` dead letters through the outbox.
pub async fn replay(pool: &MySqlPool, broker: &Broker, max: u32) -> Result<Replayed> {
    let queue = broker.topology().dead_letter_queue();
    let channel = broker.channel().await?;
    let mut done = Replayed::default();
    for _ in 0..max {
        let got = tokio::time::timeout(
            BROKER_TIMEOUT,
            channel.basic_get(queue.clone().into(), BasicGetOptions { no_ack: false }),
        )
        .await
        .map_err(|_| Error::Timeout("dead-letter get"))??;
        let Some(got) = got else { break };
        let message: Option<Message> = serde_json::from_slice(&got.delivery.data).ok();
        let Some(message) = message else {
            // Unacknowledged until the channel closes: it goes back to the queue then.
            done.kept += 1;
            continue;
        };
        let mut tx = pool.begin().await?;
        outbox::enqueue(&mut tx, &message).await?;
        tx.commit().await?;
        got.delivery.acker.ack(BasicAckOptions::default()).await?;
        done.replayed += 1;
    }
    let _ = channel.close(200, "dead letters replayed".into()).await;
    Ok(done)
}

/// Put `payload` straight into the dead-letter queue (as a consumer's rejection would).
#[cfg(feature = "testing")]
pub async fn inject(broker: &Broker, payload: &[u8]) -> Result<()> {
    use lapin::{options::BasicPublishOptions, BasicProperties};
    let channel = broker.channel().await?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    channel
        .basic_publish(
            broker.topology().dead_letter_exchange().into(),
            "".into(),
            BasicPublishOptions::default(),
            payload,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
    let _ = channel.close(200, "dead letter injected".into()).await;
    Ok(())
}
