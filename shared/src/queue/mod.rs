//! RabbitMQ: topology declared in one place, typed messages, connections, the outbox relay and
//! a supervised consumer.
//!
//! RabbitMQ is the doorbell, MySQL is the truth: every message is written to the `outbox` table
//! in the same transaction as the state change it announces ([`outbox::enqueue`]), and the
//! [`outbox::Relay`] publishes it with publisher confirms. Consumers are idempotent.

pub mod consumer;
pub mod outbox;

use std::{sync::Arc, time::Duration};

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Channel, Connection, ConnectionProperties, ExchangeKind,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::AmqpConfig;

/// Queue errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker or the connection failed.
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    /// The database failed (outbox).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A message could not be encoded or decoded.
    #[error("message encoding: {0}")]
    Encoding(#[from] serde_json::Error),
    /// The broker did not confirm in time, or refused a message.
    #[error("publish not confirmed: {0}")]
    NotConfirmed(String),
    /// An operation timed out.
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

/// Result alias for queue operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every build target that can have a queue. A target is a worker capability, matched exactly.
pub const TARGETS: &[&str] = &[
    "macos",
    "ios",
    "visionos",
    "watchos",
    "tvos",
    "android",
    "linux",
    "windows",
    "web",
    "windows-sign",
    "ios-sign",
    "macos-sign",
];

/// The highest message priority: pro jobs use 10 and free jobs 1; a requeued job is published
/// one level above its tier so it goes ahead of jobs submitted after it (it keeps its place).
pub const MAX_PRIORITY: u8 = 11;

/// Logical exchanges. Names on the broker are prefixed (see [`Topology`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exchange {
    /// Direct exchange: one queue per target (routing key = target) and the finisher queue.
    Jobs,
    /// Topic exchange: job events (`job.<id>`) and control messages (`control.<kind>`).
    Events,
}

impl Exchange {
    /// The name stored in the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jobs => "jobs",
            Self::Events => "events",
        }
    }
    /// Parse an outbox value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jobs" => Some(Self::Jobs),
            "events" => Some(Self::Events),
            _ => None,
        }
    }
}

/// Routing key of the finisher's queue on the jobs exchange.
pub const FINISHER_ROUTING_KEY: &str = "finisher";

/// Messages exchanged between services. Never carries credentials or tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A job entered `queued` for `target` with `attempt` dispatches so far. A delivery whose
    /// attempt no longer matches the row is stale and dropped.
    JobQueued {
        job_id: String,
        target: String,
        attempt: i32,
        priority: u8,
    },
    /// Event `seq` of a job was stored; `frame` is what subscribers receive (rendered by the
    /// dispatcher for `artifact_ready`).
    JobEvent {
        job_id: String,
        seq: i64,
        kind: String,
        frame: serde_json::Value,
    },
    /// Events `first_seq`, `first_seq + 1`, … of a job were stored together (a burst of worker
    /// frames written by one group commit); `frames` in order.
    JobEvents {
        job_id: String,
        first_seq: i64,
        frames: Vec<serde_json::Value>,
    },
    /// An artifact of `attempt` was stored; the dispatcher holding that attempt's worker puts
    /// `artifact_ready` into the job's log after the frames the worker sent before it.
    ArtifactStored {
        job_id: String,
        attempt: i32,
        artifact: serde_json::Value,
    },
    /// Stage 1 of a two-stage job finished; the finisher hands it to stage 2.
    StageFinished { job_id: String, attempt: i32 },
    /// Cancel the running attempt of a job (delivered to the dispatcher holding its worker).
    CancelJob { job_id: String, attempt: i32 },
    /// Ask idle workers to update their compiler (`update_perry`).
    UpdatePerry { expected_version: String },
    /// Worker capacity or queue contents changed; dispatchers refresh positions and consumers.
    CapacityChanged {},
}

impl Message {
    /// Exchange, routing key and priority for this message.
    pub fn route(&self) -> (Exchange, String, u8) {
        match self {
            Self::JobQueued {
                target, priority, ..
            } => (Exchange::Jobs, target.clone(), *priority),
            Self::JobEvent { job_id, .. }
            | Self::JobEvents { job_id, .. }
            | Self::ArtifactStored { job_id, .. } => (Exchange::Events, format!("job.{job_id}"), 0),
            Self::StageFinished { .. } => (Exchange::Jobs, FINISHER_ROUTING_KEY.to_owned(), 0),
            Self::CancelJob { .. } => (Exchange::Events, "control.cancel".to_owned(), 0),
            Self::UpdatePerry { .. } => (Exchange::Events, "control.update_perry".to_owned(), 0),
            Self::CapacityChanged {} => (Exchange::Events, "control.capacity".to_owned(), 0),
        }
    }
}

