//! WebSocket frames sent by the hub (§4.3, §4.5).

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::{ArtifactInfo, Redacted, RedactedString, WsErrorCode};

/// A frame sent to a worker or a CLI subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outgoing {
    /// To a worker: run this job attempt.
    JobAssign {
        /// Job id.
        job_id: String,
        /// Fresh per-attempt job token (redacted in `Debug`).
        auth_token: RedactedString,
        /// The manifest, forwarded unchanged (stage 2 rewrites `targets`).
        manifest: Value,
        /// Signing credentials, an object, never null (redacted in `Debug`).
        credentials: Redacted<Value>,
        /// Absolute tarball URL.
        tarball_url: String,
        /// Absolute artifact upload URL.
        artifact_upload_url: String,
    },
    /// To a worker: cancel a job it holds.
    Cancel {
        /// Job id.
        job_id: String,
    },
    /// To an idle worker: update the compiler.
    UpdatePerry,
    /// To a worker: distribute (dormant).
    ProceedDistribute {
        /// Job id.
        job_id: String,
    },
    /// To a worker: skip distribution (dormant).
    SkipDistribute {
        /// Job id.
        job_id: String,
        /// Why.
        reason: String,
    },
    /// Error; fatal to the CLI.
    Error {
        /// Job id, omitted when `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
        /// Error code.
        code: String,
        /// Human-readable message.
        message: String,
        /// Stage, omitted when `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
    },
    /// To a CLI: subscription accepted.
    JobCreated {
        /// Job id.
        job_id: String,
        /// 1-based queue place, 0 once assigned.
        position: u64,
        /// Estimated wait, sent as `null` when unknown.
        estimated_wait_secs: Option<u64>,
    },
    /// To a CLI: queue place changed or the job was requeued.
    QueueUpdate {
        /// Job id.
        job_id: String,
        /// 1-based queue place, 0 once assigned.
        position: u64,
        /// Human-readable message.
        message: String,
        /// Estimated wait, omitted when unknown (as in the §4.5 example).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimated_wait_secs: Option<u64>,
    },
    /// To a CLI: stage change.
    Stage {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// Human-readable message.
        message: String,
    },
    /// To a CLI: build log line.
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
    /// To a CLI: progress (integer percent).
    Progress {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// 0–100.
        percent: u8,
        /// Optional message, sent as `null` when absent.
        message: Option<String>,
    },
    /// To a CLI: an artifact can be downloaded (never carries `download_path`, D34).
    ArtifactReady {
        /// Job id.
        job_id: String,
        /// Artifact target, e.g. `linux`.
        target: String,
        /// User-visible file name.
        artifact_name: String,
        /// Decoded size in bytes.
        artifact_size: u64,
        /// Hex SHA-256.
        sha256: String,
        /// Absolute single-use download URL.
        download_url: String,
        /// Token lifetime.
        expires_in_secs: u64,
    },
    /// To a CLI: published to a store.
    Published {
        /// Job id.
        job_id: String,
        /// Platform name.
        platform: String,
        /// Human-readable message.
        message: String,
        /// Store URL, sent as `null` when absent.
        url: Option<String>,
    },
    /// To a CLI: the job ended.
    Complete {
        /// Job id.
        job_id: String,
        /// Final outcome.
        success: bool,
        /// Duration in seconds (a non-finite value is sent as 0).
        #[serde(serialize_with = "finite_f64")]
        duration_secs: f64,
        /// Artifacts, possibly empty.
        artifacts: Vec<ArtifactInfo>,
    },
}

/// Serializes a non-finite float as `0.0` so the field stays numeric (`serde_json` writes `null`).
fn finite_f64<S: Serializer>(v: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(if v.is_finite() { *v } else { 0.0 })
}

impl Outgoing {
    /// A WebSocket `error` frame with a hub-defined code.
    pub fn ws_error(job_id: Option<String>, code: WsErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            job_id,
            code: code.as_str().to_owned(),
            message: message.into(),
            stage: None,
        }
    }

    /// Serializes the frame to its JSON text.
    pub fn to_json(&self) -> String {
        // Cannot fail: string keys only, and no fallible custom serializer.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The frame's `type` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::JobAssign { .. } => "job_assign",
            Self::Cancel { .. } => "cancel",
            Self::UpdatePerry => "update_perry",
            Self::ProceedDistribute { .. } => "proceed_distribute",
            Self::SkipDistribute { .. } => "skip_distribute",
            Self::Error { .. } => "error",
            Self::JobCreated { .. } => "job_created",
            Self::QueueUpdate { .. } => "queue_update",
            Self::Stage { .. } => "stage",
            Self::Log { .. } => "log",
            Self::Progress { .. } => "progress",
            Self::ArtifactReady { .. } => "artifact_ready",
            Self::Published { .. } => "published",
            Self::Complete { .. } => "complete",
        }
    }

    /// The job the frame refers to, if it names one.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Self::JobAssign { job_id, .. }
            | Self::Cancel { job_id }
            | Self::ProceedDistribute { job_id }
            | Self::SkipDistribute { job_id, .. }
            | Self::JobCreated { job_id, .. }
            | Self::QueueUpdate { job_id, .. }
            | Self::Stage { job_id, .. }
            | Self::Log { job_id, .. }
            | Self::Progress { job_id, .. }
            | Self::ArtifactReady { job_id, .. }
            | Self::Published { job_id, .. }
            | Self::Complete { job_id, .. } => Some(job_id),
            Self::Error { job_id, .. } => job_id.as_deref(),
            Self::UpdatePerry => None,
        }
    }
}
