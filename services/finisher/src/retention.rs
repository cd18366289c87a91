//! Retention (D18): what the hub no longer needs is deleted from the blob store and MySQL on a
//! schedule, under the `retention` sweep lock.
//!
//! - input tarballs of finished jobs (unless still the input of an active job);
//! - artifacts past their TTL, and hidden `*-precompiled` bundles once their job has finished
//!   (or, expired, once a later attempt replaced them) — never a blob an active job still reads;
//! - download tokens expired or used more than a grace period ago (so a late request still
//!   gets 410 rather than 404), and tokens of deleted artifacts;
//! - events of jobs finished more than N days ago; published outbox rows; old rate-limit hits;
//!   rows of workers gone for a day;
//! - partial uploads a killed process left in the blob store (filesystem temporary files, S3
//!   incomplete multipart uploads), once abandoned for `PERRY_FINISHER_PARTIAL_UPLOAD_AGE_SECS`
//!   (DEC-31). A store that cannot list them is logged once, and the rest of the sweep runs.
//!
//! Order: the blob is deleted before the row that points at it. A crash in between leaves a
//! row whose blob is already gone — the next sweep selects it again and finishes (deletes are
//! idempotent) — and never a blob that no row points at, which nothing would ever find.

use shared::clock::now_ms;
use sqlx::AnyPool;

use crate::{settings::ms, AppState};

/// Terminal job states, as an SQL list.
const TERMINAL: &str = "('completed', 'failed', 'cancelled')";
/// Rows selected per step.
const BATCH: i64 = 200;
/// Batches per step and round, so one round stays short; the rest waits for the next round.
const MAX_BATCHES: u32 = 20;
/// Rows per bulk `DELETE ... LIMIT`.
const DELETE_BATCH: i64 = 5000;

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Input tarballs released (blob deleted unless shared with an active job).
    pub tarballs: u64,
    /// Artifacts deleted (blob and row).
    pub artifacts: u64,
    /// Download tokens deleted.
    pub tokens: u64,
    /// Job events deleted.
    pub events: u64,
    /// Published outbox rows deleted.
    pub outbox: u64,
    /// Rate-limit hits deleted.
    pub rate_events: u64,
    /// Worker rows deleted.
    pub workers: u64,
    /// Abandoned partial uploads removed from the blob store.
    pub partial_uploads: u64,
}

/// Run the retention sweep every `retention_secs`.
pub fn spawn(ctx: &AppState) {
    let c = ctx.clone();
    let period = std::time::Duration::from_secs(ctx.settings.retention_secs);
    ctx.deps.tracker.spawn(shared::sweep::every(
        "retention",
        period,
        ctx.deps.cancel.clone(),
        None,
        move || {
            let c = c.clone();
            async move {
                let report =
                    shared::sweep::locked(&c.deps.pool, "retention", period / 2, || sweep(&c))
                        .await?;
                if let Some(r) = report.filter(|r| *r != Report::default()) {
                    tracing::info!(?r, "retention sweep");
                }
                anyhow::Ok(())
            }
        },
    ));
}

/// One retention round. Safe to run next to other replicas' sweeps (each step is idempotent),
/// though [`spawn`] also takes the sweep lock so they do not duplicate the work.
pub async fn sweep(ctx: &AppState) -> anyhow::Result<Report> {
    let now = now_ms();
    let s = &ctx.settings;
    let pool = &ctx.deps.pool;
    let mut r = Report {
        tarballs: release_tarballs(ctx).await?,
        artifacts: delete_artifacts(ctx, now).await?,
        partial_uploads: crate::partials::sweep(ctx).await,
        ..Report::default()
    };
    let token_cutoff = now - ms(s.token_grace_secs);
    r.tokens = delete_batched(
        pool,
        // A consumed token goes after the grace; one whose claim lapsed unread lives until
        // it expires (DEC-30).
        "DELETE FROM download_tokens \
         WHERE expires_ms < ? OR (used_ms < ? AND claim_until_ms IS NULL) LIMIT ?",
        &[token_cutoff, token_cutoff],
    )
    .await?;
    r.events = delete_events(
        pool,
        now - ms(s.event_retention_days.saturating_mul(86_400)),
    )
    .await?;
    r.outbox = delete_batched(
        pool,
        "DELETE FROM outbox WHERE sent_ms IS NOT NULL AND sent_ms < ? LIMIT ?",
        &[now - ms(s.outbox_retention_secs)],
    )
    .await?;
    r.rate_events = delete_batched(
        pool,
        "DELETE FROM rate_events WHERE at_ms < ? LIMIT ?",
        &[now - ms(s.rate_retention_secs)],
    )
    .await?;
    // The lock rows of idle rate buckets (DEC-17); counted with the events.
    r.rate_events += delete_batched(
        pool,
        "DELETE FROM rate_buckets WHERE touched_ms < ? LIMIT ?",
        &[now - ms(s.rate_retention_secs)],
    )
    .await?;
    let gone = now - ms(s.worker_retention_secs);
    r.workers = delete_batched(
        pool,
        "DELETE FROM workers WHERE (disconnected_ms IS NOT NULL AND disconnected_ms < ?) OR (disconnected_ms IS NULL AND last_seen_ms < ?) LIMIT ?",
        &[gone, gone],
    )
    .await?;
    Ok(r)
}

