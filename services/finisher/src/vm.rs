//! Power of the Windows signing VM (PROTOCOL §5.4, A14, D20). Each tick observes MySQL — queued
//! and running `windows-sign` work, connected `windows-sign` workers and their free slots — and
//! decides, under a row lock on the VM's `vm_state` row, whether to start or deallocate it. The
//! decision is recorded (claimed) and committed *before* the Azure call, so two replicas or two
//! concurrent triggers make the call once; the call itself runs outside any transaction.
//!
//! States: `deallocated` → `starting` (start called) → `running` (a `windows-sign` worker
//! connected) → `deallocating` → `deallocated`; `start_failed` after a failed start call.
//! A start cycle begins with the first start call: the call is retried once after
//! `start_retry` if jobs are still unassigned, and after `sign_timeout` the jobs still waiting
//! fail (A14) and a new cycle may begin.

use shared::{
    clock::now_ms,
    jobs::{self, state},
    runtime::Deps,
};
use sqlx::MySqlConnection;

use crate::{
    azure::AzureClient,
    settings::{human, ms, Settings},
    Ctx, WAIT_START_SQL,
};

/// The only target served by the VM (D20: never started for other stalls).
pub const SIGN_TARGET: &str = "windows-sign";

/// Values of `vm_state.state`.
pub mod vm_states {
    /// Off, as far as the hub knows.
    pub const DEALLOCATED: &str = "deallocated";
    /// Start called; no `windows-sign` worker seen yet.
    pub const STARTING: &str = "starting";
    /// A `windows-sign` worker connected after the start.
    pub const RUNNING: &str = "running";
    /// The last start call failed.
    pub const START_FAILED: &str = "start_failed";
    /// Deallocate called and not yet answered.
    pub const DEALLOCATING: &str = "deallocating";
}
use vm_states::*;

/// The recorded state of the VM.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VmRow {
    /// One of [`vm_states`].
    pub state: String,
    /// Last start call.
    pub last_start_ms: Option<i64>,
    /// First start call of the current cycle.
    pub first_start_ms: Option<i64>,
    /// Start calls in the current cycle.
    pub start_attempts: i32,
    /// Last deallocate call.
    pub last_stop_ms: Option<i64>,
    /// Last time `windows-sign` work was queued or running.
    pub last_work_ms: Option<i64>,
}

/// What a tick saw in MySQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// Now.
    pub now: i64,
    /// Queued `windows-sign` jobs.
    pub queued: i64,
    /// `windows-sign` jobs queued or running, and Windows jobs about to become one.
    pub work: i64,
    /// Connected `windows-sign` workers.
    pub workers: i64,
    /// Their free slots.
    pub free_slots: i64,
    /// When the most recent of them connected.
    pub newest_worker_ms: Option<i64>,
}

/// Timing of the decisions, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A14 retry of the start.
    pub start_retry: i64,
    /// A14 failure of jobs still unassigned.
    pub sign_timeout: i64,
    /// Deallocate after this long without work.
    pub idle: i64,
    /// Wait after a failed call.
    pub failure_backoff: i64,
    /// A deallocate claim older than this was lost (crash mid-call).
    pub stuck: i64,
}

/// What to do after the decision is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing.
    Nothing,
    /// Call `start`.
    Start,
    /// Call `deallocate`.
    Deallocate,
}

/// Decide from the recorded state and what MySQL shows, updating `row` with the observation and
/// the claim of the chosen call.
pub fn decide(row: &mut VmRow, o: &Observed, t: &Timing) -> Plan {
    let now = o.now;
    let since = |at: Option<i64>| at.map_or(i64::MAX, |at| now.saturating_sub(at));
    if o.work > 0 {
        row.last_work_ms = Some(now);
    }
    // A windows-sign worker that connected after our last deallocate: the VM is up.
    let fresh_worker = o.newest_worker_ms.is_some_and(|c| row.last_stop_ms.is_none_or(|s| c > s));
    if fresh_worker && row.state != RUNNING && row.state != DEALLOCATING {
        if row.state == DEALLOCATED {
            // Started by someone else: the idle window starts now.
            row.last_work_ms = Some(now);
        }
        row.state = RUNNING.to_owned();
        row.first_start_ms = None;
        row.start_attempts = 0;
    }
    if row.state == DEALLOCATING {
        if since(row.last_stop_ms) < t.stuck {
            return Plan::Nothing;
        }
        // The process making the call died; assume the VM may be on so the idle rule retries.
        row.state = RUNNING.to_owned();
    }
    if o.queued > 0 && o.free_slots == 0 {
        let cycle_over = since(row.first_start_ms) >= t.sign_timeout;
        let start = match row.state.as_str() {
            // Known up unless its worker is gone (builder-windows deallocates itself).
            RUNNING => o.workers == 0,
            STARTING => cycle_over || (row.start_attempts < 2 && since(row.last_start_ms) >= t.start_retry),
            START_FAILED => cycle_over || since(row.last_start_ms) >= t.failure_backoff,
            _ => true,
        };
        if !start {
            return Plan::Nothing;
        }
        if cycle_over || row.state == RUNNING {
            row.first_start_ms = Some(now);
            row.start_attempts = 0;
        }
        row.start_attempts += 1;
        row.last_start_ms = Some(now);
        row.state = STARTING.to_owned();
        return Plan::Start;
    }
    let on = matches!(row.state.as_str(), STARTING | RUNNING | START_FAILED);
    let idle_since = row.last_work_ms.max(row.last_start_ms);
    if on && o.work == 0 && since(idle_since) >= t.idle && since(row.last_stop_ms) >= t.failure_backoff {
        row.state = DEALLOCATING.to_owned();
        row.last_stop_ms = Some(now);
        return Plan::Deallocate;
    }
    Plan::Nothing
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// The call made, if any.
    pub plan: Plan,
    /// Whether the call succeeded (true when no call was made).
    pub ok: bool,
    /// Jobs failed by the A14 sign timeout.
    pub timed_out: Vec<String>,
}

