//! Infrastructure shared by the Perry Hub services.
//!
//! - [`config`]: typed configuration fragments read from the environment (clap `env`).
//! - [`db`]: MySQL pool, the embedded [`MIGRATOR`] and small query helpers.
//! - [`queue`]: RabbitMQ topology, the outbox relay and a typed consumer.
//! - [`auth`]: random tokens stored hashed, constant-time comparison, AES-GCM credentials.
//! - [`license_hash`]: licence keys stored with a keyed hash (server pepper).
//! - [`http`]: the JSON error envelope, health/readiness/metrics routes and serving helpers.
//! - [`serve`]: HTTP listeners with connection caps and header, body and write timeouts.
//! - [`runtime`]: the handles one process shares (pool, blob store, brokers, relay, shutdown).
//! - [`cli`]: the skeleton of every binary and role; [`check`]: `--check`, the backing
//!   services' versions.
//! - [`telemetry`], [`shutdown`], [`clock`].

pub mod auth;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod http;
pub mod license_hash;
pub mod metrics;
pub mod queue;
pub mod runtime;
pub mod serve;
pub mod shutdown;
pub mod sweep;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use db::MIGRATOR;

/// Choose rustls's crypto provider for the process (aws-lc-rs, which the S3 client uses too):
/// with more than one compiled in, rustls cannot pick one itself. Idempotent; called before
/// every TLS connection to MySQL or RabbitMQ.
pub fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
