//! The job lifecycle: the one place that decides and writes a job's state (PROTOCOL §5.1).
//!
//! - [`JobState`], [`Target`], [`SignPlatform`] and [`Priority`]: the job's vocabulary as types,
//!   decoded from and encoded to the database.
//! - [`Job`]: a job row, with [`load`], [`lock`], [`claim`] and [`position`].
//! - [`transition`]: one function per arrow of the state table (submit, assign, start, renew,
//!   re-attach, report an error, cancel, hand stage 1 over, queue stage 2, complete, requeue a
//!   lost attempt, time out an overdue attempt, fail). Each takes the caller's transaction and
//!   writes the events and outbox rows of the change there, so a state change and its
//!   announcement commit together. Every transition is conditional on the state it starts
//!   from, so a repeat is harmless.
//! - [`event`]: the job's ordered event log ([`Event`]: what subscribers are sent, stored typed).
//! - [`artifacts`]: a job's artifacts, their storage keys and download links.
//! - [`reap`]: finding jobs whose worker is gone and queueing them again, from any service.
//!
//! No other crate writes `jobs.state`, `attempt`, the lease or the token columns; `make lint`
//! checks that (`scripts/check-job-writes.sh`).

pub mod artifacts;
pub mod event;
pub mod reap;
mod row;
mod state;
mod target;
pub mod transition;

pub use event::Event;
pub use row::{
    claim, held_by_name, load, load_with_position, lock, lock_with_credentials, position,
    queue_position, Job, COLUMNS,
};
pub use shared::queue::{Error, Result};
pub use state::{JobState, UnknownState};
pub use target::{Priority, SignPlatform, Target, UnknownTarget};

/// Requeues after lost workers before a job fails (so at most four dispatches per stage).
pub const MAX_RETRIES: i32 = 3;
