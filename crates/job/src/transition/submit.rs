//! new → queued.

use shared::queue::{outbox, Message};
use sqlx::AnyConnection;

use crate::{JobState, Priority, Result, Target};

/// A job as submitted.
#[derive(Debug)]
pub struct NewJob<'a> {
    /// Its id (lower-case UUID).
    pub id: &'a str,
    /// The submitting licence.
    pub license_id: i64,
    /// The project it binds (`bundle_id`, else `name`).
    pub project: &'a str,
    /// The one target.
    pub target: &'a Target,
    /// Queue priority of the licence's tier.
    pub priority: Priority,
    /// The manifest as sent.
    pub manifest: &'a str,
    /// Sealed signing credentials.
    pub credentials_enc: Option<Vec<u8>>,
    /// Storage key, size and SHA-256 of the tarball.
    pub input: (&'a str, i64, &'a str),
    /// The client's idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// Submission time.
    pub now_ms: i64,
}

/// Create the job `queued` and announce it. A duplicate idempotency key fails with the
/// database's unique violation, for the caller to answer with the first job.
#[tracing::instrument(skip_all, fields(job_id = %job.id, target = %job.target))]
pub async fn submit(conn: &mut AnyConnection, job: &NewJob<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO jobs (id, license_id, project, original_target, target, stage, state, priority, manifest, credentials_enc, \
         input_key, input_size, input_sha256, idempotency_key, enqueued_ms, created_ms, sealed_credentials) \
         VALUES (?, ?, ?, ?, ?, 1, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(job.id)
    .bind(job.license_id)
    .bind(job.project)
    .bind(job.target)
    .bind(job.target)
    .bind(job.priority)
    .bind(job.manifest)
    .bind(job.credentials_enc.as_deref())
    .bind(job.input.0)
    .bind(job.input.1)
    .bind(job.input.2)
    .bind(job.idempotency_key)
    .bind(job.now_ms)
    .bind(job.now_ms)
    .bind(job.credentials_enc.is_some())
    .execute(&mut *conn)
    .await?;
    announce_queued(conn, job.id, job.target, 0, job.priority).await
}

/// Announce that a job (already `queued` in this transaction) waits for a worker.
pub async fn announce_queued(
    conn: &mut AnyConnection,
    job_id: &str,
    target: &Target,
    attempt: i32,
    priority: Priority,
) -> Result<()> {
    announce_queued_at(conn, job_id, target, attempt, priority, None).await
}

/// [`announce_queued`], published no earlier than `not_before_ms` when it is given.
pub(crate) async fn announce_queued_at(
    conn: &mut AnyConnection,
    job_id: &str,
    target: &Target,
    attempt: i32,
    priority: Priority,
    not_before_ms: Option<i64>,
) -> Result<()> {
    let msg = Message::JobQueued {
        job_id: job_id.to_owned(),
        target: target.as_str().to_owned(),
        attempt,
        priority: priority.0,
    };
    outbox::enqueue_at(conn, &msg, not_before_ms)
        .await
        .map(|_| ())
}

/// Announce a `queued` job again, as it was announced (a requeued job keeps its place one
/// priority level up): for a job whose message the broker no longer holds. A copy of a message
/// that still exists is harmless: the first consumer to claim the job wins, the other finds it
/// taken.
pub async fn announce_again(conn: &mut AnyConnection, job: &crate::Job) -> Result<()> {
    let priority = if job.retries > 0 {
        job.priority.requeued()
    } else {
        job.priority
    };
    announce_queued(conn, &job.id, &job.target, job.attempt, priority).await
}

/// A finished build of another server, recorded as history: terminal from the start, counted,
/// never queued and without artifacts or events.
#[derive(Debug)]
pub struct FinishedJob<'a> {
    /// Its id (at most 36 characters).
    pub id: &'a str,
    /// SHA-256 of the licence key that ran it (the licence must exist).
    pub license_key_hash: &'a [u8],
    /// What it built.
    pub target: &'a Target,
    /// Completed, failed or cancelled.
    pub state: JobState,
    /// Queue priority of its tier.
    pub priority: Priority,
    /// A manifest describing it.
    pub manifest: &'a str,
    /// Dispatches it had (0 or 1).
    pub attempt: i32,
    /// The worker that ran it.
    pub worker_name: Option<&'a str>,
    /// Why it failed.
    pub error_message: Option<&'a str>,
    /// When it was queued, started and finished.
    pub times: (i64, Option<i64>, i64),
}

/// new → completed/failed/cancelled, for imported history. Returns the rows written (0 when the
/// licence is unknown). A state that is not terminal is refused, so history never becomes work.
pub async fn record_finished(
    conn: &mut AnyConnection,
    job: &FinishedJob<'_>,
) -> std::result::Result<u64, sqlx::Error> {
    if !job.state.is_terminal() {
        return Err(sqlx::Error::Protocol(format!(
            "imported job {} must be finished, not {}",
            job.id, job.state
        )));
    }
    let (enqueued_ms, started_ms, finished_ms) = job.times;
    let done = sqlx::query(
        "INSERT INTO jobs (id, license_id, project, original_target, target, stage, state, \
         priority, manifest, attempt, worker_name, error_message, usage_counted, enqueued_ms, \
         created_ms, started_ms, finished_ms) \
         SELECT ?, id, '', ?, ?, 1, ?, ?, ?, ?, ?, ?, TRUE, ?, ?, ?, ? FROM licenses WHERE key_hash = ?",
    )
    .bind(job.id)
    .bind(job.target)
    .bind(job.target)
    .bind(job.state)
    .bind(job.priority)
    .bind(job.manifest)
    .bind(job.attempt)
    .bind(job.worker_name)
    .bind(job.error_message)
    .bind(enqueued_ms)
    .bind(enqueued_ms)
    .bind(started_ms)
    .bind(finished_ms)
    .bind(job.license_key_hash)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
