//! Admin bodies: `POST /admin/update-perry` and `GET /admin/workers` (§3.11, §3.12).

use serde::{Deserialize, Serialize};

/// `POST /admin/update-perry` request; the body itself is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdatePerryRequest {
    /// New expected worker version, persisted when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<String>,
}

/// `POST /admin/update-perry` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePerryResponse {
    /// Always `true`.
    pub ok: bool,
    /// Idle workers sent `update_perry` now.
    pub workers_notified: u64,
    /// Expected version after the request (`""` if none).
    pub expected_version: String,
    /// Every connected worker.
    pub workers: Vec<WorkerSummary>,
}

/// Worker entry of [`UpdatePerryResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// Worker name.
    pub name: String,
    /// Reported version, `"unknown"` if never reported.
    pub perry_version: String,
    /// Whether the worker has active jobs.
    pub busy: bool,
}

/// `GET /admin/workers` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminWorkersResponse {
    /// Expected worker version (`""` if none).
    pub expected_version: String,
    /// Every connected worker.
    pub workers: Vec<AdminWorker>,
    /// *New*: names an operator drained (connected or not), sorted (DEC-28).
    #[serde(default)]
    pub drained: Vec<String>,
}

/// Worker entry of [`AdminWorkersResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminWorker {
    /// Worker name.
    pub name: String,
    /// Reported version, `"unknown"` if never reported.
    pub perry_version: String,
    /// Seed string form, e.g. `",linux,android,"`.
    pub capabilities: String,
    /// Whether the worker has active jobs.
    pub busy: bool,
    /// *New* (DEC-28): parallel job slots it offered.
    #[serde(default)]
    pub slots: u32,
    /// *New*: ids of the jobs it holds (assigned or running).
    #[serde(default)]
    pub jobs: Vec<String>,
    /// *New*: when it connected (epoch ms).
    #[serde(default)]
    pub connected_ms: i64,
    /// *New*: when the hub last heard from it (epoch ms).
    #[serde(default)]
    pub last_seen_ms: i64,
    /// *New*: drained by an operator: finishes what it holds, takes nothing new.
    #[serde(default)]
    pub draining: bool,
}
