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
const BATCH: i64 = 200;

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
    ctx.deps.tracker.spawn(shared::sweep::every(
        "reaper",
        period,
        ctx.deps.cancel.clone(),
        None,
        move || {
            let c = c.clone();
            async move {
                let gap = period / 2;
                shared::sweep::locked(&c.deps.pool, "reaper", gap, || sweep(&c)).await
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

/// Jobs whose worker is gone, requeued or failed ([`job::reap`]; the dispatchers run it too).
async fn requeue_lost(ctx: &AppState, report: &mut Report) -> anyhow::Result<()> {
    for reaped in job::reap::requeue_lost(&ctx.deps.pool).await? {
        match reaped.outcome {
            LostOutcome::Requeued => report.requeued.push(reaped.lost.id),
            LostOutcome::Failed => report.lost_failed.push(reaped.lost.id),
            LostOutcome::Unchanged => {}
        }
    }
    Ok(())
}

/// DEC-16: a job a worker has held longer than its stage's timeout, counted from the
/// assignment of the current attempt, fails, and its worker is told to cancel it.
async fn fail_overdue(ctx: &AppState, report: &mut Report) -> anyhow::Result<()> {
    let now = now_ms();
    let overdue: Vec<(String, i32)> = sqlx::query_as(
        "SELECT id, attempt FROM jobs WHERE state IN ('assigned', 'running') AND \
         COALESCE(assigned_ms, created_ms) < CASE WHEN stage >= 2 THEN ? ELSE ? END ORDER BY assigned_ms LIMIT ?",
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
    let mut tx = shared::db::begin(&ctx.deps.pool).await?;
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
        let mut tx = shared::db::begin(&ctx.deps.pool).await?;
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
