//! Admin view of the fleet (issue 17): drain and undrain a worker, queue depth per target, and
//! the outbox with its dead letters.
//!
//! A drain is kept by worker name in `worker_drains` (it outlives reconnects) and announced to
//! every dispatcher in the same transaction; a drained worker keeps the jobs it holds and is
//! given no new one until it is undrained.

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    Json,
};
use serde::Serialize;
use shared::{
    clock::now_ms,
    http::{ApiError, ApiResult},
    queue::{dead, outbox, Message, TARGETS},
};

use super::params::Params;
use crate::{access::Admin, workers, AppState};

/// Longest worker name (as the dispatcher keeps it).
const MAX_NAME_CHARS: usize = 255;
/// Most dead letters one replay handles.
pub const MAX_REPLAY: u32 = 1000;

/// The answer of drain and undrain.
#[derive(Debug, Serialize)]
pub struct DrainState {
    /// The worker name.
    pub name: String,
    /// Drained now.
    pub draining: bool,
    /// Connections of that name connected now.
    pub connected: usize,
    /// Jobs they still hold (they finish them).
    pub jobs: usize,
}

/// `POST /api/v1/admin/workers/{name}/drain`.
pub async fn drain(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<DrainState>> {
    set_drain(&state, name, true).await
}

/// `POST /api/v1/admin/workers/{name}/undrain`.
pub async fn undrain(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<DrainState>> {
    set_drain(&state, name, false).await
}

async fn set_drain(state: &AppState, name: String, draining: bool) -> ApiResult<Json<DrainState>> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "Invalid worker name: 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    let mut tx = shared::db::begin(&state.deps.pool).await?;
    if draining {
        sqlx::query(&shared::db::sql(shared::db::Dialect::of(&tx), "INSERT INTO worker_drains (name, requested_ms) VALUES (?, ?) ON DUPLICATE KEY UPDATE name = name"))
            .bind(&name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query("DELETE FROM worker_drains WHERE name = ?")
            .bind(&name)
            .execute(&mut *tx)
            .await?;
    }
    let message = Message::WorkerDrain {
        name: name.clone(),
        draining,
    };
    outbox::enqueue(&mut tx, &message).await?;
    tx.commit().await?;
    state.deps.notify_outbox();
    tracing::info!(worker = %name, draining, "admin changed a worker's drain");
    let connected: Vec<_> = workers::connected(&state.deps.pool)
        .await?
        .into_iter()
        .filter(|w| w.name == name)
        .collect();
    let jobs: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs j JOIN workers w ON w.id = j.worker_id \
         WHERE w.name = ? AND w.disconnected_ms IS NULL AND j.state IN ('assigned', 'running')",
    )
    .bind(&name)
    .fetch_one(&state.deps.pool)
    .await?;
    Ok(Json(DrainState {
        name,
        draining,
        connected: connected.len(),
        jobs: usize::try_from(jobs).unwrap_or(0),
    }))
}

/// One target's queue.
#[derive(Debug, Serialize)]
pub struct QueueDepth {
    /// The target (a worker capability).
    pub target: String,
    /// Jobs waiting for a worker.
    pub queued: i64,
    /// Jobs a worker holds now.
    pub held: i64,
    /// When the longest-waiting job was (re)queued (epoch ms).
    pub oldest_queued_ms: Option<i64>,
    /// How long it has waited, in seconds.
    pub oldest_wait_secs: Option<f64>,
    /// Connected workers that can take it (drained ones not counted).
    pub workers: usize,
}

/// `GET /api/v1/admin/queues`.
#[derive(Debug, Serialize)]
pub struct Queues {
    /// Every target, in the hub's order.
    pub queues: Vec<QueueDepth>,
}

/// `GET /api/v1/admin/queues`: depth and oldest waiting job per target, from MySQL.
pub async fn queues(State(state): State<AppState>, _admin: Admin) -> ApiResult<Json<Queues>> {
    let rows: Vec<(String, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT target, CAST(SUM(state = 'queued') AS SIGNED), CAST(SUM(state IN ('assigned', 'running')) AS SIGNED), \
         MIN(CASE WHEN state = 'queued' THEN COALESCE(queued_ms, enqueued_ms) END) \
         FROM jobs WHERE state IN ('queued', 'assigned', 'running') GROUP BY target",
    )
    .fetch_all(&state.deps.pool)
    .await?;
    let by_target: HashMap<String, (i64, i64, Option<i64>)> = rows
        .into_iter()
        .map(|(t, q, h, oldest)| (t, (q, h, oldest)))
        .collect();
    let connected = workers::connected(&state.deps.pool).await?;
    let now = now_ms();
    let queues = TARGETS
        .iter()
        .map(|target| {
            let (queued, held, oldest) = by_target.get(*target).copied().unwrap_or_default();
            QueueDepth {
                target: (*target).to_owned(),
                queued,
                held,
                oldest_queued_ms: oldest,
                oldest_wait_secs: oldest.map(|ms| (now - ms).max(0) as f64 / 1000.0),
                workers: connected
                    .iter()
                    .filter(|w| w.draining == 0 && w.capabilities.split(',').any(|c| c == *target))
                    .count(),
            }
        })
        .collect();
    Ok(Json(Queues { queues }))
}

/// `GET /api/v1/admin/outbox`.
#[derive(Debug, Serialize)]
pub struct OutboxState {
    /// Rows not published yet.
    pub backlog: i64,
    /// When the oldest of them was written (epoch ms).
    pub oldest_unsent_ms: Option<i64>,
    /// Its age in seconds.
    pub oldest_unsent_age_secs: Option<f64>,
    /// Messages in the broker's dead-letter queue (`null` while the broker cannot be reached).
    pub dead_lettered: Option<u32>,
}

/// `GET /api/v1/admin/outbox`.
pub async fn outbox_state(
    State(state): State<AppState>,
    _admin: Admin,
) -> ApiResult<Json<OutboxState>> {
    let (backlog, oldest): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MIN(created_ms) FROM outbox WHERE sent_ms IS NULL")
            .fetch_one(&state.deps.pool)
            .await?;
    let dead_lettered = match dead::count(&state.deps.queue).await {
        Ok(n) => Some(n),
        Err(error) => {
            tracing::warn!(%error, "dead-letter queue not readable");
            None
        }
    };
    Ok(Json(OutboxState {
        backlog,
        oldest_unsent_ms: oldest,
        oldest_unsent_age_secs: oldest.map(|ms| (now_ms() - ms).max(0) as f64 / 1000.0),
        dead_lettered,
    }))
}

/// `POST /api/v1/admin/outbox/replay?limit=`: dead letters back through the outbox.
pub async fn replay(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<dead::Replayed>> {
    let limit = Params::new(query, &["limit"])?.limit(100, MAX_REPLAY)?;
    let done = dead::replay(&state.deps.pool, &state.deps.queue, limit).await?;
    state.deps.notify_outbox();
    tracing::info!(
        replayed = done.replayed,
        kept = done.kept,
        "admin replayed dead letters"
    );
    Ok(Json(done))
}
