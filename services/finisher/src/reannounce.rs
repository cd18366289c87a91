//! Queued jobs whose broker message is gone (a purged queue, a publish the broker dropped) are
//! announced again: nothing else would ever offer them to a worker, and they would fail at the
//! wait timeout. A target is suspect when its queue holds fewer ready messages than it has
//! queued jobs; its jobs queued longer than `PERRY_FINISHER_REANNOUNCE_SECS` are then announced
//! again through the outbox. A copy of a message that still exists is harmless (the first
//! claim wins), and the extra copies make the queue's count catch up, so this settles.

use job::{transition, Job, COLUMNS};
use shared::{clock::now_ms, queue::TARGETS};

use crate::{settings::ms, AppState};

/// Jobs announced again per target and round.
const BATCH: u32 = 200;

/// Announce again the stale queued jobs of every target whose queue is short of messages.
/// Returns the job ids announced.
pub async fn reannounce(ctx: &AppState, queued: &[(String, i64)]) -> anyhow::Result<Vec<String>> {
    let stale_before = now_ms() - ms(ctx.settings.reannounce_secs);
    let mut announced = Vec::new();
    for target in TARGETS {
        let Some(&(_, jobs)) = queued.iter().find(|(t, _)| t == target) else {
            continue;
        };
        let queue = ctx.deps.broker.topology().target_queue(target);
        let ready = ctx.deps.broker.ready_messages(&queue).await?;
        if i64::from(ready) >= jobs {
            continue;
        }
        let mut tx = ctx.deps.pool.begin().await?;
        let stale: Vec<Job> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'queued' AND target = ? AND COALESCE(queued_ms, enqueued_ms) < ? \
             ORDER BY priority DESC, enqueued_ms LIMIT ? FOR UPDATE SKIP LOCKED"
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
