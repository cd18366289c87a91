//! failed → queued: an operator runs a failed job again (issue 17).

use protocol::Outgoing;
use shared::clock::now_ms;
use sqlx::AnyConnection;

use crate::{event, position, transition::announce_queued, JobState, Result};

/// Why [`requeue_failed`] left a job alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRequeued {
    /// Only a failed job can be run again.
    NotFailed(JobState),
    /// It was submitted with signing credentials, which were discarded when it failed (or that
    /// is not known, for a job older than the record of it): running it again would build it
    /// unsigned.
    CredentialsDiscarded,
}

/// failed → queued in the same stage with the same input: retries, lease, worker and error
/// cleared, the CLI told with a `queue_update`, and the job announced to its target's queue
/// again. `job` must be locked; the caller checks that the input is still stored.
#[tracing::instrument(skip_all, fields(job_id = %job.id))]
pub async fn requeue_failed(
    conn: &mut AnyConnection,
    job: &crate::Job,
) -> Result<std::result::Result<(), NotRequeued>> {
    if job.state != JobState::Failed {
        return Ok(Err(NotRequeued::NotFailed(job.state)));
    }
    let sealed: Option<shared::db::Flag> =
        sqlx::query_scalar("SELECT sealed_credentials FROM jobs WHERE id = ?")
            .bind(&job.id)
            .fetch_one(&mut *conn)
            .await?;
    let sealed = sealed.map(bool::from);
    if sealed != Some(false) {
        return Ok(Err(NotRequeued::CredentialsDiscarded));
    }
    let done = sqlx::query(
        "UPDATE jobs SET state = 'queued', retries = 0, queued_ms = ?, finished_ms = NULL, token_hash = NULL, \
         worker_id = NULL, worker_name = NULL, dispatcher_id = NULL, lease_expires_ms = NULL, \
         cancel_requested = FALSE, error_reported = FALSE, error_message = NULL, failure_kind = NULL \
         WHERE id = ? AND state = 'failed'",
    )
    .bind(now_ms())
    .bind(&job.id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(Err(NotRequeued::NotFailed(job.state)));
    }
    let mut queued = job.clone();
    queued.state = JobState::Queued;
    let pos = position(conn, &queued).await?;
    let update = Outgoing::QueueUpdate {
        job_id: job.id.clone(),
        position: pos,
        message: "Re-queued by an operator".into(),
        estimated_wait_secs: None,
    };
    event::emit(conn, &job.id, update).await?;
    announce_queued(conn, &job.id, &job.target, job.attempt, job.priority).await?;
    Ok(Ok(()))
}
