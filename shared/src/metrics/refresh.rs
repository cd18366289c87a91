//! The gauges read from MySQL, set when `/metrics` is scraped so every replica reports the
//! same current values: outbox backlog and its oldest row, queue depth and the oldest waiting
//! job per target, and the pool's connections.

use std::time::Duration;

use sqlx::AnyPool;

use super::label;
use crate::{clock::now_ms, queue::TARGETS};

/// Longest a scrape waits for the database before rendering what it has.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Refresh the database gauges (errors are logged; the scrape still answers).
pub async fn refresh(pool: &AnyPool) {
    pool_gauges(pool);
    match tokio::time::timeout(QUERY_TIMEOUT, read(pool)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "metrics: database gauges not refreshed"),
        Err(_) => tracing::warn!("metrics: database gauges timed out"),
    }
}

fn pool_gauges(pool: &AnyPool) {
    let m = &super::get().db_pool_connections;
    let size = i64::from(pool.size());
    let idle = i64::try_from(pool.num_idle()).unwrap_or(0);
    m.get_or_create(&label("state", "idle")).set(idle);
    m.get_or_create(&label("state", "in_use"))
        .set((size - idle).max(0));
    m.get_or_create(&label("state", "max"))
        .set(i64::from(pool.options().get_max_connections()));
}

async fn read(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let (backlog, oldest): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MIN(created_ms) FROM outbox WHERE sent_ms IS NULL")
            .fetch_one(pool)
            .await?;
    let m = super::get();
    m.outbox_backlog.set(backlog);
    m.outbox_oldest_unsent_seconds
        .set(oldest.map_or(0.0, |ms| seconds_since(now, ms)));
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT target, COUNT(*), MIN(COALESCE(queued_ms, enqueued_ms)) FROM jobs WHERE state = 'queued' GROUP BY target",
    )
    .fetch_all(pool)
    .await?;
    for target in TARGETS {
        let found = rows.iter().find(|(t, _, _)| t == target);
        let (depth, oldest) = found.map_or((0, None), |(_, n, o)| (*n, *o));
        m.queue_depth
            .get_or_create(&label("target", target))
            .set(depth);
        m.queue_oldest_wait_seconds
            .get_or_create(&label("target", target))
            .set(oldest.map_or(0.0, |ms| seconds_since(now, ms)));
    }
    Ok(())
}

fn seconds_since(now: i64, ms: i64) -> f64 {
    (now - ms).max(0) as f64 / 1000.0
}
