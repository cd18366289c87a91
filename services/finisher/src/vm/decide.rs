//! The VM's state machine as a pure function: from the recorded `vm_state` row and what MySQL
//! shows now, decide whether to call `start`, `deallocate` or nothing, and update the row with
//! the observation and the claim of the call.

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
    /// `windows-sign` jobs queued or running, and Windows jobs about to become one (with the
    /// prewarm, also Windows builds in stage 1).
    pub work: i64,
    /// With the prewarm (DEC-15): Windows builds in stage 1 on a worker or handed over, which
    /// will need the VM shortly.
    pub coming: i64,
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
    let fresh_worker = o
        .newest_worker_ms
        .is_some_and(|c| row.last_stop_ms.is_none_or(|s| c > s));
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
    // Sign jobs wait without a free slot; or (prewarm) Windows builds will need the VM soon
    // and no sign worker is up: boot it now, so the boot overlaps stage 1.
    let demand = o.queued > 0 && o.free_slots == 0;
    let prewarm = o.coming > 0 && o.workers == 0;
    if demand || prewarm {
        let cycle_over = since(row.first_start_ms) >= t.sign_timeout;
        let start = match row.state.as_str() {
            // Known up unless its worker is gone (builder-windows deallocates itself).
            RUNNING => o.workers == 0,
            // Retries and new cycles (A14) are for sign jobs that wait, not for the prewarm.
            STARTING => {
                demand
                    && (cycle_over
                        || (row.start_attempts < 2 && since(row.last_start_ms) >= t.start_retry))
            }
            START_FAILED => demand && (cycle_over || since(row.last_start_ms) >= t.failure_backoff),
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
    if on
        && o.work == 0
        && since(idle_since) >= t.idle
        && since(row.last_stop_ms) >= t.failure_backoff
    {
        row.state = DEALLOCATING.to_owned();
        row.last_stop_ms = Some(now);
        return Plan::Deallocate;
    }
    Plan::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        start_retry: 300_000,
        sign_timeout: 1_200_000,
        idle: 1_800_000,
        failure_backoff: 60_000,
        stuck: 600_000,
    };

    fn row(state: &str) -> VmRow {
        VmRow {
            state: state.into(),
            last_start_ms: None,
            first_start_ms: None,
            start_attempts: 0,
            last_stop_ms: None,
            last_work_ms: None,
        }
    }

    fn seen(now: i64, queued: i64, workers: i64, free: i64) -> Observed {
        Observed {
            now,
            queued,
            work: queued,
            workers,
            free_slots: free,
            newest_worker_ms: None,
            coming: 0,
        }
    }

    /// `coming` Windows builds in stage 1 (counted as work, as the prewarm does).
    fn stage_one(now: i64, coming: i64, workers: i64) -> Observed {
        Observed {
            work: coming,
            coming,
            ..seen(now, 0, workers, workers)
        }
    }

    #[test]
    fn a_windows_build_in_stage_one_starts_the_vm_once_and_keeps_it_from_idling_out() {
        let mut r = row(DEALLOCATED);
        assert_eq!(decide(&mut r, &stage_one(1_000, 1, 0), &T), Plan::Start);
        assert_eq!(
            (r.state.as_str(), r.first_start_ms, r.start_attempts),
            (STARTING, Some(1_000), 1)
        );
        // One start in flight: no retry and no new cycle for the prewarm alone, however long
        // stage 1 takes.
        for now in [2_000, T.start_retry + 1_000, T.sign_timeout + 1_000] {
            assert_eq!(decide(&mut r, &stage_one(now, 2, 0), &T), Plan::Nothing);
        }
        // Stage 2 queued after the retry delay: the A14 retry still applies.
        assert_eq!(
            decide(&mut r, &seen(T.start_retry + 2_000, 1, 0, 0), &T),
            Plan::Start
        );
        // Up and busy with stage 1 for longer than the idle window: no deallocate.
        let mut r = row(RUNNING);
        r.last_work_ms = Some(0);
        let mut o = stage_one(T.idle * 2, 1, 1);
        o.newest_worker_ms = Some(0);
        assert_eq!(decide(&mut r, &o, &T), Plan::Nothing);
        assert_eq!(r.last_work_ms, Some(T.idle * 2));
    }

    #[test]
    fn the_prewarm_leaves_a_vm_alone_that_is_up_or_failed_and_a_failed_stage_one_idles_out() {
        // A sign worker is connected: nothing to boot.
        let mut r = row(DEALLOCATED);
        let mut o = stage_one(1_000, 1, 1);
        o.newest_worker_ms = Some(500);
        assert_eq!(decide(&mut r, &o, &T), Plan::Nothing);
        // Up, but its worker left (builder-windows deallocated itself): start again.
        let mut r = row(RUNNING);
        assert_eq!(decide(&mut r, &stage_one(1_000, 1, 0), &T), Plan::Start);
        // A failed start is retried for waiting sign jobs only.
        let mut r = row(START_FAILED);
        r.last_start_ms = Some(0);
        r.first_start_ms = Some(0);
        assert_eq!(
            decide(&mut r, &stage_one(T.failure_backoff, 1, 0), &T),
            Plan::Nothing
        );
        // Stage 1 failed: no work any more, deallocated once the idle window has passed.
        let mut r = row(DEALLOCATED);
        decide(&mut r, &stage_one(0, 1, 0), &T);
        assert_eq!(
            decide(&mut r, &seen(T.idle - 1, 0, 0, 0), &T),
            Plan::Nothing
        );
        assert_eq!(decide(&mut r, &seen(T.idle, 0, 0, 0), &T), Plan::Deallocate);
    }

    #[test]
    fn a_queued_sign_job_without_a_free_worker_starts_the_vm_once() {
        let mut r = row(DEALLOCATED);
        assert_eq!(decide(&mut r, &seen(1_000, 1, 0, 0), &T), Plan::Start);
        assert_eq!(
            (r.state.as_str(), r.first_start_ms, r.start_attempts),
            (STARTING, Some(1_000), 1)
        );
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
        assert_eq!(
            decide(&mut r, &seen(idle.now + 1, 1, 0, 0), &T),
            Plan::Nothing
        );
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
        assert_eq!(
            decide(&mut r, &seen(1, 1, 1, 0), &T),
            Plan::Nothing,
            "busy but up"
        );
        assert_eq!(
            decide(&mut r, &seen(1, 1, 0, 0), &T),
            Plan::Start,
            "its worker is gone"
        );
    }
}
