//! The message queue: typed messages, the [`Queue`] with its two backends (RabbitMQ, with its
//! topology declared in one place, and the in-process [`memory`] queue), the outbox relay and a
//! supervised consumer.
//!
//! The queue is the doorbell, MySQL is the truth: every message is written to the `outbox`
//! table in the same transaction as the state change it announces ([`outbox::enqueue`]), and the
//! [`outbox::Relay`] publishes it with confirms. Consumers are idempotent.

mod backend;
mod broker;
pub mod consumer;
pub mod dead;
pub mod memory;
pub mod outbox;
pub mod rabbit;
mod topology;

use serde::{Deserialize, Serialize};

pub use backend::{Delivery, Disposition, Publish, Queue, Source, Subscription};
pub use broker::{Backoff, Broker, BROKER_TIMEOUT};
pub use topology::Topology;

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
    /// An in-process delivery was settled after its subscription ended.
    #[error("queue closed: {0}")]
    Closed(&'static str),
    /// An operation timed out.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The TLS settings could not be used.
    #[error("TLS: {0}")]
    Tls(String),
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

/// A frame in a message. Encoded once by the sender and carried as that JSON text (not
/// decoded and encoded again on the way); a received one is a JSON value, since messages are
/// tagged enums, which serde reads through a buffer that raw JSON cannot come from.
#[derive(Debug, Clone)]
pub enum RawFrame {
    /// Encoded here.
    Raw(Box<serde_json::value::RawValue>),
    /// Received.
    Value(serde_json::Value),
}

impl RawFrame {
    /// Encode `value` once.
    pub fn encode<T: Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self::Raw)
    }
    /// The JSON text (borrowed when it was encoded here).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Raw(raw) => raw.get().into(),
            Self::Value(value) => value.to_string().into(),
        }
    }
    /// Decode the frame.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self {
            Self::Raw(raw) => serde_json::from_str(raw.get()),
            Self::Value(value) => T::deserialize(value),
        }
    }
}

impl Serialize for RawFrame {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Raw(raw) => raw.serialize(s),
            Self::Value(value) => value.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for RawFrame {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Self::Value)
    }
}

impl PartialEq for RawFrame {
    fn eq(&self, other: &Self) -> bool {
        self.decode::<serde_json::Value>().ok() == other.decode::<serde_json::Value>().ok()
    }
}

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
        frames: Vec<RawFrame>,
        /// The dispatcher instance that stored them; it has delivered them to its own
        /// subscribers already and skips this message.
        #[serde(default)]
        origin: String,
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
    /// An operator drained (`draining`) or undrained the worker(s) called `name`: a drained
    /// worker finishes what it holds and is given nothing new.
    WorkerDrain { name: String, draining: bool },
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
            Self::WorkerDrain { .. } => (Exchange::Events, "control.drain".to_owned(), 0),
        }
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
        let burst = Message::JobEvents {
            job_id: "j".into(),
            first_seq: 3,
            frames: vec![
                RawFrame::encode(&serde_json::json!({"type": "log", "line": "é\\n"})).unwrap(),
            ],
            origin: "d1".into(),
        };
        let text = serde_json::to_string(&burst).unwrap();
        assert!(
            text.contains(r#""frames":[{"line":"é\\n","type":"log"}]"#),
            "{text}"
        );
        let back: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(back, burst);
        let Message::JobEvents { frames, .. } = back else {
            panic!("not a burst")
        };
        let frame: serde_json::Value = frames[0].decode().unwrap();
        assert_eq!(frame["line"], "é\\n");
        let json = serde_json::to_string(&Message::CapacityChanged {}).unwrap();
        assert_eq!(json, r#"{"type":"capacity_changed"}"#);
        let back: Message = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Message::CapacityChanged {});
    }
}
