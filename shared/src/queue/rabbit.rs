//! The RabbitMQ backend of [`super::Queue`]: publisher confirms on one cached channel, job
//! messages mandatory, consumers on their own channels with `basic.qos`.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
        BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    },
    types::FieldTable,
    BasicProperties, Channel,
};
use tokio::sync::Mutex;

use super::{
    backend::{Acker, Delivery, Disposition, Publish, Source},
    Broker, Error, Exchange, Result, BROKER_TIMEOUT,
};

/// RabbitMQ: the connection and the publisher's confirm channel.
#[derive(Debug, Clone)]
pub struct Rabbit {
    broker: Broker,
    confirm: Arc<Mutex<Option<Channel>>>,
}

impl Rabbit {
    /// Over `broker`'s connection.
    pub fn new(broker: Broker) -> Self {
        Self {
            broker,
            confirm: Arc::new(Mutex::new(None)),
        }
    }

    /// The connection.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The broker name of a durable source's queue.
    fn queue_name(&self, source: &Source) -> String {
        let t = self.broker.topology();
        match source {
            Source::Target(target) => t.target_queue(target),
            Source::Finisher => t.finisher_queue(),
            Source::Instance(instance) => t.instance_queue(instance),
        }
    }

    async fn confirm_channel(&self) -> Result<Channel> {
        let mut cached = self.confirm.lock().await;
        if let Some(ch) = cached.as_ref() {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let ch = self.broker.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *cached = Some(ch.clone());
        Ok(ch)
    }

    /// Publish every message, then await every confirm. Job messages are mandatory: a job
    /// queue that is missing (deleted by hand, or a broker that lost its definitions) returns
    /// them instead of dropping them.
    pub async fn publish(&self, batch: &[Publish<'_>]) -> Result<Vec<usize>> {
        let ch = self.confirm_channel().await?;
        let mut confirms = Vec::with_capacity(batch.len());
        for (index, m) in batch.iter().enumerate() {
            let props = BasicProperties::default()
                .with_message_id(m.id.to_string().into())
                .with_content_type("application/json".into())
                // Persistent: job messages must survive a broker restart.
                .with_delivery_mode(2)
                .with_priority(m.priority);
            let options = BasicPublishOptions {
                // Events go to whichever dispatchers are running, possibly none.
                mandatory: m.exchange == Exchange::Jobs,
                ..BasicPublishOptions::default()
            };
            let confirm = ch
                .basic_publish(
                    self.broker.topology().exchange(m.exchange).into(),
                    m.routing_key.into(),
                    options,
                    m.payload,
                    props,
                )
                .await?;
            confirms.push((index, confirm));
        }
        let mut returned = Vec::new();
        for (index, confirm) in confirms {
            if await_confirm(confirm).await? {
                returned.push(index);
            }
        }
        Ok(returned)
    }

    /// Declare the topology again on the publisher's channel.
    pub async fn redeclare(&self) -> Result<()> {
        let ch = self.confirm_channel().await?;
        self.broker.topology().declare(&ch).await
    }

    /// A channel with `prefetch` consuming `source` (declaring an instance's private queue).
    pub async fn subscribe(&self, source: &Source, prefetch: u16) -> Result<Subscription> {
        let ch = self.broker.channel().await?;
        ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let queue = match source {
            Source::Instance(instance) => {
                self.broker
                    .topology()
                    .declare_instance_queue(&ch, instance)
                    .await?
            }
            durable => self.queue_name(durable),
        };
        let consumer = ch
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Subscription {
            channel: ch,
            consumer,
        })
    }

    /// Ready messages of a durable queue.
    pub async fn ready(&self, source: &Source) -> Result<u32> {
        self.broker.ready_messages(&self.queue_name(source)).await
    }

    /// Drop the confirm channel and the connection.
    pub async fn reset(&self) {
        self.confirm.lock().await.take();
        self.broker.reset().await;
    }
}

/// A consumer on its own channel; closing the channel returns unacked deliveries.
pub struct Subscription {
    channel: Channel,
    consumer: lapin::Consumer,
}

impl Subscription {
    /// The next delivery, with its outbox id.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        let delivery = match self.consumer.next().await? {
            Ok(d) => d,
            Err(e) => return Some(Err(e.into())),
        };
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .and_then(|s| s.as_str().parse().ok());
        Some(Ok(Delivery {
            id,
            redelivered: delivery.redelivered,
            data: delivery.data,
            acker: Acker::Rabbit(delivery.acker),
        }))
    }

    /// Close the channel.
    pub async fn close(self) {
        let _ = tokio::time::timeout(
            BROKER_TIMEOUT,
            self.channel.close(200, "consumer closed".into()),
        )
        .await;
    }
}

/// Ack, nack with requeue, or reject (dead-letter) one delivery.
pub async fn settle(acker: &lapin::Acker, disposition: Disposition) -> Result<()> {
    match disposition {
        Disposition::Ack => acker.ack(BasicAckOptions::default()).await?,
        Disposition::Requeue => {
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            acker.nack(requeue).await?
        }
        Disposition::Reject => acker.reject(BasicRejectOptions { requeue: false }).await?,
    };
    Ok(())
}

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
