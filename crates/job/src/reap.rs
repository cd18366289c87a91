//! Finding jobs whose worker is gone, and queueing them again (DEC-32). Any service may run it:
//! the finisher's reaper does in each round, and every dispatcher does too, so recovery never
//! waits for one service (issue 12). Each job is claimed with `FOR UPDATE SKIP LOCKED` and
//! checked again under its lock, so replicas running it together act on a job once.

use shared::clock::now_ms;
use sqlx::AnyPool;

use crate::{
    claim,
    transition::{self, LostOutcome, DISPATCHER_STALE_MS},
    Job, Result,
};

/// Re-attach window assumed for a dispatcher that has not recorded its own.
const DEFAULT_REATTACH_MS: i64 = 10_000;

/// Jobs looked at per call (the rest wait for the next round).
const BATCH: i64 = 200;

/// A job found lost.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Lost {
    /// The job.
    pub id: String,
    /// The attempt that was lost.
    pub attempt: i32,
    /// The connection that held it.
    pub worker_id: Option<String>,
    /// Its worker's dispatcher stopped beating longer ago than its re-attach window: nobody is
    /// left to shorten or renew the lease.
    #[sqlx(try_from = "shared::db::Flag")]
    pub abandoned: bool,
}

/// What [`requeue_lost`] did to one job.
#[derive(Debug)]
pub struct Reaped {
    /// The job as found.
    pub lost: Lost,
    /// Requeued or failed.
    pub outcome: LostOutcome,
    /// Retries before this one.
    pub retries: i32,
}

/// Jobs whose worker is gone: leases that expired (a dispatcher renews leases while its worker
/// is connected and keeps a disconnected worker's jobs for the re-attach window), and jobs held
/// on a dispatcher that died, once it has been silent for the stale window plus its re-attach
/// window. A lease that lapsed while its worker is still connected to a live dispatcher (MySQL
/// was unreachable longer than the lease, so nobody could renew it) is left for that dispatcher
/// to renew: the build is healthy.
pub async fn find_lost(pool: &AnyPool) -> Result<Vec<Lost>> {
    let now = now_ms();
    let alive_since = now - DISPATCHER_STALE_MS;
    Ok(sqlx::query_as(
        "SELECT j.id, j.attempt, j.worker_id, \
                COALESCE(w.disconnected_ms IS NULL AND d.last_seen_ms < ? - COALESCE(d.reattach_ms, ?), FALSE) AS abandoned \
         FROM jobs j \
         LEFT JOIN workers w ON w.id = j.worker_id \
         LEFT JOIN dispatchers d ON d.id = w.dispatcher_id \
         WHERE j.state IN ('assigned', 'running') AND ( \
             (j.lease_expires_ms < ? AND NOT (w.disconnected_ms IS NULL AND COALESCE(d.last_seen_ms, 0) > ?)) \
             OR (w.disconnected_ms IS NULL AND d.last_seen_ms < ? - COALESCE(d.reattach_ms, ?))) \
         ORDER BY j.lease_expires_ms LIMIT ?",
    )
    .bind(alive_since)
    .bind(DEFAULT_REATTACH_MS)
    .bind(now)
    .bind(alive_since)
    .bind(alive_since)
    .bind(DEFAULT_REATTACH_MS)
    .bind(BATCH)
    .fetch_all(pool)
    .await?)
}

/// Find the lost jobs and requeue (or fail) each: with one more retry, or failed after the
/// last. A build that had already failed (the worker sent `error`) is never retried.
pub async fn requeue_lost(pool: &AnyPool) -> Result<Vec<Reaped>> {
    let mut done = Vec::new();
    for lost in find_lost(pool).await? {
        // Replicas requeueing neighbouring jobs can deadlock on index locks: run it again.
        let mut tries = 0;
        let changed = loop {
            tries += 1;
            match requeue_one(pool, &lost).await {
                Err(crate::Error::Db(e)) if tries < 3 && shared::db::is_deadlock(&e) => continue,
                other => break other?,
            }
        };
        if let Some((outcome, job)) = changed {
            let abandoned = lost.abandoned;
            match outcome {
                LostOutcome::Requeued => {
                    tracing::info!(job_id = %lost.id, attempt = lost.attempt, abandoned, retries = job.retries + 1, "worker gone; job requeued")
                }
                LostOutcome::Failed => {
                    tracing::warn!(job_id = %lost.id, attempt = lost.attempt, abandoned, retries = job.retries, "worker gone; job failed")
                }
                LostOutcome::Unchanged => continue,
            }
            done.push(Reaped {
                lost,
                outcome,
                retries: job.retries,
            });
        }
    }
    Ok(done)
}

/// Requeue (or fail) one lost job, unless another replica has it right now or it changed
/// meanwhile (renewed, or re-attached by its worker on a live dispatcher).
async fn requeue_one(pool: &AnyPool, lost: &Lost) -> Result<Option<(LostOutcome, Job)>> {
    let mut tx = shared::db::begin(pool).await?;
    let claimed = claim(&mut tx, &lost.id).await?;
    let Some(job) = claimed.filter(|j| {
        j.holds(lost.attempt)
            && j.worker_id == lost.worker_id
            && (lost.abandoned || j.lease_expires_ms.is_some_and(|l| l < now_ms()))
    }) else {
        return Ok(None);
    };
    let why = if lost.abandoned {
        "The build server holding the builder's connection stopped"
    } else {
        "Builder disconnected"
    };
    let outcome = transition::requeue_lost(&mut tx, &lost.id, lost.attempt, why).await?;
    tx.commit().await?;
    Ok(Some((outcome, job)))
}
