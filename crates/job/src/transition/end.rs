//! How a job leaves a worker: stage-1 hand-over, stage 2, completion, failure and cancel.

use protocol::{ArtifactInfo, Outgoing};
use shared::{
    clock::now_ms,
    db::Dialect,
    metrics,
    queue::{outbox, Message},
};
use sqlx::AnyConnection;

use crate::{
    event,
    transition::{announce_queued, dispatch::reason},
    Event, Job, JobState, Result, SignPlatform, Target,
};

/// How an unsuccessful job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsuccessful {
    /// The build failed (or could not run).
    Failed,
    /// Someone cancelled it.
    Cancelled,
}

impl Unsuccessful {
    fn state(self) -> JobState {
        match self {
            Self::Failed => JobState::Failed,
            Self::Cancelled => JobState::Cancelled,
        }
    }
}

/// Any active state → failed or cancelled: `error` (unless the worker already reported one, or
/// the job was cancelled) then `complete{success:false}` to the CLI; credentials, token and
/// lease dropped. `message` is kept as the job's error (cut to
/// [`MAX_REASON_CHARS`](super::MAX_REASON_CHARS) characters). A terminal job is left alone.
#[tracing::instrument(skip_all, fields(job_id = %job.id, outcome = ?outcome))]
pub async fn fail(
    conn: &mut AnyConnection,
    job: &Job,
    outcome: Unsuccessful,
    message: &str,
) -> Result<()> {
    if job.is_terminal() {
        return Ok(());
    }
    let state = outcome.state();
    sqlx::query(
        "UPDATE jobs SET state = ?, finished_ms = ?, error_message = ?, credentials_enc = NULL, token_hash = NULL, \
         lease_expires_ms = NULL WHERE id = ?",
    )
    .bind(state)
    .bind(now_ms())
    .bind(reason(message))
    .bind(&job.id)
    .execute(&mut *conn)
    .await?;
    // A cancelled job ends with `complete{success:false}` only (§5.1); the worker's own
    // "Build cancelled" error, if any, was already relayed.
    if !job.error_reported && outcome == Unsuccessful::Failed {
        let frame = Outgoing::Error {
            job_id: Some(job.id.clone()),
            code: "INTERNAL_ERROR".into(),
            message: reason(message).to_owned(),
            stage: None,
        };
        event::emit(conn, &job.id, frame).await?;
    }
    event::append(
        conn,
        &job.id,
        &Event::failed_complete(&job.id, job.duration_secs()),
    )
    .await?;
    count_finished(job, state);
    Ok(())
}

/// [`fail`] because of the build itself (the worker reported failure), not the hub.
pub async fn fail_build(
    conn: &mut AnyConnection,
    job: &Job,
    outcome: Unsuccessful,
    message: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET failure_kind = 'build' WHERE id = ? AND state IN ('assigned', 'running')",
    )
    .bind(&job.id)
    .execute(&mut *conn)
    .await?;
    fail(conn, job, outcome, message).await
}

/// running → completed with this attempt's artifacts: credentials, token and lease dropped,
/// the final `complete` sent. Returns true when this call is the one that completed the job
/// (the caller then counts the publish, once).
#[tracing::instrument(skip_all, fields(job_id = %job.id))]
pub async fn complete(
    conn: &mut AnyConnection,
    job: &Job,
    artifacts: Vec<ArtifactInfo>,
) -> Result<bool> {
    let counted = sqlx::query(&format!(
        "UPDATE jobs SET state = 'completed', finished_ms = ?, credentials_enc = NULL, token_hash = NULL, \
         lease_expires_ms = NULL, usage_counted = TRUE, {} WHERE id = ? AND usage_counted = FALSE \
         AND state IN ('assigned', 'running')",
        event::next_seq(Dialect::of(conn))
    ))
    .bind(now_ms())
    .bind(&job.id)
    .execute(&mut *conn)
    .await?;
    if counted.rows_affected() == 0 {
        return Ok(false);
    }
    let seq = event::reserved(conn, &counted, &job.id).await?;
    let frame = Outgoing::Complete {
        job_id: job.id.clone(),
        success: true,
        duration_secs: job.duration_secs(),
        artifacts,
    };
    event::append_reserved(conn, &job.id, seq, &frame.into()).await?;
    count_finished(job, JobState::Completed);
    Ok(true)
}

