//! Dead letters: messages a consumer rejected as undecodable land in the dead-letter queue
//! (`<prefix>.dead` on RabbitMQ, a bounded list in the in-process queue). Operators see how many
//! there are and replay them: each one that decodes as a [`Message`] is written to the outbox
//! again (so it is published like any other, with a new id) and removed from the queue in that
//! order; one that does not decode stays.

use lapin::options::{BasicAckOptions, BasicGetOptions};
use sqlx::AnyPool;

use super::{outbox, Broker, Error, Message, Queue, Result, BROKER_TIMEOUT};

/// Messages waiting in the dead-letter queue.
pub async fn count(queue: &Queue) -> Result<u32> {
    let broker = match queue {
        Queue::Rabbit(r) => r.broker(),
        Queue::Memory(m) => return Ok(m.dead_count()),
    };
    let name = broker.topology().dead_letter_queue();
    tokio::time::timeout(BROKER_TIMEOUT, broker.ready_messages(&name))
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
pub async fn replay(pool: &AnyPool, queue: &Queue, max: u32) -> Result<Replayed> {
    match queue {
        Queue::Rabbit(r) => replay_from_broker(pool, r.broker(), max).await,
        Queue::Memory(m) => {
            let mut done = Replayed::default();
            let mut letters = m.take_dead(max).into_iter();
            while let Some(letter) = letters.next() {
                let Ok(message) = serde_json::from_slice::<Message>(&letter) else {
                    m.add_dead(letter);
                    done.kept += 1;
                    continue;
                };
                if let Err(error) = enqueue(pool, &message).await {
                    // Not replayed: keep it and those not tried yet.
                    m.add_dead(letter);
                    letters.for_each(|l| m.add_dead(l));
                    return Err(error);
                }
                done.replayed += 1;
            }
            Ok(done)
        }
    }
}

async fn enqueue(pool: &AnyPool, message: &Message) -> Result<()> {
    let mut tx = crate::db::begin(pool).await?;
    outbox::enqueue(&mut tx, message).await?;
    tx.commit().await?;
    Ok(())
}

async fn replay_from_broker(pool: &AnyPool, broker: &Broker, max: u32) -> Result<Replayed> {
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
        enqueue(pool, &message).await?;
        got.delivery.acker.ack(BasicAckOptions::default()).await?;
        done.replayed += 1;
    }
    let _ = channel.close(200, "dead letters replayed".into()).await;
    Ok(done)
}

/// Put `payload` straight into the dead-letter queue (as a consumer's rejection would).
#[cfg(feature = "testing")]
pub async fn inject(queue: &Queue, payload: &[u8]) -> Result<()> {
    use lapin::{options::BasicPublishOptions, BasicProperties};
    let broker = match queue {
        Queue::Rabbit(r) => r.broker(),
        Queue::Memory(m) => {
            m.add_dead(payload.into());
            return Ok(());
        }
    };
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
    let _ = channel.close(200, "dead letters injected".into()).await;
    Ok(())
}
