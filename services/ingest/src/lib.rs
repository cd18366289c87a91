//! Ingest: every write from outside (builds, artifact uploads, licences, accounts, admin).

use axum::Router;
use shared::runtime::Deps;

/// Ingest settings (limits).
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Largest accepted request body for a build submission, in bytes.
    #[arg(long = "max-body-bytes", env = "PERRY_HUB_MAX_BODY_BYTES", default_value_t = 400 * 1024 * 1024)]
    pub max_body_bytes: u64,
}

/// Handler state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Process handles.
    pub deps: Deps,
    /// Limits.
    pub settings: std::sync::Arc<Settings>,
}

impl AppState {
    /// Build the state.
    pub fn new(deps: &Deps, settings: Settings) -> anyhow::Result<Self> {
        Ok(Self { deps: deps.clone(), settings: std::sync::Arc::new(settings) })
    }
}

/// Every ingest route.
pub fn router(state: AppState) -> Router {
    Router::new().with_state(state)
}
