//! The job lifecycle in SQL, used by every service that changes a job: load, queue position,
//! (re)queue, fail, and download-token minting. Each function runs in the caller's transaction
//! and writes its events and outbox rows there, so a state change and its announcement commit
//! together. Transitions are conditional on the current state, so repeats are harmless.

use sqlx::MySqlConnection;

use crate::{
    auth,
    clock::now_ms,
    db::append_event,
    queue::{self, outbox, Message},
};
use protocol::{ArtifactInfo, Outgoing};

/// Requeues after lost workers before a job fails (so at most four dispatches per stage).
pub const MAX_RETRIES: i32 = 3;

/// Job states.
pub mod state {
    /// Waiting for a worker.
    pub const QUEUED: &str = "queued";
    /// `job_assign` sent.
    pub const ASSIGNED: &str = "assigned";
    /// Tarball fetched or a frame arrived.
    pub const RUNNING: &str = "running";
    /// Stage 1 done; waiting for the finisher to queue stage 2.
    pub const FINISHING: &str = "finishing";
    /// Succeeded.
    pub const COMPLETED: &str = "completed";
    /// Failed.
    pub const FAILED: &str = "failed";
    /// Cancelled.
    pub const CANCELLED: &str = "cancelled";

    /// Whether `s` is terminal.
    pub fn is_terminal(s: &str) -> bool {
        matches!(s, COMPLETED | FAILED | CANCELLED)
    }
}

/// A job row (without the sealed credentials).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: String,
    pub license_id: i64,
    pub project: String,
    pub original_target: String,
    pub target: String,
    pub stage: i8,
    pub state: String,
    pub priority: i8,
    pub manifest: String,
    pub input_key: Option<String>,
    pub input_size: Option<i64>,
    pub input_sha256: Option<String>,
    pub attempt: i32,
    pub retries: i32,
    pub worker_id: Option<String>,
    pub worker_name: Option<String>,
    pub dispatcher_id: Option<String>,
    pub lease_expires_ms: Option<i64>,
    pub cancel_requested: bool,
    pub error_reported: bool,
    pub needs_finishing: Option<String>,
    pub enqueued_ms: i64,
    pub created_ms: i64,
    pub assigned_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

/// Columns of [`Job`], for `SELECT`s.
pub const COLUMNS: &str =
    "id, license_id, project, original_target, target, stage, state, priority, manifest, \
    input_key, input_size, input_sha256, attempt, retries, worker_id, worker_name, dispatcher_id, \
    lease_expires_ms, cancel_requested, error_reported, needs_finishing, enqueued_ms, created_ms, \
    assigned_ms, finished_ms";

impl Job {
    /// Seconds since the job was created (for `complete.duration_secs`).
    pub fn duration_secs(&self) -> f64 {
        (now_ms() - self.created_ms).max(0) as f64 / 1000.0
    }
    /// Whether the job is in a terminal state.
    pub fn is_terminal(&self) -> bool {
        state::is_terminal(&self.state)
    }
}

/// Load a job.
pub async fn load(conn: &mut MySqlConnection, id: &str) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Load and lock a job for the rest of the transaction.
pub async fn lock(conn: &mut MySqlConnection, id: &str) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = ? FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// 1-based place of a queued job in its target's queue (priority, then enqueue time); 0 when
/// the job is not queued.
pub async fn position(conn: &mut MySqlConnection, job: &Job) -> Result<u64, sqlx::Error> {
    if job.state != state::QUEUED {
        return Ok(0);
    }
    let ahead: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND target = ? AND id <> ? AND \
         (priority > ? OR (priority = ? AND (enqueued_ms < ? OR (enqueued_ms = ? AND id < ?))))",
    )
    .bind(&job.target)
    .bind(&job.id)
    .bind(job.priority)
    .bind(job.priority)
    .bind(job.enqueued_ms)
    .bind(job.enqueued_ms)
    .bind(&job.id)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(ahead).unwrap_or(0) + 1)
}