/// Starts and deallocates the VM of one Azure configuration.
#[derive(Debug)]
pub struct VmController {
    deps: Deps,
    azure: AzureClient,
    name: String,
    timing: Timing,
    sign_timeout_secs: u64,
    stale_ms: i64,
}

impl VmController {
    /// A controller, or `None` when the `AZURE_*` settings are incomplete.
    pub fn new(deps: &Deps, settings: &Settings) -> anyhow::Result<Option<Self>> {
        let a = &settings.azure;
        if !a.enabled() {
            return Ok(None);
        }
        let timing = Timing {
            start_retry: ms(a.start_retry_secs),
            sign_timeout: ms(a.sign_timeout_secs),
            idle: ms(a.idle_secs),
            failure_backoff: ms(a.failure_backoff_secs),
            stuck: ms(a.poll_timeout_secs.saturating_add(a.http_timeout_secs.saturating_mul(u64::from(a.max_attempts)))).saturating_add(60_000),
        };
        Ok(Some(Self {
            deps: deps.clone(),
            azure: AzureClient::new(a)?,
            name: format!("azure:{}/{}/{}", a.subscription_id.trim(), a.resource_group.trim(), a.vm_name.trim()),
            timing,
            sign_timeout_secs: a.sign_timeout_secs,
            stale_ms: ms(settings.worker_stale_secs),
        }))
    }

