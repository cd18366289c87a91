//! Admin actions on one job (issue 17): cancel, and requeue of a failed job. Every state change
//! goes through `job::transition`, in one transaction with its events and outbox rows.

use axum::{
    extract::{Path, State},
    Json,
};
use job::{transition, JobState};
use serde::Serialize;
use shared::http::{ApiError, ApiResult, ErrorCode};

use crate::{access::Admin, errors, AppState};

/// The answer of cancel and requeue.
#[derive(Debug, Serialize)]
pub struct JobAction {
    /// The job.
    pub job_id: String,
    /// `cancelled` (it was waiting), `cancel_requested` (its worker is told), or `requeued`.
    pub result: &'static str,
    /// Its state now.
    pub state: String,
}

/// `POST /api/v1/admin/jobs/{job_id}/cancel`.
pub async fn cancel_job(
    State(state): State<AppState>,
    _admin: Admin,
    Path(job_id): Path<String>,
) -> ApiResult<Json<JobAction>> {
    let mut tx = shared::db::begin(&state.deps.pool).await?;
    let job = job::lock(&mut tx, &job_id)
        .await?
        .ok_or_else(errors::job_not_found)?;
    let result = match transition::cancel(&mut tx, &job).await? {
        transition::Cancelled::Now => "cancelled",
        transition::Cancelled::Requested => "cancel_requested",
        transition::Cancelled::Unchanged if job.cancel_requested && job.state.is_held() => {
            "cancel_requested"
        }
        transition::Cancelled::Unchanged => {
            return Err(conflict(format!(
                "Job {job_id} has already ended ({})",
                job.state
            )))
        }
    };
    tx.commit().await?;
    state.deps.notify_outbox();
    tracing::info!(%job_id, result, "admin cancelled a job");
    let now = job::load(&mut *state.deps.pool.acquire().await?, &job_id)
        .await?
        .map_or_else(|| job.state.to_string(), |j| j.state.to_string());
    Ok(Json(JobAction {
        job_id,
        result,
        state: now,
    }))
}

/// `POST /api/v1/admin/jobs/{job_id}/requeue`: a failed job runs again from the same input.
pub async fn requeue_job(
    State(state): State<AppState>,
    _admin: Admin,
    Path(job_id): Path<String>,
) -> ApiResult<Json<JobAction>> {
    let found = job::load(&mut *state.deps.pool.acquire().await?, &job_id)
        .await?
        .ok_or_else(errors::job_not_found)?;
    if found.state != JobState::Failed {
        return Err(not_failed(&job_id, found.state));
    }
    let stored = match &found.input_key {
        Some(key) => state.deps.blob.size(key).await?.is_some(),
        None => false,
    };
    if !stored {
        return Err(conflict(format!(
            "Job {job_id} cannot run again: its input is no longer stored; submit it again"
        )));
    }
    let mut tx = shared::db::begin(&state.deps.pool).await?;
    let job = job::lock(&mut tx, &job_id)
        .await?
        .ok_or_else(errors::job_not_found)?;
    match transition::requeue_failed(&mut tx, &job).await? {
        Ok(()) => {}
        Err(transition::NotRequeued::NotFailed(now)) => return Err(not_failed(&job_id, now)),
        Err(transition::NotRequeued::CredentialsDiscarded) => {
            return Err(conflict(format!(
                "Job {job_id} cannot run again: its signing credentials were discarded when it failed; submit it again"
            )))
        }
    }
    tx.commit().await?;
    state.deps.notify_outbox();
    tracing::info!(%job_id, "admin requeued a failed job");
    Ok(Json(JobAction {
        job_id,
        result: "requeued",
        state: JobState::Queued.to_string(),
    }))
}

fn not_failed(job_id: &str, now: JobState) -> ApiError {
    conflict(format!(
        "Job {job_id} is {now}: only a failed job can be requeued"
    ))
}

/// 409 `CONFLICT` (DEC-28).
pub fn conflict(message: String) -> ApiError {
    ApiError::new(ErrorCode::Conflict, message)
}
