//! queued → assigned → running, and the lease of a held attempt.

use protocol::Outgoing;
use shared::{auth, clock::now_ms, db::Dialect};
use sqlx::AnyConnection;

use crate::{event, Job, Result};

/// Who takes a job.
#[derive(Debug)]
pub struct Assignment<'a> {
    /// Worker connection id.
    pub worker_id: &'a str,
    /// Worker name (for re-attach after a reconnect).
    pub worker_name: &'a str,
    /// The dispatcher instance holding the connection.
    pub dispatcher_id: &'a str,
    /// Lease length.
    pub lease_ms: i64,
}

/// queued → assigned: the next attempt, a fresh job token and a lease; the CLI is told its
/// position is 0. `job` must be locked and `queued`. Returns the token (only its hash is kept)
/// and the new attempt number.
#[tracing::instrument(skip_all, fields(job_id = %job.id, worker = %to.worker_name))]
pub async fn assign(
    conn: &mut AnyConnection,
    job: &Job,
    to: &Assignment<'_>,
) -> Result<Option<(String, i32)>> {
    let (token, hash) = auth::new_token();
    let now = now_ms();
    let attempt = job.attempt + 1;
    let res = sqlx::query(&format!(
        "UPDATE jobs SET state = 'assigned', attempt = ?, token_hash = ?, worker_id = ?, worker_name = ?, dispatcher_id = ?, \
         lease_expires_ms = ?, assigned_ms = ?, error_reported = FALSE, {} WHERE id = ? AND state = 'queued' AND attempt = ?",
        event::next_seq(Dialect::of(conn))
    ))
    .bind(attempt)
    .bind(&hash[..])
    .bind(to.worker_id)
    .bind(to.worker_name)
    .bind(to.dispatcher_id)
    .bind(now + to.lease_ms)
    .bind(now)
    .bind(&job.id)
    .bind(job.attempt)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() == 0 {
        return Ok(None);
    }
    let seq = event::reserved(conn, &res, &job.id).await?;
    // One row per dispatch, for operators (the job row keeps only the current attempt).
    sqlx::query(
        "INSERT INTO job_attempts (job_id, attempt, stage, target, worker_id, worker_name, dispatcher_id, assigned_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&job.id)
    .bind(attempt)
    .bind(job.stage)
    .bind(&job.target)
    .bind(to.worker_id)
    .bind(to.worker_name)
    .bind(to.dispatcher_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let update = Outgoing::QueueUpdate {
        job_id: job.id.clone(),
        position: 0,
        message: "Assigned to a build worker".into(),
        estimated_wait_secs: None,
    };
    event::append_reserved(conn, &job.id, seq, &update.into()).await?;
    Ok(Some((token, attempt)))
}

/// assigned → running for `attempt` (the tarball was fetched, an artifact or a frame arrived).
/// A no-op when already running or superseded. Returns whether it changed the job.
pub async fn start(
    conn: &mut AnyConnection,
    job_id: &str,
    attempt: i32,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE jobs SET state = 'running', started_ms = COALESCE(started_ms, ?) \
         WHERE id = ? AND attempt = ? AND state = 'assigned'",
    )
    .bind(now_ms())
    .bind(job_id)
    .bind(attempt)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// The worker of the current attempt sent `error` (A7): a later `complete{success:true}`
/// yields `failed`, and a lost worker is not retried. The worker's message is kept as the
/// reason (the first one wins; at most [`MAX_REASON_CHARS`] characters).
pub async fn report_error(
    conn: &mut AnyConnection,
    job_id: &str,
    attempt: i32,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET error_reported = TRUE, failure_kind = 'build', error_message = COALESCE(error_message, ?) \
         WHERE id = ? AND attempt = ? AND state IN ('assigned', 'running')",
    )
    .bind(Some(reason(message)).filter(|m| !m.is_empty()))
    .bind(job_id)
    .bind(attempt)
    .execute(conn)
    .await?;
    Ok(())
}

/// Longest failure reason stored (a worker's message is untrusted and unbounded).
pub const MAX_REASON_CHARS: usize = 2000;

/// `message` trimmed and cut to [`MAX_REASON_CHARS`] characters.
pub fn reason(message: &str) -> &str {
    let message = message.trim();
    match message.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => &message[..cut],
        None => message,
    }
}

/// Extend the leases of the jobs a live worker connection holds, until `until_ms`.
pub async fn renew_leases(
    conn: &mut AnyConnection,
    worker_id: &str,
    job_ids: &[String],
    until_ms: i64,
) -> Result<(), sqlx::Error> {
    if job_ids.is_empty() {
        return Ok(());
    }
    let marks = vec!["?"; job_ids.len()].join(", ");
    let sql = format!(
        "UPDATE jobs SET lease_expires_ms = ? WHERE worker_id = ? AND state IN ('assigned', 'running') AND id IN ({marks})"
    );
    let mut q = sqlx::query(&sql).bind(until_ms).bind(worker_id);
    for id in job_ids {
        q = q.bind(id);
    }
    q.execute(conn).await?;
    Ok(())
}