/// Announce that `job` (already `queued` in this transaction) waits for a worker.
pub async fn announce_queued(
    conn: &mut MySqlConnection,
    job_id: &str,
    target: &str,
    attempt: i32,
    priority: i8,
) -> queue::Result<()> {
    let msg = Message::JobQueued {
        job_id: job_id.to_owned(),
        target: target.to_owned(),
        attempt,
        priority: u8::try_from(priority).unwrap_or(1),
    };
    outbox::enqueue(conn, &msg).await.map(|_| ())
}

/// Append a CLI frame to the job's event log.
pub async fn emit(
    conn: &mut MySqlConnection,
    job_id: &str,
    frame: &Outgoing,
) -> queue::Result<i64> {
    let value = serde_json::to_value(frame)?;
    append_event(conn, job_id, frame.kind(), &value).await
}

/// What [`requeue_lost`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostOutcome {
    /// Queued again with one more retry.
    Requeued,
    /// Out of retries: failed.
    Failed,
    /// The job was not in the expected attempt/state (already handled).
    Unchanged,
}

/// The worker holding `attempt` of a job is gone: requeue it (retries + 1, token revoked, the
/// CLI told with a `queue_update`) or, after [`MAX_RETRIES`], fail it. Conditional on the job
/// still being `assigned`/`running` at that attempt.
pub async fn requeue_lost(
    conn: &mut MySqlConnection,
    job_id: &str,
    attempt: i32,
    why: &str,
) -> queue::Result<LostOutcome> {
    let Some(job) = lock(conn, job_id).await? else {
        return Ok(LostOutcome::Unchanged);
    };
    if job.attempt != attempt || !(job.state == state::ASSIGNED || job.state == state::RUNNING) {
        return Ok(LostOutcome::Unchanged);
    }
    crate::metrics::get().lease_expiries.inc();
    if job.cancel_requested {
        finish_failed(conn, &job, state::CANCELLED, "Build cancelled").await?;
        return Ok(LostOutcome::Failed);
    }
    if job.retries >= MAX_RETRIES {
        let msg = format!(
            "Build failed after {} attempts (workers kept disconnecting)",
            job.retries + 1
        );
        finish_failed(conn, &job, state::FAILED, &msg).await?;
        return Ok(LostOutcome::Failed);
    }
    sqlx::query(
        "UPDATE jobs SET state = 'queued', retries = retries + 1, token_hash = NULL, worker_id = NULL, \
         worker_name = NULL, dispatcher_id = NULL, lease_expires_ms = NULL, error_reported = FALSE WHERE id = ?",
    )
    .bind(job_id)
    .execute(&mut *conn)
    .await?;
    crate::metrics::get().retries.inc();
    let mut requeued = job.clone();
    requeued.state = state::QUEUED.to_owned();
    let pos = position(conn, &requeued).await?;
    let message = format!("{why}, re-queued (attempt {})", job.retries + 2);
    emit(
        conn,
        job_id,
        &Outgoing::QueueUpdate {
            job_id: job_id.to_owned(),
            position: pos,
            message,
            estimated_wait_secs: None,
        },
    )
    .await?;
    // One level above its tier: the job goes ahead of those submitted after it (§5.2).
    announce_queued(
        conn,
        job_id,
        &job.target,
        job.attempt,
        job.priority.saturating_add(1),
    )
    .await?;
    Ok(LostOutcome::Requeued)
}

/// End a job unsuccessfully: `error` (unless cancelled quietly) then `complete{success:false}`
/// to the CLI, credentials and token dropped. `final_state` is `failed` or `cancelled`.
pub async fn finish_failed(
    conn: &mut MySqlConnection,
    job: &Job,
    final_state: &str,
    message: &str,
) -> queue::Result<()> {
    if job.is_terminal() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE jobs SET state = ?, finished_ms = ?, error_message = ?, credentials_enc = NULL, token_hash = NULL, \
         lease_expires_ms = NULL WHERE id = ?",
    )
    .bind(final_state)
    .bind(now_ms())
    .bind(message)
    .bind(&job.id)
    .execute(&mut *conn)
    .await?;
    // A cancelled job ends with `complete{success:false}` only (§5.1); the worker's own
    // "Build cancelled" error, if any, was already relayed.
    if !job.error_reported && final_state != state::CANCELLED {
        let frame = Outgoing::Error {
            job_id: Some(job.id.clone()),
            code: "INTERNAL_ERROR".into(),
            message: message.to_owned(),
            stage: None,
        };
        emit(conn, &job.id, &frame).await?;
    }
    let complete = Outgoing::Complete {
        job_id: job.id.clone(),
        success: false,
        duration_secs: job.duration_secs(),
        artifacts: vec![],
    };
    emit(conn, &job.id, &complete).await?;
    crate::metrics::get()
        .jobs_finished
        .get_or_create(&crate::metrics::label("state", final_state))
        .inc();
    Ok(())
}

