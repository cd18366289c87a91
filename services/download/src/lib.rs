//! Download: tokenized artifact downloads and worker tarball fetches.

use axum::Router;
use shared::runtime::Deps;

/// Handler state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Process handles.
    pub deps: Deps,
}

impl AppState {
    /// Build the state.
    pub fn new(deps: &Deps) -> Self {
        Self { deps: deps.clone() }
    }
}

/// Every download route.
pub fn router(state: AppState) -> Router {
    Router::new().with_state(state)
}
