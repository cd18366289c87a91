//! The reaper: jobs whose worker vanished, jobs a worker holds past their stage's time limit,
//! jobs nobody takes, and hand-overs whose message was lost. Each job is claimed with `FOR UPDATE SKIP LOCKED` and changed in its own transaction
//! through the shared lifecycle functions, so replicas running the sweep together never act on
//! the same job twice, and a job another service is changing right now is left for next round.
//! The sweep also refreshes the per-target queue-depth gauge.

use job::transition::{self, LostOutcome, Unsuccessful};
use shared::{clock::now_ms, metrics, queue::TARGETS};

use crate::{
    settings::{human, ms},
    stage2::{self, HandOver},
    AppState, WAIT_START_SQL,
};

/// Jobs handled per step and round (the rest wait for the next round).
const BATCH: u32 = 200;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Lost jobs queued again.
    pub requeued: Vec<String>,
    /// Lost jobs failed (out of retries, cancelled, or their build had already failed).
    pub lost_failed: Vec<String>,
    /// Queued jobs failed by the wait timeout (A8).
    pub timed_out: Vec<String>,
    /// Held jobs failed by their stage's build timeout (DEC-16).
    pub overdue: Vec<String>,
    /// `finishing` jobs handed over by the sweep.
    pub handed_over: Vec<String>,
    /// Queued jobs announced again (their broker message was gone).
    pub reannounced: Vec<String>,
}

/// Run the reaper every sweep.
pub fn spawn(ctx: &AppState) {
    let c = ctx.clone();
    let period = ctx.settings.sweep_interval();
    ctx.deps.tracker.spawn(crate::sweep::every(
        "reaper",
        period,
        ctx.deps.cancel.clone(),
        None,
        move || {
            let c = c.clone();
            async move {
                let gap = period / 2;
                crate::sweep::locked(&c.deps.pool, "reaper", gap, || sweep(&c)).await
            }
        },
    ));
}

/// One round of the reaper.
pub async fn sweep(ctx: &AppState) -> anyhow::Result<Report> {
    let mut report = Report::default();
    // Overdue first: an attempt past its limit fails even if its worker is gone too.
    fail_overdue(ctx, &mut report).await?;
    requeue_lost(ctx, &mut report).await?;
    fail_waiting(ctx, &mut report).await?;
    hand_over_stuck(ctx, &mut report).await?;
    let queued = refresh_queue_depth(ctx).await?;
    report.reannounced = crate::reannounce::reannounce(ctx, &queued).await?;
    let changed = [
        &report.requeued,
        &report.lost_failed,
        &report.timed_out,
        &report.overdue,
        &report.reannounced,
    ];
    if changed.iter().any(|ids| !ids.is_empty()) {
        ctx.deps.notify_outbox();
        ctx.vm_wake.notify_one();
    }
    Ok(report)
}

/// Re-attach window assumed for a dispatcher that has not recorded its own.
const DEFAULT_REATTACH_MS: i64 = 10_000;

/// A job the reaper found lost.
#[derive(sqlx::FromRow)]
struct Lost {
    id: String,
    attempt: i32,
    worker_id: Option<String>,
    /// Its worker's dispatcher stopped beating longer ago than its re-attach window: nobody is
    /// left to shorten or renew the lease (DEC-32).
    abandoned: bool,
}