/// Visible (non-intermediate) artifacts of a job, all attempts.
pub async fn visible_artifacts(
    conn: &mut MySqlConnection,
    job_id: &str,
) -> Result<Vec<ArtifactInfo>, sqlx::Error> {
    artifacts_where(conn, job_id, None).await
}

/// Visible artifacts uploaded by one attempt (the success test and `complete.artifacts`).
pub async fn attempt_artifacts(
    conn: &mut MySqlConnection,
    job_id: &str,
    attempt: i32,
) -> Result<Vec<ArtifactInfo>, sqlx::Error> {
    artifacts_where(conn, job_id, Some(attempt)).await
}

async fn artifacts_where(
    conn: &mut MySqlConnection,
    job_id: &str,
    attempt: Option<i32>,
) -> Result<Vec<ArtifactInfo>, sqlx::Error> {
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT name, size, sha256 FROM artifacts WHERE job_id = ? AND (? IS NULL OR attempt = ?) AND hidden = FALSE \
         ORDER BY created_ms, name",
    )
    .bind(job_id)
    .bind(attempt)
    .bind(attempt)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, size, sha256)| ArtifactInfo {
            name,
            size: u64::try_from(size).unwrap_or(0),
            sha256,
        })
        .collect())
}

/// Mint a single-use download token for an artifact. Returns the token (only its hash is kept).
pub async fn mint_download_token(
    conn: &mut MySqlConnection,
    artifact_id: &str,
    ttl_secs: u64,
) -> Result<String, sqlx::Error> {
    let (token, hash) = auth::new_token();
    let now = now_ms();
    let ttl_ms = i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    sqlx::query("INSERT INTO download_tokens (token_hash, artifact_id, created_ms, expires_ms) VALUES (?, ?, ?, ?)")
        .bind(&hash[..])
        .bind(artifact_id)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .execute(conn)
        .await?;
    Ok(token)
}

/// The stored form of an `artifact_ready` event. The dispatcher renders it for each subscriber
/// with a fresh single-use download token (`download_url`, `expires_in_secs`).
pub fn artifact_ready_event(
    job_id: &str,
    artifact_id: &str,
    target: &str,
    name: &str,
    size: u64,
    sha256: &str,
) -> serde_json::Value {
    serde_json::json!({
        "type": "artifact_ready",
        "job_id": job_id,
        "artifact_id": artifact_id,
        "target": target,
        "artifact_name": name,
        "artifact_size": size,
        "sha256": sha256,
    })
}

/// Whether an artifact target is an intermediate bundle hidden from the CLI.
pub fn is_intermediate_target(target: &str) -> bool {
    target.ends_with("-precompiled")
}

/// Storage key of a job's input tarball.
pub fn tarball_key(job_id: &str) -> String {
    format!("tarballs/{job_id}")
}

/// Storage key of an artifact.
pub fn artifact_key(artifact_id: &str) -> String {
    format!("artifacts/{artifact_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_and_intermediates() {
        assert!(state::is_terminal("completed"));
        assert!(state::is_terminal("cancelled"));
        assert!(!state::is_terminal("finishing"));
        assert!(is_intermediate_target("windows-precompiled"));
        assert!(is_intermediate_target("ios-precompiled"));
        assert!(!is_intermediate_target("windows"));
        assert_eq!(tarball_key("j"), "tarballs/j");
    }
}
