//! What every periodic sweep shares: a loop that runs it every interval until shutdown, and the
//! named lock that keeps two replicas from running the same sweep at once.
//!
//! The lock is a row of `sweep_locks` read `FOR UPDATE SKIP LOCKED` in a transaction held for
//! the whole sweep: a replica that finds the row locked skips this round instead of waiting.
//! `last_run_ms` lets a replica also skip a sweep that another one has just finished, so N
//! replicas do the work about once per interval, not N times.
//!
//! On the embedded SQLite database there is one process, and a transaction held for a whole
//! sweep would hold the database's only write lock: the lock is a set of running sweeps in
//! the process instead, and `last_run_ms` is kept the same way.

use std::{collections::HashSet, future::Future, sync::Arc, time::Duration};

use crate::{
    clock::now_ms,
    db::{sql, Dialect},
};
use sqlx::AnyPool;
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
    pool: &AnyPool,
    name: &str,
    min_gap: Duration,
    f: F,
) -> anyhow::Result<Option<T>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    if Dialect::of_pool(pool).is_sqlite() {
        return locked_in_process(pool, name, min_gap, f).await;
    }
    let mut lock = crate::db::begin(pool).await?;
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
            create(pool, name).await?;
        }
        return Ok(None);
    };
    if !due(last_run, min_gap) {
        lock.rollback().await?;
        return Ok(None);
    }
    let out = f().await?;
    mark_run(&mut *lock, name).await?;
    lock.commit().await?;
    Ok(Some(out))
}

/// [`locked`] on the embedded database: one process, so the lock is the set of sweeps running
/// now, and no transaction is held while `f` runs (it would hold SQLite's only write lock).
async fn locked_in_process<F, Fut, T>(
    pool: &AnyPool,
    name: &str,
    min_gap: Duration,
    f: F,
) -> anyhow::Result<Option<T>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    static RUNNING: std::sync::LazyLock<std::sync::Mutex<HashSet<String>>> =
        std::sync::LazyLock::new(Default::default);
    /// Removes the sweep from the set when it ends, however it ends.
    struct Running(String);
    impl Drop for Running {
        fn drop(&mut self) {
            if let Ok(mut running) = RUNNING.lock() {
                running.remove(&self.0);
            }
        }
    }
    // One set for every database this process opened (tests open several).
    let key = format!("{}#{name}", pool.connect_options().database_url);
    if !RUNNING
        .lock()
        .map_err(|_| anyhow::anyhow!("sweep lock poisoned"))?
        .insert(key.clone())
    {
        return Ok(None);
    }
    let _running = Running(key);
    let last_run: Option<i64> =
        sqlx::query_scalar("SELECT last_run_ms FROM sweep_locks WHERE name = ?")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    let Some(last_run) = last_run else {
        create(pool, name).await?;
        return Ok(None);
    };
    if !due(last_run, min_gap) {
        return Ok(None);
    }
    let out = f().await?;
    mark_run(pool, name).await?;
    Ok(Some(out))
}

/// Whether a sweep last finished at `last_run` (epoch ms) may run again.
fn due(last_run: i64, min_gap: Duration) -> bool {
    let gap = i64::try_from(min_gap.as_millis()).unwrap_or(i64::MAX);
    now_ms().saturating_sub(last_run) >= gap
}

/// Create the lock row of a sweep (for the next round).
async fn create(pool: &AnyPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&sql(
        Dialect::of_pool(pool),
        "INSERT IGNORE INTO sweep_locks (name, last_run_ms) VALUES (?, 0)",
    ))
    .bind(name)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Record that the sweep `name` finished now.
async fn mark_run<'c, E>(conn: E, name: &str) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query("UPDATE sweep_locks SET last_run_ms = ? WHERE name = ?")
        .bind(now_ms())
        .bind(name)
        .execute(conn)
        .await
        .map(|_| ())
}
