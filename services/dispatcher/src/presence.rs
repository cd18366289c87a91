//! This dispatcher's heartbeat in `dispatchers`: written every [`BEAT`], removed on shutdown.
//! A worker connection on a dispatcher that has not beaten for
//! [`job::transition::DISPATCHER_STALE_MS`] is gone (the process
//! was killed or cut off), so the worker re-attaches its jobs wherever it reconnects without
//! waiting out the silence window (DEC-19).

use std::time::Duration;

use shared::clock::now_ms;

use crate::AppState;

/// How often the heartbeat is written.
pub const BEAT: Duration = Duration::from_secs(2);

/// Heartbeats older than this are deleted (by any dispatcher).
const FORGET: Duration = Duration::from_secs(24 * 3600);

/// The oldest heartbeat (ms) of a dispatcher that is still alive at `now` (five missed beats
/// make it gone).
pub fn alive_since(now: i64) -> i64 {
    now - job::transition::DISPATCHER_STALE_MS
}

/// Beat until shutdown, then remove this dispatcher's row.
pub fn spawn(ctx: &AppState) {
    let pool = ctx.deps.pool.clone();
    let id = ctx.instance_id.clone();
    let cancel = ctx.deps.cancel.clone();
    let started = now_ms();
    let reattach_ms = ctx.settings.reattach_ms();
    ctx.deps.tracker.spawn(async move {
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beats: u64 = 0;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = now_ms();
            let beat = sqlx::query(&shared::db::sql(shared::db::Dialect::of_pool(&pool), "INSERT INTO dispatchers (id, started_ms, last_seen_ms, reattach_ms) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE last_seen_ms = VALUES(last_seen_ms), reattach_ms = VALUES(reattach_ms)"),
            )
            .bind(&*id)
            .bind(started)
            .bind(now)
            .bind(reattach_ms)
            .execute(&pool)
            .await;
            if let Err(error) = beat {
                tracing::warn!(%error, "dispatcher heartbeat failed");
            }
            beats += 1;
            if beats % 1800 == 1 {
                let forget = now - i64::try_from(FORGET.as_millis()).unwrap_or(i64::MAX);
                let _ = sqlx::query(&shared::db::sql(shared::db::Dialect::of_pool(&pool), "DELETE FROM dispatchers WHERE last_seen_ms < ? LIMIT 1000"))
                    .bind(forget)
                    .execute(&pool)
                    .await;
            }
        }
        let _ = sqlx::query("DELETE FROM dispatchers WHERE id = ?")
            .bind(&*id)
            .execute(&pool)
            .await;
    });
}
