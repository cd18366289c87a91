//! Import from the original server (`perry-hub import-legacy`): its licences, accounts, API
//! tokens and usage counters, and optionally its build history, so every key and token it issued
//! keeps working on the hub unchanged (PROTOCOL.md §6 "Existing data").
//!
//! The import runs in three steps, one module each:
//!
//! - [`source`]: read the original's tables (detecting the older layout without
//!   `account_id`, `device_bound` and `project_bundle_id` through `information_schema`), in one
//!   read-only snapshot;
//! - [`map`] and [`plan`]: validate every row (skipping it with a reason when it cannot be
//!   imported faithfully), then compare it with what the hub already holds;
//! - [`write`]: apply the plan in one transaction (never for a dry run).
//!
//! [`report`] counts what happened per table. Keys and tokens are stored hashed
//! ([`shared::auth::hash_token`]) and never printed: rows are named by position and by the first
//! eight hex digits of their SHA-256.

pub mod map;
pub mod plan;
pub mod report;
pub mod source;
pub mod write;

use shared::{
    config::Secret,
    license_hash::{self, LicenseHashing},
};
use sqlx::AnyPool;

pub use report::Report;

/// Options of `perry-hub import-legacy`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The original server's database, `mysql://user:pass@host[:port]/db` (read only).
    #[arg(
        long = "from",
        env = "PERRY_LEGACY_DATABASE_URL",
        hide_env_values = true
    )]
    pub from: Secret,
    /// Also import the build history (`builds`) as finished jobs without artifacts.
    #[arg(long)]
    pub with_builds: bool,
    /// Overwrite hub rows that differ from the original's (by default they are left alone).
    #[arg(long)]
    pub update: bool,
    /// Print what the import would do and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Exit successfully even when rows were skipped.
    #[arg(long)]
    pub allow_skips: bool,
    /// The hub's licence-key pepper (`PERRY_HUB_LICENSE_PEPPER`, DEC-26): imported keys are
    /// stored keyed with it, as the hub stores them. Required once the hub uses one.
    #[arg(
        long = "license-pepper",
        env = "PERRY_HUB_LICENSE_PEPPER",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub license_pepper: Secret,
}

/// Errors that stop an import (a row that cannot be imported is skipped, not an error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--from` URL is not a MySQL URL (the URL itself is never echoed).
    #[error("--from must be a mysql:// or mariadb:// URL (mysql://user:pass@host[:port]/db)")]
    SourceUrl,
    /// The original's database lacks a table or a column every layout has.
    #[error("the source database is not an original Perry Hub database: {0}")]
    NotLegacy(String),
    /// Reading the original's database failed.
    #[error("reading the original server's database: {0}")]
    Source(#[source] sqlx::Error),
    /// The hub changed under the import (a concurrent writer took a key or id first).
    #[error("the hub changed during the import; nothing was written, run it again: {0}")]
    Conflict(#[source] sqlx::Error),
    /// The pepper does not fit the hub's stored keys.
    #[error("{0}")]
    Pepper(#[source] license_hash::SealError),
    /// Reading or writing the hub's database failed.
    #[error("hub database: {0}")]
    Target(#[from] sqlx::Error),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Import the original server's data into the hub's (migrated) database `target`.
pub async fn run(args: &Args, target: &AnyPool) -> Result<Report> {
    let data = source::read(args.from.expose(), args.with_builds).await?;
    tracing::info!(
        layout = %data.layout,
        licenses = data.licenses.len(),
        accounts = data.accounts.len(),
        usage = data.usage.len(),
        builds = data.builds.as_ref().map(Vec::len),
        "original server's data read"
    );
    let hashing = LicenseHashing::new(&args.license_pepper);
    license_hash::check(target, &hashing)
        .await
        .map_err(Error::Pepper)?;
    let plan = plan::build(&data, target, args.update, &hashing).await?;
    if !args.dry_run {
        // Every hub licence keyed first, so the writes can find licences by the keyed hash.
        license_hash::seal_all(target, &hashing)
            .await
            .map_err(Error::Pepper)?;
        write::apply(target, &plan.writes, &hashing).await?;
    }
    Ok(Report::new(&data, plan, args.dry_run))
}
