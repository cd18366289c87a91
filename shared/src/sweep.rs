//! What every periodic sweep shares: a loop that runs it every interval until shutdown, and the
//! named lock that keeps two replicas from running the same sweep at once.
//!
//! The lock is a row of `sweep_locks` read `FOR UPDATE SKIP LOCKED` in a transaction held for
//! the whole sweep: a replica that finds the row locked skips this round instead of waiting.
//! `last_run_ms` lets a replica also skip a sweep that another one has just finished, so N
//! replicas do the work about once per interval, not N times.

use std::{future::Future, sync::Arc, time::Duration};

use crate::clock::now_ms;
use sqlx::MySqlPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Run `sweep` every `period` (and whenever `wake` is notified) until `cancel` fires. Errors
/// are logged and the sweep runs again next round.
pub async fn every<F, Fut, T>(
    name: &'static str,
    period: Duration,
    cancel: CancellationToken,
    wake: Option<Arc<Notify>>,
    mut sweep: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let wake = wake.unwrap_or_default();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
            () = wake.notified() => {}
        }
        // A sweep is never interrupted half-way by shutdown: each step is its own transaction,
        // and the tracker waits for it.
        if let Err(error) = sweep().await {
            tracing::warn!(
                sweep = name,
                error = format!("{error:#}"),
                "sweep failed; retrying next round"
            );
        }
    }
    tracing::debug!(sweep = name, "sweep stopped");
}

/// Run `f` while holding the sweep lock `name`. Returns `None` without running `f` when another
/// replica holds the lock, or finished this sweep less than `min_gap` ago.
pub async fn locked<F, Fut, T>(
    pool: &MySqlPool,
    name: &str,
    min_gap: Duration,
    f: F,
) -> anyhow::Result<Option<T>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut lock = pool.begin().await?;
    let last_run: Option<i64> = sqlx::query_scalar(
        "SELECT last_run_ms FROM sweep_locks WHERE name = ? FOR UPDATE SKIP LOCKED",
    )
    .bind(name)
    .fetch_optional(&mut *lock)
    .await?;
    let Some(last_run) = last_run else {
        // Locked by another replica, or missing (then create it for the next round). A plain
        // read never waits for the other replica's lock.
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sweep_locks WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *lock)
            .await?;
        lock.rollback().await?;
        if exists == 0 {
            sqlx::query("INSERT IGNORE INTO sweep_locks (name, last_run_ms) VALUES (?, 0)")
                .bind(name)
                .execute(pool)
                .await?;
        }
        return Ok(None);
    };
    let gap = i64::try_from(min_gap.as_millis()).unwrap_or(i64::MAX);
    if now_ms().saturating_sub(last_run) < gap {
        lock.rollback().await?;
        return Ok(None);
    }
    let out = f().await?;
    sqlx::query("UPDATE sweep_locks SET last_run_ms = ? WHERE name = ?")
        .bind(now_ms())
        .bind(name)
        .execute(&mut *lock)
        .await?;
    lock.commit().await?;
    Ok(Some(out))
}
