//! assigned/running → queued (or failed): the worker holding the attempt is gone.

use protocol::Outgoing;
use shared::{clock::now_ms, metrics};
use sqlx::AnyConnection;

use crate::{
    event, lock, position,
    transition::{fail, submit::announce_queued_at, Unsuccessful},
    JobState, Result, MAX_RETRIES,
};

/// What [`requeue_lost`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostOutcome {
    /// Queued again with one more retry.
    Requeued,
    /// Out of retries (or cancelled, or its build had already failed): ended.
    Failed,
    /// The job was not held at that attempt (already handled).
    Unchanged,
}

/// The worker holding `attempt` of a job is gone: requeue it (retries + 1, token revoked, the
/// CLI told with a `queue_update`, one priority level above its tier so it keeps its place) or,
/// after [`MAX_RETRIES`], fail it. A cancelled job ends cancelled; a build whose worker had
/// already reported an error ends failed without a retry.
#[tracing::instrument(skip_all, fields(job_id, attempt))]
pub async fn requeue_lost(
    conn: &mut AnyConnection,
    job_id: &str,
    attempt: i32,
    why: &str,
) -> Result<LostOutcome> {
    let Some(job) = lock(conn, job_id).await? else {
        return Ok(LostOutcome::Unchanged);
    };
    if !job.holds(attempt) {
        return Ok(LostOutcome::Unchanged);
    }
    metrics::get().lease_expiries.inc();
    if job.cancel_requested {
        fail(conn, &job, Unsuccessful::Cancelled, "Build cancelled").await?;
        return Ok(LostOutcome::Failed);
    }
    if job.error_reported {
        let msg = match job.worker_error() {
            Some(why) => {
                format!("Build failed: {why} (the worker disconnected after reporting it)")
            }
            None => "Build failed (the worker disconnected after reporting an error)".to_owned(),
        };
        fail(conn, &job, Unsuccessful::Failed, &msg).await?;
        return Ok(LostOutcome::Failed);
    }
    let exhausted = format!(
        "Build failed after {} attempts (workers kept disconnecting)",
        job.retries + 1
    );
    requeue_locked(conn, &job, why, &exhausted, 0).await
}

/// The worker reported a successful build with artifacts (or a stage-1 bundle), but none
/// reached the hub: its uploads failed on the way or on the hub's side, and workers do not
/// retry them. Build it again within the attempt cap rather than failing a healthy build for
/// an infrastructure fault; a worker that never uploads ends failed after the last attempt.
/// The new attempt is offered after a pause that grows with each retry
/// ([`LOST_UPLOAD_PAUSE_MS`] times the retry), so a short outage of ingest does not use up the
/// attempts of a build that takes seconds. Runs with the job locked at the attempt that just
/// ended.
#[tracing::instrument(skip_all, fields(job_id = %job.id, attempt = job.attempt))]
pub async fn retry_lost_upload(
    conn: &mut AnyConnection,
    job: &crate::Job,
    what: &str,
) -> Result<LostOutcome> {
    let exhausted = format!("{what} in {} attempts: build failed", job.retries + 1);
    let pause_ms = LOST_UPLOAD_PAUSE_MS * i64::from(job.retries + 1);
    requeue_locked(conn, job, what, &exhausted, pause_ms).await
}

/// The pause before a build whose uploads never arrived is offered again, per retry so far.
pub const LOST_UPLOAD_PAUSE_MS: i64 = 5_000;

/// Queue a locked job's attempt again with one more retry, offered to workers after `pause_ms`,
/// or fail it with `exhausted` after [`MAX_RETRIES`].
async fn requeue_locked(
    conn: &mut AnyConnection,
    job: &crate::Job,
    why: &str,
    exhausted: &str,
    pause_ms: i64,
) -> Result<LostOutcome> {
    let job_id = job.id.as_str();
    if job.retries >= MAX_RETRIES {
        fail(conn, job, Unsuccessful::Failed, exhausted).await?;
        return Ok(LostOutcome::Failed);
    }
    sqlx::query(
        "UPDATE jobs SET state = 'queued', retries = retries + 1, queued_ms = ?, token_hash = NULL, worker_id = NULL, \
         worker_name = NULL, dispatcher_id = NULL, lease_expires_ms = NULL, error_reported = FALSE WHERE id = ?",
    )
    .bind(now_ms())
    .bind(job_id)
    .execute(&mut *conn)
    .await?;
    metrics::get().retries.inc();
    let mut requeued = job.clone();
    requeued.state = JobState::Queued;
    let pos = position(conn, &requeued).await?;
    let mut message = format!("{why}, re-queued (attempt {})", job.retries + 2);
    if pause_ms > 0 {
        message.push_str(&format!(", offered to workers in {} s", pause_ms / 1000));
    }
    let update = Outgoing::QueueUpdate {
        job_id: job_id.to_owned(),
        position: pos,
        message,
        estimated_wait_secs: None,
    };
    event::emit(conn, job_id, update).await?;
    let not_before = (pause_ms > 0).then(|| now_ms() + pause_ms);
    announce_queued_at(
        conn,
        job_id,
        &job.target,
        job.attempt,
        job.priority.requeued(),
        not_before,
    )
    .await?;
    Ok(LostOutcome::Requeued)
}
