//! Ingest scenarios over real HTTP against real MariaDB, RabbitMQ and the S3 store: what lands in
//! each, every error code ingest produces, and that refused input leaves nothing behind.

mod accounts;
mod admin;
mod alone;
mod artifact_refusals;
mod artifacts;
mod builds;
mod contention;
mod jobs;
mod licenses;
mod logs;
mod memory;
mod outage;
mod oversize;
mod props;
mod refusals;
mod support;
