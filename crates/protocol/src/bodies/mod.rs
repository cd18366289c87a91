//! Request and response bodies of the HTTP endpoints (§3): status, build and upload here, the
//! rest grouped by resource.

use serde::{Deserialize, Serialize};

mod account;
mod admin;
mod license;

pub use account::{
    AccountCreateRequest, AccountCreateResponse, AccountResponse, AccountUpdateRequest,
    AccountUsage,
};
pub use admin::{
    AdminWorker, AdminWorkersResponse, UpdatePerryRequest, UpdatePerryResponse, WorkerSummary,
};
pub use license::{RegisterRequest, RegisterResponse, VerifyRequest, VerifyResponse};

/// `GET /status` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Always `"ok"`.
    pub status: String,
    /// Jobs waiting in queues.
    pub queue_length: u64,
    /// Identified worker connections.
    pub connected_workers: u64,
    /// The hub's own version.
    pub perry_version: String,
    /// Expected worker compiler version, `""` if none.
    pub expected_perry_version: String,
    /// Subset of `macos ios android linux windows`, in that order, offered by a worker.
    pub supported_targets: Vec<String>,
}

/// `{"ok":true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OkResponse {
    /// Always `true` on success.
    pub ok: bool,
}

/// `POST /build` response; the CLI requires all three fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildResponse {
    /// New job id.
    pub job_id: String,
    /// WebSocket URL, relative (`"/ws"`) or absolute.
    pub ws_url: String,
    /// 1-based place in the job's queue.
    pub position: u64,
}

/// `POST /artifact/upload/:jobId` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactUploadResponse {
    /// Download token.
    pub token: String,
    /// Absolute download URL ending in the token.
    pub download_url: String,
    /// Decoded size in bytes.
    pub size: u64,
}
