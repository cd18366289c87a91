//! WebSocket frames received by the hub (§4.2, §4.4); [`crate::parse_incoming`] reads them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::RedactedString;

/// One artifact listed in a `complete` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// User-visible file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

/// One artifact as a worker lists it in `complete`. The hub never trusts this list (it reads
/// the artifacts stored for the attempt), so an entry is read leniently: each field is kept
/// only when present with the right type, and an entry that is not an object is kept empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportedArtifact {
    /// File name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Hex SHA-256 (some workers leave it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl<'de> Deserialize<'de> for ReportedArtifact {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(Self {
            name: text("name"),
            size: value.get("size").and_then(Value::as_u64),
            sha256: text("sha256"),
        })
    }
}

/// A frame received from a worker or a CLI. Parse with [`parse_incoming`](crate::parse_incoming).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Incoming {
    /// Worker identification; the secret is checked by the hub (a missing one is rejected).
    WorkerHello {
        /// Worker secret (redacted in `Debug`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<RedactedString>,
        /// Capabilities; the hub defaults to `["macos"]`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capabilities: Option<Vec<String>>,
        /// Worker name; the hub defaults to `worker-<n>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Parallel jobs; 0 or absent means 1, clamped to 16 by the hub.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_concurrent: Option<i64>,
        /// Worker compiler version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        perry_version: Option<String>,
    },
    /// Job entered a stage.
    Stage {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// Human-readable message.
        message: String,
    },
    /// Progress within a stage.
    Progress {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// 0–100; integers and floats accepted.
        percent: f64,
        /// Optional message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// One build log line.
    Log {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// The line.
        line: String,
        /// `stdout` or `stderr`.
        stream: String,
    },
    /// Published to a store.
    Published {
        /// Job id.
        job_id: String,
        /// Platform name.
        platform: String,
        /// Human-readable message.
        message: String,
        /// Optional store URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// Queue information from a worker.
    QueueUpdate {
        /// Job id.
        job_id: String,
        /// Place in a queue.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<u64>,
        /// Human-readable message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Estimated wait.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimated_wait_secs: Option<u64>,
    },
    /// A worker-side failure (A7, A16).
    Error {
        /// Job id; when absent the hub attributes it to the worker's only job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
        /// Error code (workers always send `INTERNAL_ERROR`).
        code: String,
        /// Human-readable message.
        message: String,
        /// Stage where it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
    },
    /// End of an attempt (§5).
    Complete {
        /// Job id.
        job_id: String,
        /// Worker-reported success.
        success: bool,
        /// Build duration in seconds (some workers send `null` or leave it out).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_secs: Option<f64>,
        /// The artifacts the worker says it uploaded (informative only; absent means none).
        #[serde(default)]
        artifacts: Vec<ReportedArtifact>,
        /// `windows`, `ios` or `macos` when stage 2 is needed (§5.4).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        needs_finishing: Option<String>,
        /// Failure description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Outcome of an `update_perry`.
    UpdateResult {
        /// Whether the update succeeded.
        success: bool,
        /// Version before.
        old_version: String,
        /// Version after.
        new_version: String,
        /// Failure description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Build finished before distribution (dormant, §5.5).
    BuildComplete {
        /// Job id.
        job_id: String,
        /// Whether a distribution step follows.
        has_distribution: bool,
        /// Build duration in seconds.
        duration_secs: f64,
    },
    /// Legacy frame; any content is accepted and the frame is dropped (D5).
    ArtifactReady {
        /// Whatever the worker sent, unread by the hub.
        #[serde(flatten)]
        rest: Map<String, Value>,
    },
    /// CLI: follow a job.
    Subscribe {
        /// Job id.
        job_id: String,
    },
    /// CLI: cancel the subscribed job.
    Cancel {
        /// Job id.
        job_id: String,
    },
}

impl Incoming {
    /// The frame's `type` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::WorkerHello { .. } => "worker_hello",
            Self::Stage { .. } => "stage",
            Self::Progress { .. } => "progress",
            Self::Log { .. } => "log",
            Self::Published { .. } => "published",
            Self::QueueUpdate { .. } => "queue_update",
            Self::Error { .. } => "error",
            Self::Complete { .. } => "complete",
            Self::UpdateResult { .. } => "update_result",
            Self::BuildComplete { .. } => "build_complete",
            Self::ArtifactReady { .. } => "artifact_ready",
            Self::Subscribe { .. } => "subscribe",
            Self::Cancel { .. } => "cancel",
        }
    }

    /// The job the frame refers to, if it names one.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Self::Stage { job_id, .. }
            | Self::Progress { job_id, .. }
            | Self::Log { job_id, .. }
            | Self::Published { job_id, .. }
            | Self::QueueUpdate { job_id, .. }
            | Self::Complete { job_id, .. }
            | Self::BuildComplete { job_id, .. }
            | Self::Subscribe { job_id }
            | Self::Cancel { job_id } => Some(job_id),
            Self::Error { job_id, .. } => job_id.as_deref(),
            Self::WorkerHello { .. } | Self::UpdateResult { .. } | Self::ArtifactReady { .. } => {
                None
            }
        }
    }
}
