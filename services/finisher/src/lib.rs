//! Finisher: two-stage builds, the Azure signing VM, lost jobs and retention.

use shared::runtime::Deps;

/// Finisher settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Seconds between sweeps.
    #[arg(long = "sweep-secs", env = "PERRY_FINISHER_SWEEP_SECS", default_value_t = 5)]
    pub sweep_secs: u64,
}

/// Start the finisher's consumers and sweeps on `deps.tracker`.
pub fn start(deps: &Deps, settings: Settings) -> anyhow::Result<()> {
    let _ = (deps, settings);
    Ok(())
}
