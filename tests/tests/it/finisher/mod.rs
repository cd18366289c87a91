//! Finisher scenarios: two-stage Windows builds, the Azure signing VM against a fake Azure,
//! lost jobs and the attempt cap, wait timeouts, and retention.

mod fake_azure;
mod lost_jobs;
mod retention;
mod signing_vm;
mod support;
mod two_stage;
