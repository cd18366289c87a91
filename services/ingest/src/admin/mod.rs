//! Admin endpoints (§3.11, §3.12, and the operator API of issue 17), behind the admin secret
//! (D2: never open when it is unset).
//!
//! `update-perry` persists the expected version and, in the same transaction, queues the
//! broadcast that every dispatcher delivers to its idle workers (busy ones get it when idle).
//! [`jobs`]: list and show; [`actions`]: cancel and requeue; [`fleet`]: drain, queues, the outbox and its dead
//! letters; [`licences`]: licences, accounts and API tokens.

pub mod actions;
pub mod fleet;
pub mod jobs;
pub mod licences;
pub mod openapi;
mod params;

use axum::{body::Bytes, extract::State, Json};
use protocol::{
    AdminWorker, AdminWorkersResponse, UpdatePerryRequest, UpdatePerryResponse, WorkerSummary,
};
use shared::{
    db,
    http::{ApiError, ApiResult},
    queue::{outbox, Message},
};

use crate::{access::Admin, body, workers, AppState};

/// Longest accepted expected version.
const MAX_VERSION_LEN: usize = 64;

/// `POST /api/v1/admin/update-perry`: optional `{"expected_version"}`.
pub async fn update_perry(
    State(state): State<AppState>,
    _admin: Admin,
    raw: Bytes,
) -> ApiResult<Json<UpdatePerryResponse>> {
    let request: UpdatePerryRequest = body::optional_json(&raw)?;
    if let Some(v) = &request.expected_version {
        check_version(v)?;
    }
    let mut tx = shared::db::begin(&state.deps.pool).await?;
    let expected_version = match &request.expected_version {
        Some(v) => {
            db::set_setting(&mut tx, db::SETTING_EXPECTED_VERSION, v.trim()).await?;
            v.trim().to_owned()
        }
        None => sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(db::SETTING_EXPECTED_VERSION)
            .fetch_optional(&mut *tx)
            .await?
            .map(|db::Text(value)| value)
            .unwrap_or_else(|| state.deps.hub.expected_version.clone()),
    };
    outbox::enqueue(
        &mut tx,
        &Message::UpdatePerry {
            expected_version: expected_version.clone(),
        },
    )
    .await?;
    tx.commit().await?;
    state.deps.notify_outbox();
    let connected = workers::connected(&state.deps.pool).await?;
    let workers_notified = connected.iter().filter(|w| !w.is_busy()).count() as u64;
    tracing::info!(workers_notified, expected_version = %expected_version, "update_perry requested");
    let workers = connected
        .iter()
        .map(|w| WorkerSummary {
            name: w.name.clone(),
            perry_version: w.version(),
            busy: w.is_busy(),
        })
        .collect();
    Ok(Json(UpdatePerryResponse {
        ok: true,
        workers_notified,
        expected_version,
        workers,
    }))
}

/// `GET /api/v1/admin/workers`: connected workers with their slots, held jobs, last-seen
/// time and drain flag, and every drained name.
pub async fn list_workers(
    State(state): State<AppState>,
    _admin: Admin,
) -> ApiResult<Json<AdminWorkersResponse>> {
    let pool = &state.deps.pool;
    let connected = workers::connected(pool).await?;
    let held: Vec<(String, String)> = sqlx::query_as(
        "SELECT worker_id, id FROM jobs WHERE state IN ('assigned', 'running') AND worker_id IS NOT NULL ORDER BY assigned_ms, id",
    )
    .fetch_all(pool)
    .await?;
    let workers = connected
        .iter()
        .map(|w| AdminWorker {
            name: w.name.clone(),
            perry_version: w.version(),
            capabilities: w.capabilities.clone(),
            busy: w.is_busy(),
            slots: u32::try_from(w.max_concurrent).unwrap_or(0),
            jobs: held
                .iter()
                .filter(|(worker, _)| *worker == w.id)
                .map(|(_, job)| job.clone())
                .collect(),
            connected_ms: w.connected_ms,
            last_seen_ms: w.last_seen_ms,
            draining: w.draining != 0,
        })
        .collect();
    let drained = sqlx::query_scalar("SELECT name FROM worker_drains ORDER BY name")
        .fetch_all(pool)
        .await?;
    Ok(Json(AdminWorkersResponse {
        expected_version: workers::expected_version(&state.deps).await?,
        workers,
        drained,
    }))
}

/// A version is a short token like `0.5.1182` (empty clears the expectation).
fn check_version(v: &str) -> ApiResult<()> {
    let v = v.trim();
    if v.len() > MAX_VERSION_LEN
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
    {
        return Err(ApiError::bad_request(format!(
            "Invalid expected_version: at most {MAX_VERSION_LEN} characters of letters, digits, '.', '-', '+' or '_'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_short_plain_tokens() {
        assert!(check_version("0.5.1182").is_ok());
        assert!(check_version("").is_ok());
        assert!(check_version("1.0.0-rc.1+build_7").is_ok());
        assert!(check_version("1.0 ; rm").is_err());
        assert!(check_version(&"9".repeat(65)).is_err());
    }
}
