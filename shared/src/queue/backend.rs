//! [`Queue`]: what the services need from a message queue, with two backends: RabbitMQ
//! ([`Broker`], the split deployment) and the in-process [`Memory`] queue (`perry-hub all`
//! without `AMQP_URL`). Service code (the outbox relay, the dispatcher's pumps and fan-out,
//! the finisher's consumer) is written once against it (DEC-35).
//!
//! What it covers: publishing a batch with confirms, reporting job messages no queue takes
//! (mandatory on the jobs exchange); per-target priority queues and the finisher queue consumed
//! with a prefetch and manual ack / requeue / reject, where a subscription that goes away gives
//! its unacknowledged deliveries back; one private subscription per dispatcher to every event
//! and control message; ready counts, dead letters, readiness.

use super::{
    memory::{self, Memory},
    rabbit::{self, Rabbit},
    Broker, Error, Exchange, Message, Result, BROKER_TIMEOUT,
};
use crate::config::AmqpConfig;

/// The message queue of one process: RabbitMQ or the in-process queue. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Queue {
    /// RabbitMQ through lapin.
    Rabbit(Rabbit),
    /// The in-process queue (one process only; rebuilt from the database at start).
    Memory(Memory),
}

/// Where a subscription reads from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// The priority queue of one build target.
    Target(String),
    /// The finisher's queue (stage-2 hand-overs).
    Finisher,
    /// A dispatcher instance's private subscription to every event and control message; it
    /// lives as long as the subscription.
    Instance(String),
}

/// One message to publish (an outbox row).
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    /// The outbox id, delivered as the message id.
    pub id: i64,
    /// Logical exchange.
    pub exchange: Exchange,
    /// Routing key: a target or `finisher` on the jobs exchange, `job.<id>` or `control.<kind>`
    /// on the events exchange.
    pub routing_key: &'a str,
    /// JSON of a [`Message`].
    pub payload: &'a [u8],
    /// Priority within a target queue (0 to [`super::MAX_PRIORITY`]).
    pub priority: u8,
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

impl From<Broker> for Queue {
    fn from(broker: Broker) -> Self {
        Self::Rabbit(Rabbit::new(broker))
    }
}

impl Queue {
    /// RabbitMQ when `AMQP_URL` is set, else a new in-process queue. `name` labels the
    /// RabbitMQ connection; an in-process queue is one per process, so build it once and clone.
    pub fn from_config(config: &AmqpConfig, name: &'static str) -> Self {
        if config.configured() {
            Broker::new(config, name).into()
        } else {
            Self::Memory(Memory::new())
        }
    }

    /// Whether this is the in-process queue.
    pub fn is_in_process(&self) -> bool {
        matches!(self, Self::Memory(_))
    }

    /// The RabbitMQ connection, if this is RabbitMQ (tests that act on the broker directly).
    pub fn rabbit(&self) -> Option<&Broker> {
        match self {
            Self::Rabbit(r) => Some(r.broker()),
            Self::Memory(_) => None,
        }
    }

    /// Name for logs and readiness: `rabbitmq` or `queue`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rabbit(_) => "rabbitmq",
            Self::Memory(_) => "queue",
        }
    }

    /// Publish `batch` and wait until every message is confirmed. Returns the indexes of job
    /// messages that no queue took (mandatory on the jobs exchange); events go to whichever
    /// subscriptions exist, possibly none.
    pub async fn publish(&self, batch: &[Publish<'_>]) -> Result<Vec<usize>> {
        match self {
            Self::Rabbit(r) => r.publish(batch).await,
            Self::Memory(m) => Ok(m.publish(batch)),
        }
    }

    /// Declare every queue again (after job messages came back unroutable).
    pub async fn redeclare(&self) -> Result<()> {
        match self {
            Self::Rabbit(r) => r.redeclare().await,
            Self::Memory(_) => Ok(()),
        }
    }

    /// Start consuming `source`, with at most `prefetch` deliveries unacknowledged.
    pub async fn subscribe(&self, source: &Source, prefetch: u16) -> Result<Subscription> {
        let prefetch = prefetch.max(1);
        Ok(match self {
            Self::Rabbit(r) => Subscription::Rabbit(Box::new(r.subscribe(source, prefetch).await?)),
            Self::Memory(m) => Subscription::Memory(m.subscribe(source, usize::from(prefetch))),
        })
    }

    /// Messages ready in a durable queue (not counting those delivered and not yet acked).
    pub async fn ready(&self, source: &Source) -> Result<u32> {
        match self {
            Self::Rabbit(r) => r.ready(source).await,
            Self::Memory(m) => Ok(m.ready(source)),
        }
    }

    /// Readiness: usable now.
    pub async fn check(&self) -> Result<()> {
        match self {
            Self::Rabbit(r) => r.broker().check().await,
            Self::Memory(_) => Ok(()),
        }
    }

    /// Forget the connection so the next call reconnects (after an error).
    pub async fn reset(&self) {
        if let Self::Rabbit(r) = self {
            r.reset().await;
        }
    }

    /// Close the connection on shutdown.
    pub async fn close(&self) {
        self.reset().await;
    }
}

/// A live subscription. Dropping it (or [`Subscription::close`]) gives every delivery not yet
/// settled back to its queue, marked redelivered.
pub enum Subscription {
    /// A RabbitMQ channel and consumer (boxed: much larger than the in-process one).
    Rabbit(Box<rabbit::Subscription>),
    /// An in-process subscription.
    Memory(memory::Subscription),
}

impl Subscription {
    /// The next delivery; `None` when the subscription ended (connection lost, or an
    /// in-process event subscription that fell too far behind) and must be made again.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        match self {
            Self::Rabbit(s) => s.next().await,
            Self::Memory(s) => s.next().await.map(Ok),
        }
    }

    /// Stop consuming; unsettled deliveries go back to the queue.
    pub async fn close(self) {
        match self {
            Self::Rabbit(s) => s.close().await,
            Self::Memory(s) => drop(s),
        }
    }
}

/// One delivered message, settled once with [`Delivery::settle`].
#[derive(Debug)]
pub struct Delivery {
    /// Outbox id (for duplicate detection).
    pub id: Option<u64>,
    /// The JSON payload.
    pub data: Vec<u8>,
    /// Whether it was delivered before.
    pub redelivered: bool,
    pub(super) acker: Acker,
}

/// How a delivery is settled.
#[derive(Debug)]
pub(super) enum Acker {
    Rabbit(lapin::Acker),
    Memory(memory::Acker),
}

impl Delivery {
    /// The message it carries.
    pub fn decode(&self) -> Result<Message> {
        Ok(serde_json::from_slice(&self.data)?)
    }

    /// Ack, requeue or reject it (within the broker timeout).
    pub async fn settle(self, disposition: Disposition) -> Result<()> {
        let settle = async {
            match self.acker {
                Acker::Rabbit(acker) => rabbit::settle(&acker, disposition).await,
                Acker::Memory(acker) => acker.settle(disposition),
            }
        };
        tokio::time::timeout(BROKER_TIMEOUT, settle)
            .await
            .map_err(|_| Error::Timeout("ack"))?
    }
}
