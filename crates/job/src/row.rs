//! A job row and the reads every service shares.

use shared::{
    clock::now_ms,
    db::{sql, Dialect, Flag, OptText, Text},
};
use sqlx::AnyConnection;

use crate::{JobState, Priority, SignPlatform, Target};

/// A job row (without the sealed credentials).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    /// Job id (lower-case UUID).
    pub id: String,
    /// The licence that submitted it.
    pub license_id: i64,
    /// The project (`bundle_id`, else `name`).
    pub project: String,
    /// The target the CLI asked for.
    pub original_target: Target,
    /// The queue it is in now (`<x>-sign` in stage 2).
    pub target: Target,
    /// 1 (build) or 2 (signing).
    pub stage: i16,
    /// Where it is in its lifecycle.
    pub state: JobState,
    /// Queue priority.
    pub priority: Priority,
    /// The manifest as submitted (stage 2: `targets` rewritten).
    #[sqlx(try_from = "Text")]
    pub manifest: String,
    /// Storage key of the input (tarball, or the stage-1 bundle).
    pub input_key: Option<String>,
    /// Input size in bytes.
    pub input_size: Option<i64>,
    /// Input SHA-256 (hex).
    pub input_sha256: Option<String>,
    /// Dispatches so far (all stages): the current attempt's number.
    pub attempt: i32,
    /// Requeues after a lost worker in the current stage.
    pub retries: i32,
    /// The worker connection holding the current attempt.
    pub worker_id: Option<String>,
    /// That worker's name (for re-attach).
    pub worker_name: Option<String>,
    /// The dispatcher instance holding that connection.
    pub dispatcher_id: Option<String>,
    /// When the current attempt's lease runs out.
    pub lease_expires_ms: Option<i64>,
    /// A cancel was asked for while a worker held the job.
    #[sqlx(try_from = "Flag")]
    pub cancel_requested: bool,
    /// The worker sent `error` in this attempt.
    #[sqlx(try_from = "Flag")]
    pub error_reported: bool,
    /// Why the job failed: the worker's first `error` message while it runs, the final
    /// message once it ended.
    #[sqlx(try_from = "OptText")]
    pub error_message: Option<String>,
    /// Stage 1's `needs_finishing` (the platform of stage 2).
    pub needs_finishing: Option<String>,
    /// First enqueue (the job's place in its queue).
    pub enqueued_ms: i64,
    /// Events in the job's log so far (the last sequence number given out).
    pub event_seq: i64,
    /// Submission time.
    pub created_ms: i64,
    /// Last assignment.
    pub assigned_ms: Option<i64>,
    /// When it ended.
    pub finished_ms: Option<i64>,
}

/// Columns of [`Job`], for `SELECT`s.
pub const COLUMNS: &str =
    "id, license_id, project, original_target, target, stage, state, priority, manifest, \
    input_key, input_size, input_sha256, attempt, retries, worker_id, worker_name, dispatcher_id, \
    lease_expires_ms, cancel_requested, error_reported, error_message, needs_finishing, enqueued_ms, event_seq, \
    created_ms, assigned_ms, finished_ms";

impl Job {
    /// Seconds since the job was created (for `complete.duration_secs`).
    pub fn duration_secs(&self) -> f64 {
        (now_ms() - self.created_ms).max(0) as f64 / 1000.0
    }
    /// Whether the job is in a terminal state.
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }
    /// Whether a worker holds `attempt` right now.
    pub fn holds(&self, attempt: i32) -> bool {
        self.attempt == attempt && self.state.is_held()
    }
    /// The message of the first `error` the worker of the current attempt sent, if any.
    pub fn worker_error(&self) -> Option<&str> {
        self.error_message
            .as_deref()
            .filter(|m| self.error_reported && !self.is_terminal() && !m.is_empty())
    }
    /// The platform stage 2 signs for, when stage 1 named a valid one.
    pub fn sign_platform(&self) -> Option<SignPlatform> {
        self.needs_finishing
            .as_deref()
            .and_then(SignPlatform::parse)
    }
}