/// Input tarballs of finished jobs: delete the blob unless an active job still reads it (one
/// submission's tarball can feed several jobs), then forget the key.
async fn release_tarballs(ctx: &AppState) -> anyhow::Result<u64> {
    let pool = &ctx.deps.pool;
    let mut released = 0;
    for _ in 0..MAX_BATCHES {
        let rows: Vec<(String, String)> =
            sqlx::query_as(&format!("SELECT id, input_key FROM jobs WHERE state IN {TERMINAL} AND input_key IS NOT NULL LIMIT ?"))
                .bind(BATCH)
                .fetch_all(pool)
                .await?;
        for (id, key) in &rows {
            if !used_by_active_job(pool, key).await? {
                ctx.deps.blob.delete(key).await?;
            }
            sqlx::query("UPDATE jobs SET input_key = NULL WHERE id = ? AND input_key = ?")
                .bind(id)
                .bind(key)
                .execute(pool)
                .await?;
            released += 1;
        }
        if rows.len() < BATCH as usize {
            break;
        }
    }
    Ok(released)
}

async fn used_by_active_job(pool: &AnyPool, key: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM jobs WHERE input_key = ? AND state NOT IN {TERMINAL}"
    ))
    .bind(key)
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}

/// Expired artifacts, and hidden bundles nothing will read again: blob, then tokens and row.
async fn delete_artifacts(ctx: &AppState, now: i64) -> anyhow::Result<u64> {
    let pool = &ctx.deps.pool;
    let sql = format!(
        "SELECT a.id, a.blob_key FROM artifacts a LEFT JOIN jobs j ON j.id = a.job_id \
         WHERE ((a.hidden = FALSE AND a.expires_ms < ?) \
             OR (a.hidden = TRUE AND (j.id IS NULL OR j.state IN {TERMINAL})) \
             OR (a.hidden = TRUE AND a.expires_ms < ? AND a.attempt < j.attempt)) \
           AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.input_key = a.blob_key AND k.state NOT IN {TERMINAL}) \
         LIMIT ?"
    );
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES {
        let rows: Vec<(String, String)> = sqlx::query_as(&sql)
            .bind(now)
            .bind(now)
            .bind(BATCH)
            .fetch_all(pool)
            .await?;
        for (id, key) in &rows {
            ctx.deps.blob.delete(key).await?;
            let mut tx = shared::db::begin(pool).await?;
            sqlx::query("DELETE FROM download_tokens WHERE artifact_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM artifacts WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            deleted += 1;
        }
        if rows.len() < BATCH as usize {
            break;
        }
    }
    Ok(deleted)
}

/// Events of jobs that finished before `cutoff`, a hundred jobs at a time.
async fn delete_events(pool: &AnyPool, cutoff: i64) -> anyhow::Result<u64> {
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES {
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT j.id FROM jobs j WHERE j.finished_ms < ? AND j.state IN {TERMINAL} \
             AND EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.id) LIMIT 100"
        ))
        .bind(cutoff)
        .fetch_all(pool)
        .await?;
        if ids.is_empty() {
            break;
        }
        let placeholders = vec!["?"; ids.len()].join(", ");
        let sql = format!("DELETE FROM job_events WHERE job_id IN ({placeholders})");
        let mut q = sqlx::query(&sql);
        for id in &ids {
            q = q.bind(id);
        }
        deleted += q.execute(pool).await?.rows_affected();
    }
    Ok(deleted)
}

/// Repeat a `DELETE ... LIMIT ?` (the limit is the last placeholder) until it deletes less than
/// a full batch.
async fn delete_batched(pool: &AnyPool, sql: &str, binds: &[i64]) -> anyhow::Result<u64> {
    let statement = shared::db::sql(shared::db::Dialect::of_pool(pool), sql);
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES {
        let mut q = sqlx::query(&statement);
        for b in binds {
            q = q.bind(*b);
        }
        let n = q.bind(DELETE_BATCH).execute(pool).await?.rows_affected();
        deleted += n;
        if n < DELETE_BATCH.unsigned_abs() {
            break;
        }
    }
    Ok(deleted)
}