/// A worker connection is gone: its jobs' leases end by `until_ms` at the latest (the re-attach
/// window), unless already shorter, and each job's subscribers are told it waits for the worker.
pub async fn shorten_leases(
    conn: &mut AnyConnection,
    worker_id: &str,
    held: &[(String, i32)],
    until_ms: i64,
) -> Result<()> {
    let wait_secs = ((until_ms - now_ms()).max(0) + 999) / 1000;
    for (job_id, attempt) in held {
        let shortened = sqlx::query(
            "UPDATE jobs SET lease_expires_ms = CASE WHEN lease_expires_ms < ? \
             THEN lease_expires_ms ELSE ? END \
             WHERE id = ? AND attempt = ? AND worker_id = ? AND state IN ('assigned', 'running')",
        )
        .bind(until_ms)
        .bind(until_ms)
        .bind(job_id)
        .bind(attempt)
        .bind(worker_id)
        .execute(&mut *conn)
        .await?;
        if shortened.rows_affected() > 0 {
            // The CLI would otherwise hear nothing until the job is re-attached or requeued.
            let note = Outgoing::Log {
                job_id: job_id.clone(),
                stage: "build".into(),
                line: format!(
                    "The build worker disconnected; waiting up to {wait_secs} s for it to \
                     reconnect before the build is retried"
                ),
                stream: "stderr".into(),
            };
            event::emit(conn, job_id, note).await?;
        }
    }
    Ok(())
}

/// End the lease of `attempt` now, so the reaper requeues (or fails) the job: used when an
/// outcome could not be recorded.
pub async fn expire_lease(
    conn: &mut AnyConnection,
    job_id: &str,
    attempt: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET lease_expires_ms = ? WHERE id = ? AND attempt = ? AND state IN ('assigned', 'running')",
    )
    .bind(now_ms())
    .bind(job_id)
    .bind(attempt)
    .execute(conn)
    .await?;
    Ok(())
}

/// A dispatcher whose heartbeat (`dispatchers.last_seen_ms`, written every 2 s) is older than
/// this is gone: killed, or cut off from MySQL. Its worker connections count as closed.
pub const DISPATCHER_STALE_MS: i64 = 10_000;

/// A reconnected worker (same name) claims a job it held before (A18): possible while the
/// lease is valid and the previous connection is gone: closed, silent since `silent_since_ms`,
/// or on a dispatcher whose heartbeat is older than `dispatcher_alive_since_ms` (killed or cut
/// off). A live connection keeps its job (D8). Returns the attempt re-attached.
#[tracing::instrument(skip_all, fields(job_id, worker = to.worker_name))]
pub async fn reattach(
    conn: &mut AnyConnection,
    job_id: &str,
    to: &Assignment<'_>,
    silent_since_ms: i64,
    dispatcher_alive_since_ms: i64,
) -> Result<Option<i32>, sqlx::Error> {
    let now = now_ms();
    let res = sqlx::query(
        "UPDATE jobs SET worker_id = ?, dispatcher_id = ?, lease_expires_ms = ? \
         WHERE id = ? AND worker_name = ? AND state IN ('assigned', 'running') AND lease_expires_ms > ? \
         AND NOT EXISTS (SELECT 1 FROM workers w JOIN dispatchers d ON d.id = w.dispatcher_id \
                         WHERE w.id = jobs.worker_id AND w.id <> ? \
                         AND w.disconnected_ms IS NULL AND w.last_seen_ms > ? AND d.last_seen_ms > ?)",
    )
    .bind(to.worker_id)
    .bind(to.dispatcher_id)
    .bind(now + to.lease_ms)
    .bind(job_id)
    .bind(to.worker_name)
    .bind(now)
    .bind(to.worker_id)
    .bind(silent_since_ms)
    .bind(dispatcher_alive_since_ms)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() == 0 {
        return Ok(None);
    }
    let attempt: i32 = sqlx::query_scalar("SELECT attempt FROM jobs WHERE id = ?")
        .bind(job_id)
        .fetch_one(conn)
        .await?;
    Ok(Some(attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed_and_cut_on_a_character_boundary() {
        assert_eq!(reason("  Compilation failed\n"), "Compilation failed");
        let long = "é".repeat(MAX_REASON_CHARS + 10);
        assert_eq!(reason(&long).chars().count(), MAX_REASON_CHARS);
    }
}
