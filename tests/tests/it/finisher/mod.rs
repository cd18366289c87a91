//! Finisher scenarios: two-stage Windows builds, the Azure signing VM against a fake Azure,
//! lost jobs and the attempt cap, wait and build timeouts, and retention.

mod dead_dispatcher;
mod lost_jobs;
mod overdue;
mod partials;
mod prewarm;
mod retention;
mod signing_vm;
mod support;
mod two_stage;
