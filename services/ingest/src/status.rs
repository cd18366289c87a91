//! `GET /api/v1/status` (§3.1): public health and capacity summary.

use axum::{extract::State, Json};
use protocol::StatusResponse;
use shared::http::ApiResult;

use crate::{workers, AppState};

/// `GET /api/v1/status`.
pub async fn get_status(State(state): State<AppState>) -> ApiResult<Json<StatusResponse>> {
    let pool = &state.deps.pool;
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
        .fetch_one(pool)
        .await?;
    let connected = workers::connected(pool).await?;
    let capabilities: Vec<&str> = connected.iter().map(|w| w.capabilities.as_str()).collect();
    Ok(Json(StatusResponse {
        status: "ok".to_owned(),
        queue_length: u64::try_from(queued).unwrap_or(0),
        connected_workers: connected.len() as u64,
        perry_version: env!("CARGO_PKG_VERSION").to_owned(),
        expected_perry_version: workers::expected_version(&state.deps).await?,
        supported_targets: workers::supported_targets(&capabilities),
    }))
}