    /// The `vm_state` row name of this VM.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Observe, decide under the row lock, commit, then make the Azure call.
    pub async fn tick(&self) -> anyhow::Result<Tick> {
        self.ensure_row().await?;
        let mut tx = self.deps.pool.begin().await?;
        let mut row: VmRow = sqlx::query_as(
            "SELECT state, last_start_ms, first_start_ms, start_attempts, last_stop_ms, last_work_ms FROM vm_state WHERE name = ? FOR UPDATE",
        )
        .bind(&self.name)
        .fetch_one(&mut *tx)
        .await?;
        let before = row.clone();
        let mut seen = observe(&mut tx, self.stale_ms).await?;
        let timed_out = self.fail_unassigned(&mut tx, &row, &seen).await?;
        let failed = i64::try_from(timed_out.len()).unwrap_or(0);
        seen.queued -= failed;
        seen.work -= failed;
        let plan = decide(&mut row, &seen, &self.timing);
        if row != before {
            sqlx::query(
                "UPDATE vm_state SET state = ?, last_start_ms = ?, first_start_ms = ?, start_attempts = ?, last_stop_ms = ?, \
                 last_work_ms = ?, updated_ms = ? WHERE name = ?",
            )
            .bind(&row.state)
            .bind(row.last_start_ms)
            .bind(row.first_start_ms)
            .bind(row.start_attempts)
            .bind(row.last_stop_ms)
            .bind(row.last_work_ms)
            .bind(seen.now)
            .bind(&self.name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if !timed_out.is_empty() {
            self.deps.notify_outbox();
        }
        if before.state != row.state {
            tracing::info!(vm = %self.name, from = %before.state, to = %row.state, ?plan, "signing VM state");
        }
        let ok = match plan {
            Plan::Nothing => true,
            Plan::Start => self.record(self.azure.start_vm().await.err(), STARTING, START_FAILED).await?,
            Plan::Deallocate => self.record(self.azure.deallocate_vm().await.err(), DEALLOCATING, RUNNING).await?,
        };
        Ok(Tick { plan, ok, timed_out })
    }

    async fn ensure_row(&self) -> anyhow::Result<()> {
        // A plain read first: INSERT IGNORE would wait on another replica's row lock.
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vm_state WHERE name = ?").bind(&self.name).fetch_one(&self.deps.pool).await?;
        if exists == 0 {
            sqlx::query("INSERT IGNORE INTO vm_state (name, state, updated_ms) VALUES (?, ?, ?)")
                .bind(&self.name)
                .bind(DEALLOCATED)
                .bind(now_ms())
                .execute(&self.deps.pool)
                .await?;
        }
        Ok(())
    }

    /// Write the outcome of a call. The state moves on only if no other decision replaced the
    /// claim meanwhile.
    async fn record(&self, error: Option<crate::azure::AzureError>, claimed: &str, on_failure: &str) -> anyhow::Result<bool> {
        let now = now_ms();
        let res = match (&error, claimed) {
            (None, DEALLOCATING) => sqlx::query(
                "UPDATE vm_state SET state = ?, first_start_ms = NULL, start_attempts = 0, last_error = NULL, updated_ms = ? \
                 WHERE name = ? AND state = ?",
            )
            .bind(DEALLOCATED),
            (None, _) => sqlx::query("UPDATE vm_state SET state = ?, last_error = NULL, updated_ms = ? WHERE name = ? AND state = ?").bind(claimed),
            (Some(_), _) => sqlx::query("UPDATE vm_state SET state = ?, last_error = ?, updated_ms = ? WHERE name = ? AND state = ?")
                .bind(on_failure)
                .bind(error.as_ref().map(ToString::to_string)),
        };
        res.bind(now).bind(&self.name).bind(claimed).execute(&self.deps.pool).await?;
        Ok(error.is_none())
    }

    /// A14: fail queued sign jobs still unassigned `sign_timeout` after the first start of the
    /// cycle (or after they were queued, if later), while no sign worker has shown up.
    async fn fail_unassigned(&self, tx: &mut MySqlConnection, row: &VmRow, seen: &Observed) -> anyhow::Result<Vec<String>> {
        let waiting_for_vm = row.state == STARTING || row.state == START_FAILED;
        let Some(first_start) = row.first_start_ms.filter(|_| waiting_for_vm && seen.workers == 0) else { return Ok(Vec::new()) };
        let cutoff = seen.now - self.timing.sign_timeout;
        if first_start > cutoff {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM jobs WHERE state = 'queued' AND target = ? AND {WAIT_START_SQL} <= ? FOR UPDATE SKIP LOCKED"
        ))
        .bind(SIGN_TARGET)
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let message = format!("No Windows signing worker became available within {} of starting the signing VM", human(self.sign_timeout_secs));
        let mut failed = Vec::new();
        for id in ids {
            if let Some(job) = jobs::lock(tx, &id).await?.filter(|j| j.state == state::QUEUED) {
                jobs::finish_failed(tx, &job, state::FAILED, &message).await?;
                tracing::warn!(job_id = %id, "sign job timed out waiting for the signing VM");
                failed.push(id);
            }
        }
        Ok(failed)
    }
}

/// Read the current demand and capacity for `windows-sign`.
async fn observe(tx: &mut MySqlConnection, stale_ms: i64) -> anyhow::Result<Observed> {
    let now = now_ms();
    let (queued, work): (i64, i64) = sqlx::query_as(
        "SELECT \
           (SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND target = ?), \
           (SELECT COUNT(*) FROM jobs WHERE (target = ? AND state IN ('queued', 'assigned', 'running')) \
                OR (state = 'finishing' AND needs_finishing = 'windows'))",
    )
    .bind(SIGN_TARGET)
    .bind(SIGN_TARGET)
    .fetch_one(&mut *tx)
    .await?;
    let workers: Vec<(i32, i64, i64)> = sqlx::query_as(
        "SELECT w.max_concurrent, w.connected_ms, \
           (SELECT COUNT(*) FROM jobs j WHERE j.worker_id = w.id AND j.state IN ('assigned', 'running')) \
         FROM workers w WHERE w.disconnected_ms IS NULL AND w.last_seen_ms > ? AND w.capabilities LIKE ?",
    )
    .bind(now - stale_ms)
    .bind(format!("%,{SIGN_TARGET},%"))
    .fetch_all(&mut *tx)
    .await?;
    Ok(Observed {
        now,
        queued,
        work,
        workers: i64::try_from(workers.len()).unwrap_or(i64::MAX),
        free_slots: workers.iter().map(|(max, _, busy)| (i64::from(*max) - busy).max(0)).sum(),
        newest_worker_ms: workers.iter().map(|w| w.1).max(),
    })
}

/// Run the VM controller every sweep, and at once when a sign job is queued here.
pub fn spawn(ctx: &Ctx, controller: VmController) {
    let cancel = ctx.deps.cancel.clone();
    let wake = ctx.vm_wake.clone();
    let period = ctx.settings.sweep_interval();
    ctx.deps.tracker.spawn(async move {
        crate::sweep::every("vm", period, cancel, Some(wake), || controller.tick()).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing { start_retry: 300_000, sign_timeout: 1_200_000, idle: 1_800_000, failure_backoff: 60_000, stuck: 600_000 };

    fn row(state: &str) -> VmRow {
        VmRow { state: state.into(), last_start_ms: None, first_start_ms: None, start_attempts: 0, last_stop_ms: None, last_work_ms: None }
    }

    fn seen(now: i64, queued: i64, workers: i64, free: i64) -> Observed {
        Observed { now, queued, work: queued, workers, free_slots: free, newest_worker_ms: None }
    }

    #[test]
    fn a_queued_sign_job_without_a_free_worker_starts_the_vm_once() {
        let mut r = row(DEALLOCATED);
        assert_eq!(decide(&mut r, &seen(1_000, 1, 0, 0), &T), Plan::Start);
        assert_eq!((r.state.as_str(), r.first_start_ms, r.start_attempts), (STARTING, Some(1_000), 1));
        // Still starting: no second call until the retry is due.
        assert_eq!(decide(&mut r, &seen(2_000, 1, 0, 0), &T), Plan::Nothing);
        // A free slot somewhere: no call.
        let mut r = row(DEALLOCATED);
        assert_eq!(decide(&mut r, &seen(1_000, 1, 1, 1), &T), Plan::Nothing);
    }

    #[test]
    fn the_start_is_retried_once_after_five_minutes_then_a_new_cycle_after_the_timeout() {
        let mut r = row(DEALLOCATED);
        decide(&mut r, &seen(0, 1, 0, 0), &T);
        assert_eq!(decide(&mut r, &seen(299_999, 1, 0, 0), &T), Plan::Nothing);
        assert_eq!(decide(&mut r, &seen(300_000, 1, 0, 0), &T), Plan::Start);
        assert_eq!(r.start_attempts, 2);
        assert_eq!(decide(&mut r, &seen(900_000, 1, 0, 0), &T), Plan::Nothing);
        assert_eq!(decide(&mut r, &seen(1_200_000, 1, 0, 0), &T), Plan::Start);
        assert_eq!((r.first_start_ms, r.start_attempts), (Some(1_200_000), 1));
    }

    #[test]
    fn a_connected_sign_worker_marks_the_vm_running_and_idle_deallocates_it() {
        let mut r = row(DEALLOCATED);
        decide(&mut r, &seen(0, 1, 0, 0), &T);
        let mut o = seen(10_000, 0, 1, 0);
        o.work = 1;
        o.newest_worker_ms = Some(9_000);
        assert_eq!(decide(&mut r, &o, &T), Plan::Nothing);
        assert_eq!((r.state.as_str(), r.first_start_ms), (RUNNING, None));
        let mut idle = seen(10_000 + T.idle - 1, 0, 1, 1);
        idle.newest_worker_ms = Some(9_000);
        assert_eq!(decide(&mut r, &idle, &T), Plan::Nothing);
        idle.now = 10_000 + T.idle;
        assert_eq!(decide(&mut r, &idle, &T), Plan::Deallocate);
        assert_eq!(r.state, DEALLOCATING);
        // While the call is in flight nothing else happens, even with demand.
        assert_eq!(decide(&mut r, &seen(idle.now + 1, 1, 0, 0), &T), Plan::Nothing);
    }

    #[test]
    fn a_worker_left_over_from_before_the_deallocate_does_not_revive_the_state() {
        let mut r = row(DEALLOCATED);
        r.last_stop_ms = Some(5_000);
        let mut o = seen(6_000, 0, 1, 1);
        o.newest_worker_ms = Some(4_000);
        assert_eq!(decide(&mut r, &o, &T), Plan::Nothing);
        assert_eq!(r.state, DEALLOCATED);
        o.newest_worker_ms = Some(5_500);
        decide(&mut r, &o, &T);
        assert_eq!(r.state, RUNNING);
    }

    #[test]
    fn a_failed_start_is_retried_after_the_backoff_and_a_running_vm_whose_worker_left_is_started() {
        let mut r = row(START_FAILED);
        r.first_start_ms = Some(0);
        r.last_start_ms = Some(0);
        r.start_attempts = 1;
        assert_eq!(decide(&mut r, &seen(59_999, 1, 0, 0), &T), Plan::Nothing);
        assert_eq!(decide(&mut r, &seen(60_000, 1, 0, 0), &T), Plan::Start);
        let mut r = row(RUNNING);
        assert_eq!(decide(&mut r, &seen(1, 1, 1, 0), &T), Plan::Nothing, "busy but up");
        assert_eq!(decide(&mut r, &seen(1, 1, 0, 0), &T), Plan::Start, "its worker is gone");
    }
}
