//! assigned/running → failed: the attempt ran past its stage's time limit (DEC-16).

use shared::queue::{outbox, Message};
use sqlx::AnyConnection;

use crate::{
    transition::{fail, Unsuccessful},
    Job, Result,
};

/// The current attempt ran longer than its stage allows: the job fails with `message` (the
/// CLI gets `error` unless the worker already sent one, then `complete{success:false}`), or
/// ends cancelled when a cancel was already asked for. The dispatcher holding the worker is
/// asked to send it `cancel`; the worker's own `complete` (or its disconnect) then frees the
/// slot. `job` must be locked. Returns false when no worker held it.
#[tracing::instrument(skip_all, fields(job_id = %job.id, attempt = job.attempt))]
pub async fn time_out(conn: &mut AnyConnection, job: &Job, message: &str) -> Result<bool> {
    if !job.state.is_held() {
        return Ok(false);
    }
    if job.cancel_requested {
        fail(conn, job, Unsuccessful::Cancelled, "Build cancelled").await?;
    } else {
        sqlx::query("UPDATE jobs SET failure_kind = 'timeout' WHERE id = ?")
            .bind(&job.id)
            .execute(&mut *conn)
            .await?;
        fail(conn, job, Unsuccessful::Failed, message).await?;
    }
    let cancel = Message::CancelJob {
        job_id: job.id.clone(),
        attempt: job.attempt,
    };
    outbox::enqueue(conn, &cancel).await?;
    Ok(true)
}