/// Jobs whose worker is gone. Leases that expired (the dispatcher renews leases while it is
/// connected and keeps a disconnected worker's jobs for the re-attach window), and jobs held on
/// a dispatcher that died: its worker has had the stale window plus its re-attach window to
/// come back through another replica. Requeue with one more retry, or fail after the last. A
/// build that had already failed (the worker sent `error`) is never retried: it ends failed.
async fn requeue_lost(ctx: &AppState, report: &mut Report) -> anyhow::Result<()> {
    // A lease that lapsed while its worker is still connected to a live dispatcher (MySQL was
    // unreachable longer than the lease, so nobody could renew it) is left for the dispatcher
    // to renew: the build is healthy.
    let now = now_ms();
    let alive_since = now - job::transition::DISPATCHER_STALE_MS;
    let lost: Vec<Lost> = sqlx::query_as(
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
    .fetch_all(&ctx.deps.pool)
    .await?;
    for job in lost {
        // Replicas requeueing neighbouring jobs can deadlock on index locks: run it again.
        let mut tries = 0;
        let done = loop {
            tries += 1;
            match requeue_one(ctx, &job).await {
                Err(job::Error::Db(e)) if tries < 3 && shared::db::is_deadlock(&e) => continue,
                other => break other?,
            }
        };
        let Some((outcome, row)) = done else {
            continue;
        };
        let (id, attempt, abandoned) = (job.id, job.attempt, job.abandoned);
        match outcome {
            LostOutcome::Requeued => {
                tracing::info!(job_id = %id, attempt, abandoned, retries = row.retries + 1, "worker gone; job requeued");
                report.requeued.push(id);
            }
            LostOutcome::Failed => {
                tracing::warn!(job_id = %id, attempt, abandoned, retries = row.retries, "worker gone; job failed");
                report.lost_failed.push(id);
            }
            LostOutcome::Unchanged => {}
        }
    }
    Ok(())
}

/// Requeue (or fail) one lost job, unless another replica has it right now or it changed
/// meanwhile (renewed, or re-attached by its worker on a live dispatcher).
async fn requeue_one(ctx: &AppState, lost: &Lost) -> job::Result<Option<(LostOutcome, job::Job)>> {
    let mut tx = ctx.deps.pool.begin().await?;
    let claimed = job::claim(&mut tx, &lost.id).await?;
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

/// DEC-16: a job a worker has held longer than its stage's timeout, counted from the
/// assignment of the current attempt, fails, and its worker is told to cancel it.
async fn fail_overdue(ctx: &AppState, report: &mut Report) -> anyhow::Result<()> {
    let now = now_ms();
    let overdue: Vec<(String, i32)> = sqlx::query_as(
        "SELECT id, attempt FROM jobs WHERE state IN ('assigned', 'running') AND \
         COALESCE(assigned_ms, created_ms) < IF(stage >= 2, ?, ?) ORDER BY assigned_ms LIMIT ?",
    )
    .bind(now - ms(ctx.settings.signing_timeout_secs))
    .bind(now - ms(ctx.settings.build_timeout_secs))
    .bind(BATCH)
    .fetch_all(&ctx.deps.pool)
    .await?;
    for (id, attempt) in overdue {
        if let Some(job) = time_out_one(ctx, &id, attempt).await? {
            tracing::warn!(job_id = %id, attempt, stage = job.stage, target = %job.target, "job held past its time limit; failed");
            report.overdue.push(id);
        }
    }
    Ok(())
}

/// Fail one overdue job, unless another replica has it right now or it changed meanwhile.
async fn time_out_one(ctx: &AppState, id: &str, attempt: i32) -> anyhow::Result<Option<job::Job>> {
    let mut tx = ctx.deps.pool.begin().await?;
    let Some(job) = job::claim(&mut tx, id).await?.filter(|j| j.holds(attempt)) else {
        return Ok(None);
    };
    let limit = ctx.settings.stage_timeout_secs(job.stage);
    if job.assigned_ms.unwrap_or(job.created_ms) >= now_ms() - ms(limit) {
        return Ok(None);
    }
    let message = overdue_message(&job, &human(limit));
    transition::time_out(&mut tx, &job, &message).await?;
    tx.commit().await?;
    Ok(Some(job))
}

/// What the CLI is told (and the job keeps) when an attempt runs past its limit.
fn overdue_message(job: &job::Job, limit: &str) -> String {
    let what = if job.stage >= 2 { "Signing" } else { "Build" };
    match job.worker_error() {
        Some(why) => format!("Build failed: {why} (the worker did not finish within {limit})"),
        None => format!("{what} timed out after {limit}"),
    }
}

/// A8: a queued job that no worker took within the queue timeout fails with a clear error.
async fn fail_waiting(ctx: &AppState, report: &mut Report) -> anyhow::Result<()> {
    let timeout_secs = ctx.settings.queue_timeout_secs;
    let cutoff = now_ms() - ms(timeout_secs);
    let waiting: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT id FROM jobs WHERE state = 'queued' AND {WAIT_START_SQL} < ? LIMIT ?"
    ))
    .bind(cutoff)
    .bind(BATCH)
    .fetch_all(&ctx.deps.pool)
    .await?;
    for id in waiting {
        let mut tx = ctx.deps.pool.begin().await?;
        // Unless another replica has it right now; then check it is still waiting too long.
        let Some(job) = job::claim(&mut tx, &id).await? else {
            continue;
        };
        let still: Option<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM jobs WHERE id = ? AND state = 'queued' AND {WAIT_START_SQL} < ?"
        ))
        .bind(&id)
        .bind(cutoff)
        .fetch_optional(&mut *tx)
        .await?;
        if still.is_none() {
            continue;
        }
        let message = format!(
            "No build worker for '{}' took the job within {}; please try again later",
            job.target,
            human(timeout_secs)
        );
        transition::fail(&mut tx, &job, Unsuccessful::Failed, &message).await?;
        tx.commit().await?;
        tracing::warn!(job_id = %id, target = %job.target, "job timed out in the queue");
        report.timed_out.push(id);
    }
    Ok(())
}

/// Fallback for a lost `StageFinished` message: hand over jobs still `finishing` a while after
/// their last event. The hand-over is idempotent, so racing the consumer is harmless.
async fn hand_over_stuck(ctx: &AppState, report: &mut Report) -> anyhow::Result<()> {
    let cutoff = now_ms() - ms(ctx.settings.finishing_grace_secs);
    let stuck: Vec<(String, i32)> = sqlx::query_as(
        "SELECT j.id, j.attempt FROM jobs j WHERE j.state = 'finishing' AND \
         COALESCE((SELECT MAX(e.created_ms) FROM job_events e WHERE e.job_id = j.id), j.assigned_ms, j.created_ms) < ? LIMIT ?",
    )
    .bind(cutoff)
    .bind(BATCH)
    .fetch_all(&ctx.deps.pool)
    .await?;
    for (id, attempt) in stuck {
        let outcome = stage2::hand_over(&ctx.deps, &id, attempt).await?;
        if outcome != HandOver::Unchanged {
            tracing::warn!(job_id = %id, ?outcome, "handed over a job whose stage-2 message was lost");
            report.handed_over.push(id);
        }
    }
    Ok(())
}

/// Set `queue_depth{target}` for every target (0 when empty).
/// Set the queue-depth gauge; returns the queued jobs per target.
async fn refresh_queue_depth(ctx: &AppState) -> anyhow::Result<Vec<(String, i64)>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT target, COUNT(*) FROM jobs WHERE state = 'queued' GROUP BY target")
            .fetch_all(&ctx.deps.pool)
            .await?;
    let depth = &metrics::get().queue_depth;
    for target in TARGETS {
        let n = rows
            .iter()
            .find(|(t, _)| t == target)
            .map_or(0, |(_, n)| *n);
        depth
            .get_or_create(&metrics::label("target", target))
            .set(n);
    }
    Ok(rows)
}
