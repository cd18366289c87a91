//! new → queued.

use shared::queue::{outbox, Message};
use sqlx::MySqlConnection;

use crate::{Priority, Result, Target};

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
pub async fn submit(conn: &mut MySqlConnection, job: &NewJob<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO jobs (id, license_id, project, original_target, target, stage, state, priority, manifest, credentials_enc, \
         input_key, input_size, input_sha256, idempotency_key, enqueued_ms, created_ms) \
         VALUES (?, ?, ?, ?, ?, 1, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .execute(&mut *conn)
    .await?;
    announce_queued(conn, job.id, job.target, 0, job.priority).await
}

/// Announce that a job (already `queued` in this transaction) waits for a worker.
pub async fn announce_queued(
    conn: &mut MySqlConnection,
    job_id: &str,
    target: &Target,
    attempt: i32,
    priority: Priority,
) -> Result<()> {
    let msg = Message::JobQueued {
        job_id: job_id.to_owned(),
        target: target.as_str().to_owned(),
        attempt,
        priority: priority.0,
    };
    outbox::enqueue(conn, &msg).await.map(|_| ())
}