/// running → finishing: stage 1 uploaded its bundle; the slot and token are released and the
/// finisher is asked to queue stage 2 (§5.4).
#[tracing::instrument(skip_all, fields(job_id = %job.id, platform = platform.as_str()))]
pub async fn hand_over(conn: &mut AnyConnection, job: &Job, platform: SignPlatform) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'finishing', needs_finishing = ?, token_hash = NULL, lease_expires_ms = NULL, \
         worker_id = NULL WHERE id = ? AND state IN ('assigned', 'running')",
    )
    .bind(platform.as_str())
    .bind(&job.id)
    .execute(&mut *conn)
    .await?;
    let msg = Message::StageFinished {
        job_id: job.id.clone(),
        attempt: job.attempt,
    };
    outbox::enqueue(conn, &msg).await?;
    Ok(())
}

/// Stage 2 of a job, ready to queue.
#[derive(Debug)]
pub struct StageTwo {
    /// The signing queue.
    pub sign_target: Target,
    /// The manifest with `targets` rewritten.
    pub manifest: String,
    /// The bundle: storage key, size and SHA-256.
    pub bundle: (String, i64, String),
}

/// finishing → queued as stage 2, retries reset, the CLI told `stage{signing}`.
#[tracing::instrument(skip_all, fields(job_id = %job.id, target = %next.sign_target))]
pub async fn queue_stage_two(conn: &mut AnyConnection, job: &Job, next: &StageTwo) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET stage = 2, target = ?, manifest = ?, input_key = ?, input_size = ?, input_sha256 = ?, \
         retries = 0, state = 'queued', queued_ms = ?, token_hash = NULL, worker_id = NULL, worker_name = NULL, \
         dispatcher_id = NULL, lease_expires_ms = NULL, error_reported = FALSE WHERE id = ? AND state = 'finishing'",
    )
    .bind(&next.sign_target)
    .bind(&next.manifest)
    .bind(&next.bundle.0)
    .bind(next.bundle.1)
    .bind(&next.bundle.2)
    .bind(now_ms())
    .bind(&job.id)
    .execute(&mut *conn)
    .await?;
    let stage = Outgoing::Stage {
        job_id: job.id.clone(),
        stage: "signing".into(),
        message: "Routing to platform worker for signing and packaging...".into(),
    };
    event::emit(conn, &job.id, stage).await?;
    announce_queued(conn, &job.id, &next.sign_target, job.attempt, job.priority).await
}

/// What [`cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The job was waiting: it is cancelled now.
    Now,
    /// A worker holds it: it was flagged and the worker will be sent `cancel`.
    Requested,
    /// Already ending or ended: nothing changed.
    Unchanged,
}

/// Cancel (§5.3): a waiting job ends now; a running one is flagged and its worker told (through
/// the dispatcher holding it). `job` must be locked.
#[tracing::instrument(skip_all, fields(job_id = %job.id))]
pub async fn cancel(conn: &mut AnyConnection, job: &Job) -> Result<Cancelled> {
    match job.state {
        JobState::Queued | JobState::Finishing => {
            fail(conn, job, Unsuccessful::Cancelled, "Build cancelled").await?;
            Ok(Cancelled::Now)
        }
        JobState::Assigned | JobState::Running if !job.cancel_requested => {
            sqlx::query("UPDATE jobs SET cancel_requested = TRUE WHERE id = ?")
                .bind(&job.id)
                .execute(&mut *conn)
                .await?;
            let msg = Message::CancelJob {
                job_id: job.id.clone(),
                attempt: job.attempt,
            };
            outbox::enqueue(conn, &msg).await?;
            Ok(Cancelled::Requested)
        }
        _ => Ok(Cancelled::Unchanged),
    }
}

fn count_finished(job: &Job, state: JobState) {
    let m = metrics::get();
    m.jobs_finished
        .get_or_create(&metrics::label("state", state.as_str()))
        .inc();
    let labels = vec![
        ("target".to_owned(), job.original_target.as_str().to_owned()),
        ("outcome".to_owned(), state.as_str().to_owned()),
    ];
    m.build_duration_seconds
        .get_or_create(&labels)
        .observe(job.duration_secs());
}
