//! Jobs whose worker is gone are requeued from every dispatcher too ([`job::reap`], DEC-32), so
//! recovery never waits for the finisher: with the finisher down, a lost build is still queued
//! again within the re-attach window plus one round. A named sweep lock keeps the replicas from
//! all doing the same round; running it beside the finisher's reaper is safe, as each job is
//! claimed and checked again under its lock.

use std::time::Duration;

use crate::AppState;

/// How often a round runs (across all replicas, about once per period).
pub const PERIOD: Duration = Duration::from_secs(2);

/// Run the lost-job rounds until shutdown.
pub fn spawn(ctx: &AppState) {
    let c = ctx.clone();
    ctx.deps.tracker.spawn(shared::sweep::every(
        "lost-jobs",
        PERIOD,
        ctx.deps.cancel.clone(),
        None,
        move || {
            let c = c.clone();
            async move {
                shared::sweep::locked(&c.deps.pool, "lost-jobs", PERIOD / 2, || async {
                    let reaped = job::reap::requeue_lost(&c.deps.pool).await?;
                    if !reaped.is_empty() {
                        c.deps.notify_outbox();
                    }
                    Ok(reaped.len())
                })
                .await
            }
        },
    ));
}