/// Load a job.
pub async fn load(conn: &mut AnyConnection, id: &str) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Load and lock a job for the rest of the transaction.
pub async fn lock(conn: &mut AnyConnection, id: &str) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(&sql(
        Dialect::of(conn),
        &format!("SELECT {COLUMNS} FROM jobs WHERE id = ? FOR UPDATE"),
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// A job row with its sealed signing credentials.
#[derive(sqlx::FromRow)]
struct Sealed {
    #[sqlx(flatten)]
    job: Job,
    credentials_enc: Option<Vec<u8>>,
}

/// [`lock`], also reading the sealed credentials (the dispatcher opens them for `job_assign`):
/// one statement where a lock and a second read would be two.
pub async fn lock_with_credentials(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<(Job, Option<Vec<u8>>)>, sqlx::Error> {
    let row: Option<Sealed> = sqlx::query_as(&sql(
        Dialect::of(conn),
        &format!("SELECT {COLUMNS}, credentials_enc FROM jobs WHERE id = ? FOR UPDATE"),
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.job, r.credentials_enc)))
}

/// Lock a job unless another transaction holds it right now (`SKIP LOCKED`): sweeps running
/// in several replicas never act on the same job, and a job being changed is left for the next
/// round.
pub async fn claim(conn: &mut AnyConnection, id: &str) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(&sql(
        Dialect::of(conn),
        &format!("SELECT {COLUMNS} FROM jobs WHERE id = ? FOR UPDATE SKIP LOCKED"),
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Whether an active job with a valid lease is held by a worker named `name` (possibly by an
/// earlier connection of it).
pub async fn held_by_name(
    conn: &mut AnyConnection,
    id: &str,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM jobs WHERE id = ? AND worker_name = ? \
         AND state IN ('assigned', 'running') AND lease_expires_ms > ?",
    )
    .bind(id)
    .bind(name)
    .bind(shared::clock::now_ms())
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// 1-based place of a queued job in its target's queue (priority, then enqueue time); 0 when
/// the job is not queued.
pub async fn position(conn: &mut AnyConnection, job: &Job) -> Result<u64, sqlx::Error> {
    if job.state != JobState::Queued {
        return Ok(0);
    }
    queue_position(conn, &job.target, &job.id, job.priority, job.enqueued_ms).await
}

/// A job row with its queue position.
#[derive(sqlx::FromRow)]
struct Placed {
    #[sqlx(flatten)]
    job: Job,
    position: i64,
}

/// [`load`] and [`position`] in one statement: the job and its 1-based place in its target's
/// queue (0 unless it is queued).
pub async fn load_with_position(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<(Job, u64)>, sqlx::Error> {
    let row: Option<Placed> =
        sqlx::query_as(&format!(
        "SELECT {COLUMNS}, CASE WHEN state = 'queued' \
         THEN 1 + (SELECT COUNT(*) FROM jobs o WHERE {}) ELSE 0 END AS position FROM jobs WHERE id = ?",
        ahead("jobs.target", "jobs.id", "jobs.priority", "jobs.enqueued_ms")
    ))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| (r.job, u64::try_from(r.position).unwrap_or(0))))
}

/// The condition on `jobs o` for a queued job ahead of the job with these fields (columns or
/// placeholders, bound in the order target, id, priority, priority, enqueued, enqueued, id):
/// higher priority first, then earlier enqueue, then id. The one statement of queue order for
/// [`queue_position`] and [`load_with_position`].
fn ahead(target: &str, id: &str, priority: &str, enqueued: &str) -> String {
    format!(
        "o.state = 'queued' AND o.target = {target} AND o.id <> {id} AND (o.priority > {priority} \
         OR (o.priority = {priority} AND (o.enqueued_ms < {enqueued} \
         OR (o.enqueued_ms = {enqueued} AND o.id < {id}))))"
    )
}

/// The 1-based place in its target's queue of a queued job with these fields (what
/// [`position`] answers, for a caller that has the fields without the row).
pub async fn queue_position(
    conn: &mut AnyConnection,
    target: &Target,
    id: &str,
    priority: Priority,
    enqueued_ms: i64,
) -> Result<u64, sqlx::Error> {
    let before: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM jobs o WHERE {}",
        ahead("?", "?", "?", "?")
    ))
    .bind(target)
    .bind(id)
    .bind(priority)
    .bind(priority)
    .bind(enqueued_ms)
    .bind(enqueued_ms)
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(before).unwrap_or(0) + 1)
}