/// Broker object names, all derived from one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    /// The broker name of a logical exchange.
    pub fn exchange(&self, e: Exchange) -> String {
        format!("{}.{}", self.prefix, e.as_str())
    }
    /// Dead-letter exchange.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }
    /// Queue collecting dead letters for inspection.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    /// The queue of one target.
    pub fn target_queue(&self, target: &str) -> String {
        format!("{}.target.{target}", self.prefix)
    }
    /// The finisher's durable queue.
    pub fn finisher_queue(&self) -> String {
        format!("{}.finisher", self.prefix)
    }
    /// A dispatcher instance's private events queue.
    pub fn instance_queue(&self, instance: &str) -> String {
        format!("{}.instance.{instance}", self.prefix)
    }

    /// Declare every durable object. Idempotent; safe from any number of processes.
    pub async fn declare(&self, ch: &Channel) -> Result<()> {
        // Durable exchanges survive broker restarts; nothing is auto-deleted.
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        ch.exchange_declare(
            self.exchange(Exchange::Jobs).into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.exchange(Exchange::Events).into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.dead_letter_exchange().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
        let queue_opts = QueueDeclareOptions {
            // Survive a broker restart together with the persistent messages in it.
            durable: true,
            // Shared by every dispatcher replica.
            exclusive: false,
            // Must outlive consumers: jobs wait here while no worker is connected.
            auto_delete: false,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(
            self.dead_letter_queue().into(),
            queue_opts,
            FieldTable::default(),
        )
        .await?;
        ch.queue_bind(
            self.dead_letter_queue().into(),
            self.dead_letter_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        for target in TARGETS {
            let mut args = FieldTable::default();
            // Classic queue with priorities (pro 10 above free 1); quorum queues reject
            // x-max-priority before RabbitMQ 4.0.
            args.insert(
                "x-max-priority".into(),
                AMQPValue::ShortShortUInt(MAX_PRIORITY),
            );
            // Rejected (undecodable) messages are kept for inspection instead of dropped.
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(self.dead_letter_exchange().into()),
            );
            let q = self.target_queue(target);
            ch.queue_declare(q.clone().into(), queue_opts, args).await?;
            ch.queue_bind(
                q.into(),
                self.exchange(Exchange::Jobs).into(),
                (*target).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_letter_exchange().into()),
        );
        ch.queue_declare(self.finisher_queue().into(), queue_opts, args)
            .await?;
        ch.queue_bind(
            self.finisher_queue().into(),
            self.exchange(Exchange::Jobs).into(),
            FINISHER_ROUTING_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    /// Declare a dispatcher instance's private queue bound to all events and control messages.
    pub async fn declare_instance_queue(&self, ch: &Channel, instance: &str) -> Result<String> {
        let name = self.instance_queue(instance);
        let opts = QueueDeclareOptions {
            // Live fan-out only: history is in MySQL, so the queue dies with its consumer.
            durable: false,
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(name.clone().into(), opts, FieldTable::default())
            .await?;
        for key in ["job.#", "control.#"] {
            ch.queue_bind(
                name.clone().into(),
                self.exchange(Exchange::Events).into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(name)
    }
}

/// A lazily (re)connected AMQP connection. Use one for publishing and another for consuming.
#[derive(Clone)]
pub struct Broker {
    config: AmqpConfig,
    topology: Topology,
    name: &'static str,
    conn: Arc<Mutex<Option<Arc<Connection>>>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("name", &self.name)
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

/// Timeout for connecting and for each broker round trip we await.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

impl Broker {
    /// A broker handle; `name` labels the connection in the management UI.
    pub fn new(config: &AmqpConfig, name: &'static str) -> Self {
        Self {
            topology: Topology::new(&config.prefix),
            config: config.clone(),
            name,
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// Object names.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The live connection, connecting (and declaring the topology) if needed.
    pub async fn connection(&self) -> Result<Arc<Connection>> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.status().connected() {
                return Ok(c.clone());
            }
        }
        let props = ConnectionProperties::default()
            .with_connection_name(format!("perry-hub-{}", self.name).into());
        let conn = tokio::time::timeout(
            BROKER_TIMEOUT,
            Connection::connect(&self.config.url_with_heartbeat(), props),
        )
        .await
        .map_err(|_| Error::Timeout("connecting to RabbitMQ"))??;
        let conn = Arc::new(conn);
        let ch = conn.create_channel().await?;
        self.topology.declare(&ch).await?;
        let _ = ch.close(200, "topology declared".into()).await;
        tracing::info!(connection = self.name, "connected to RabbitMQ");
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// A new channel on the live connection.
    pub async fn channel(&self) -> Result<Channel> {
        let conn = self.connection().await?;
        Ok(conn.create_channel().await?)
    }

    /// Forget the connection so the next call reconnects.
    pub async fn reset(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), c.close(200, "reconnecting".into()))
                    .await;
        }
    }

    /// Readiness: connected (or able to connect) now.
    pub async fn check(&self) -> Result<()> {
        self.connection().await.map(|_| ())
    }

    /// Close the connection on shutdown.
    pub async fn close(&self) {
        self.reset().await;
    }
}

/// Exponential backoff for reconnect loops: 100 ms doubling up to 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    /// The delay to wait now; grows for the next call.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        d
    }
    /// Back to the shortest delay after a success.
    pub fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_route_to_their_exchanges() {
        let m = Message::JobQueued {
            job_id: "j".into(),
            target: "linux".into(),
            attempt: 0,
            priority: 10,
        };
        assert_eq!(m.route().0, Exchange::Jobs);
        assert_eq!(m.route().2, 10);
        assert_eq!(m.route().1, "linux");
        let m = Message::JobEvent {
            job_id: "j".into(),
            seq: 1,
            kind: "log".into(),
            frame: serde_json::json!({}),
        };
        assert_eq!(m.route(), (Exchange::Events, "job.j".to_owned(), 0));
        let json = serde_json::to_string(&Message::CapacityChanged {}).unwrap();
        assert_eq!(json, r#"{"type":"capacity_changed"}"#);
        let back: Message = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Message::CapacityChanged {});
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(5));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn topology_names_share_the_prefix() {
        let t = Topology::new("p1");
        assert_eq!(t.target_queue("windows-sign"), "p1.target.windows-sign");
        assert_eq!(t.exchange(Exchange::Events), "p1.events");
        assert_eq!(Exchange::parse("jobs"), Some(Exchange::Jobs));
        assert_eq!(Exchange::parse("nope"), None);
    }
}
