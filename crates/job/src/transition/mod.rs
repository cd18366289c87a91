//! One function per arrow of the state table (PROTOCOL §5.1). Each runs in the caller's
//! transaction (the caller owns begin and commit) and is conditional on the state it leaves,
//! so a repeated or stale call changes nothing.
//!
//! | from | to | function |
//! |---|---|---|
//! | new | queued | [`submit`] |
//! | new | completed/failed/cancelled (imported history) | [`record_finished`] |
//! | queued | assigned | [`assign`] |
//! | assigned | running | [`start`] |
//! | assigned/running | (lease) | [`renew_leases`], [`shorten_leases`], [`expire_lease`], [`reattach`] |
//! | assigned/running | (error reported) | [`report_error`] |
//! | running | finishing | [`hand_over`] |
//! | finishing | queued (stage 2) | [`queue_stage_two`] |
//! | running | completed | [`complete`] |
//! | assigned/running | queued or failed | [`requeue_lost`], [`retry_lost_upload`] |
//! | assigned/running | failed (past the stage's time limit) | [`time_out`] |
//! | queued/finishing, assigned/running | cancelled, flagged | [`cancel`] |
//! | any active | failed or cancelled | [`fail`] |
//! | failed | queued (an operator's requeue) | [`requeue_failed`] |

mod dispatch;
mod end;
mod lost;
mod operator;
mod overdue;
mod submit;

pub use dispatch::{
    assign, expire_lease, reason, reattach, renew_leases, report_error, shorten_leases, start,
    Assignment, DISPATCHER_STALE_MS, MAX_REASON_CHARS,
};
pub use end::{
    cancel, complete, fail, fail_build, hand_over, queue_stage_two, Cancelled, StageTwo,
    Unsuccessful,
};
pub use lost::{requeue_lost, retry_lost_upload, LostOutcome};
pub use operator::{requeue_failed, NotRequeued};
pub use overdue::time_out;
pub use submit::{announce_again, announce_queued, record_finished, submit, FinishedJob, NewJob};
