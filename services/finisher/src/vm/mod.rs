//! Power of the Windows signing VM (PROTOCOL §5.4, A14, D20, DEC-15). Each tick observes MySQL
//! — queued and running `windows-sign` work, Windows builds in stage 1 (the prewarm), connected
//! `windows-sign` workers and their free slots — and decides, under a row lock on the VM's
//! `vm_state` row, whether to start or deallocate it. The decision is recorded (claimed) and
//! committed *before* the Azure call, so two replicas or two concurrent triggers make the call
//! once; the call itself runs outside any transaction.
//!
//! States: `deallocated` → `starting` (start called) → `running` (a `windows-sign` worker
//! connected) → `deallocating` → `deallocated`; `start_failed` after a failed start call.
//! A start cycle begins with the first start call: the call is retried once after
//! `start_retry` if jobs are still unassigned, and after `sign_timeout` the jobs still waiting
//! fail (A14) and a new cycle may begin.

mod decide;

use shared::{clock::now_ms, runtime::Deps};
use sqlx::AnyConnection;

use crate::{
    azure::AzureClient,
    settings::{human, ms, Settings},
    AppState, WAIT_START_SQL,
};

/// The only target served by the VM (D20: never started for other stalls).
pub const SIGN_TARGET: &str = "windows-sign";

pub use decide::{decide, vm_states, Observed, Plan, Timing, VmRow};
use vm_states::*;

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
    prewarm: bool,
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
            stuck: ms(a.poll_timeout_secs.saturating_add(
                a.http_timeout_secs
                    .saturating_mul(u64::from(a.max_attempts)),
            ))
            .saturating_add(60_000),
        };
        Ok(Some(Self {
            deps: deps.clone(),
            azure: AzureClient::new(a)?,
            // The VM name (at most 64 characters) fits `vm_state.name`; one hub drives one VM.
            name: format!("azure:{}", a.vm_name.trim()),
            timing,
            sign_timeout_secs: a.sign_timeout_secs,
            stale_ms: ms(settings.worker_stale_secs),
            prewarm: a.prewarm,
        }))
    }

    /// The `vm_state` row name of this VM.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Observe, decide under the row lock, commit, then make the Azure call.
    pub async fn tick(&self) -> anyhow::Result<Tick> {
        self.ensure_row().await?;
        let mut tx = shared::db::begin(&self.deps.pool).await?;
        let mut row: VmRow = sqlx::query_as(&shared::db::sql(
            shared::db::Dialect::of(&tx),
            "SELECT state, last_start_ms, first_start_ms, start_attempts, last_stop_ms, last_work_ms FROM vm_state WHERE name = ? FOR UPDATE",
        ))
        .bind(&self.name)
        .fetch_one(&mut *tx)
        .await?;
        let before = row.clone();
        let mut seen = observe(&mut tx, self.stale_ms, self.prewarm).await?;
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
            Plan::Start => {
                self.record(self.azure.start_vm().await.err(), STARTING, START_FAILED)
                    .await?
            }
            Plan::Deallocate => {
                self.record(
                    self.azure.deallocate_vm().await.err(),
                    DEALLOCATING,
                    RUNNING,
                )
                .await?
            }
        };
        Ok(Tick {
            plan,
            ok,
            timed_out,
        })
    }

    async fn ensure_row(&self) -> anyhow::Result<()> {
        // A plain read first: INSERT IGNORE would wait on another replica's row lock.
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vm_state WHERE name = ?")
            .bind(&self.name)
            .fetch_one(&self.deps.pool)
            .await?;
        if exists == 0 {
            sqlx::query(&shared::db::sql(
                shared::db::Dialect::of_pool(&self.deps.pool),
                "INSERT IGNORE INTO vm_state (name, state, updated_ms) VALUES (?, ?, ?)",
            ))
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
    async fn record(
        &self,
        error: Option<crate::azure::AzureError>,
        claimed: &str,
        on_failure: &str,
    ) -> anyhow::Result<bool> {
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
        res.bind(now)
            .bind(&self.name)
            .bind(claimed)
            .execute(&self.deps.pool)
            .await?;
        Ok(error.is_none())
    }

    /// A14: fail queued sign jobs still unassigned `sign_timeout` after the first start of the
    /// cycle (or after they were queued, if later), while no sign worker has shown up.
    async fn fail_unassigned(
        &self,
        tx: &mut AnyConnection,
        row: &VmRow,
        seen: &Observed,
    ) -> anyhow::Result<Vec<String>> {
        let waiting_for_vm = row.state == STARTING || row.state == START_FAILED;
        let Some(first_start) = row
            .first_start_ms
            .filter(|_| waiting_for_vm && seen.workers == 0)
        else {
            return Ok(Vec::new());
        };
        let cutoff = seen.now - self.timing.sign_timeout;
        if first_start > cutoff {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = sqlx::query_scalar(&shared::db::sql(
            shared::db::Dialect::of(tx),
            &format!("SELECT id FROM jobs WHERE state = 'queued' AND target = ? AND {WAIT_START_SQL} <= ? FOR UPDATE SKIP LOCKED"),
        ))
        .bind(SIGN_TARGET)
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let message = format!(
            "No Windows signing worker became available within {} of starting the signing VM",
            human(self.sign_timeout_secs)
        );
        let mut failed = Vec::new();
        for id in ids {
            if let Some(job) = job::lock(tx, &id)
                .await?
                .filter(|j| j.state == job::JobState::Queued)
            {
                job::transition::fail(tx, &job, job::transition::Unsuccessful::Failed, &message)
                    .await?;
                tracing::warn!(job_id = %id, "sign job timed out waiting for the signing VM");
                failed.push(id);
            }
        }
        Ok(failed)
    }
}

/// Read the current demand and capacity for `windows-sign`; with the prewarm, also the Windows
/// builds still in stage 1 (on a worker or handed over), which will need the VM (DEC-15).
async fn observe(tx: &mut AnyConnection, stale_ms: i64, prewarm: bool) -> anyhow::Result<Observed> {
    let now = now_ms();
    let (queued, signing, handed_over, stage_one): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT \
           (SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND target = ?), \
           (SELECT COUNT(*) FROM jobs WHERE target = ? AND state IN ('queued', 'assigned', 'running')), \
           (SELECT COUNT(*) FROM jobs WHERE state = 'finishing' AND needs_finishing = 'windows'), \
           (SELECT COUNT(*) FROM jobs WHERE stage = 1 AND target = 'windows' AND state IN ('assigned', 'running'))",
    )
    .bind(SIGN_TARGET)
    .bind(SIGN_TARGET)
    .fetch_one(&mut *tx)
    .await?;
    let stage_one = if prewarm { stage_one } else { 0 };
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
        work: signing + handed_over + stage_one,
        coming: if prewarm { handed_over + stage_one } else { 0 },
        workers: i64::try_from(workers.len()).unwrap_or(i64::MAX),
        free_slots: workers
            .iter()
            .map(|(max, _, busy)| (i64::from(*max) - busy).max(0))
            .sum(),
        newest_worker_ms: workers.iter().map(|w| w.1).max(),
    })
}

/// Run the VM controller every sweep, and at once when a sign job is queued here.
pub fn spawn(ctx: &AppState, controller: VmController) {
    let cancel = ctx.deps.cancel.clone();
    let wake = ctx.vm_wake.clone();
    let period = ctx.settings.sweep_interval();
    ctx.deps.tracker.spawn(async move {
        shared::sweep::every("vm", period, cancel, Some(wake), || controller.tick()).await;
    });
}
