//! Queued jobs whose broker message is gone (a purged queue, a publish the broker dropped) are
//! announced again: nothing else would ever offer them to a worker, and they would fail at the
//! wait timeout. A target is suspect when its queue holds fewer ready messages than it has
//! queued jobs; its jobs queued longer than `PERRY_FINISHER_REANNOUNCE_SECS` are then announced
//! again through the outbox. A copy of a message that still exists is harmless (the first
//! claim wins), and the extra copies make the queue's count catch up, so this settles.

use job::{transition, Job, COLUMNS};
use shared::{
    clock::now_ms,
    queue::{Message, Source, TARGETS},
};

use crate::{settings::ms, AppState};

/// Jobs announced again per target and round.
const BATCH: i64 = 200;

/// Announce again the stale queued jobs of every target whose queue is short of messages.
/// Returns the job ids announced.
pub async fn reannounce(ctx: &AppState, queued: &[(String, i64)]) -> anyhow::Result<Vec<String>> {
    let stale_before = now_ms() - ms(ctx.settings.reannounce_secs);
    let mut announced = Vec::new();
    for target in TARGETS {
        let Some(&(_, jobs)) = queued.iter().find(|(t, _)| t == target) else {
            continue;
        };
        let source = Source::Target((*target).to_owned());
        let ready = ctx.deps.queue.ready(&source).await?;
        if i64::from(ready) >= jobs {
            continue;
        }
        let mut tx = shared::db::begin(&ctx.deps.pool).await?;
        let stale: Vec<Job> = sqlx::query_as(&shared::db::sql(shared::db::Dialect::of(&tx), &format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'queued' AND target = ? AND COALESCE(queued_ms, enqueued_ms) < ? \
             ORDER BY priority DESC, enqueued_ms LIMIT ? FOR UPDATE SKIP LOCKED")
        ))
        .bind(*target)
        .bind(stale_before)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if stale.is_empty() {
            continue;
        }
        for job in &stale {
            transition::announce_again(&mut tx, job).await?;
        }
        tx.commit().await?;
        tracing::warn!(
            target,
            ready,
            queued = jobs,
            announced = stale.len(),
            "queue held fewer messages than queued jobs; announced the waiting ones again"
        );
        announced.extend(stale.into_iter().map(|j| j.id));
    }
    Ok(announced)
}

/// The in-process queue starts empty: announce every queued job again through the outbox, in
/// the order they were submitted, so that a restarted single-process hub offers its queued jobs
/// at once rather than after the re-announce delay (DEC-35). A job whose announcement is still
/// waiting in the outbox (not sent yet, or held back by `not_before_ms`) is left to it. Copies
/// of messages that still exist are harmless (the first claim wins). Returns how many jobs were
/// announced.
pub async fn announce_all_queued(pool: &sqlx::AnyPool) -> anyhow::Result<usize> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE state = 'queued' ORDER BY COALESCE(queued_ms, enqueued_ms), id",
    )
    .fetch_all(pool)
    .await?;
    let mut announced = 0;
    for chunk in ids.chunks(BATCH as usize) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'queued' AND id IN ({marks}) \
             ORDER BY COALESCE(queued_ms, enqueued_ms), id FOR UPDATE SKIP LOCKED"
        );
        let mut tx = shared::db::begin(pool).await?;
        let sql = shared::db::sql(shared::db::Dialect::of(&tx), &sql);
        let mut query = sqlx::query_as::<_, Job>(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        let jobs = query.fetch_all(&mut *tx).await?;
        // Read after the jobs are locked: an announcement committed before (e.g. a requeue
        // held back by DEC-34's pause) shows here, and one still being written holds its job's
        // row, which the lock above skipped.
        let pending = pending_announcements(&mut tx).await?;
        for job in jobs.iter().filter(|j| !pending.contains(&j.id)) {
            transition::announce_again(&mut tx, job).await?;
            announced += 1;
        }
        tx.commit().await?;
    }
    Ok(announced)
}

/// The jobs whose `job_queued` message is still waiting in the outbox.
async fn pending_announcements(
    conn: &mut sqlx::AnyConnection,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let pending: Vec<shared::db::Text> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE sent_ms IS NULL AND exchange = 'jobs'",
    )
    .fetch_all(conn)
    .await?;
    Ok(pending
        .iter()
        .filter_map(|p| match serde_json::from_str(&p.0) {
            Ok(Message::JobQueued { job_id, .. }) => Some(job_id),
            _ => None,
        })
        .collect())
}
