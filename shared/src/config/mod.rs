//! Typed configuration fragments, read from the environment with clap's `env` support.
//!
//! Each service flattens the fragments it needs into its own `Config` (so `--help` lists every
//! variable) and calls `validate` before doing anything else. Seed variable names
//! (`PERRY_HUB_*`, `PERRY_DB_*`, `AZURE_*`) are kept; URL forms (`DATABASE_URL`, `AMQP_URL`) are
//! accepted in addition. Secrets are [`Secret`]s: redacted in `Debug`, compared in constant time;
//! each can also be read from a file named by `<NAME>_FILE` ([`secret_files`]).

mod amqp;
mod blob;
mod db;
mod http;
mod hub;
mod polar;
mod secret;
pub mod secret_files;
mod service;
#[cfg(test)]
mod tests;
mod workers;

pub use amqp::AmqpConfig;
pub use blob::{BlobBackend, BlobConfig};
pub use db::{DbConfig, DbKind};
pub use http::HttpLimits;
pub use hub::{HubConfig, DEFAULT_PUBLIC_URL};
pub use polar::PolarConfig;
pub use secret::Secret;
pub use service::ServiceArgs;
pub use workers::{WorkerSecret, WorkerSecrets};

/// A configuration error naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// Why it is rejected.
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            reason: reason.into(),
        }
    }
}

fn parse_bool_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected true/false/1/0, got {other:?}")),
    }
}
