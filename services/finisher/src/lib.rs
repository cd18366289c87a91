//! Finisher: what happens between and after jobs. Any number of replicas may run; every sweep
//! claims its rows with row locks (`FOR UPDATE SKIP LOCKED`) or takes a named sweep lock.
//!
//! - [`stage2`]: consumes `StageFinished` and requeues a two-stage job for `<x>-sign` with its
//!   `<x>-precompiled` bundle as input (PROTOCOL §5.4).
//! - [`vm`] with [`azure`]: starts the Windows signing VM when `windows-sign` work waits without
//!   a free worker, or already when a Windows build's stage 1 is assigned (the prewarm,
//!   DEC-15), retries and times out per A14, deallocates it when idle.
//! - [`reaper`]: requeues jobs whose lease expired (up to three retries), fails jobs a worker
//!   holds past their stage's timeout (DEC-16) and jobs nobody takes (A8), hands over jobs whose
//!   stage-2 message was lost, refreshes the queue-depth gauge.
//! - [`reannounce`]: announces again queued jobs whose broker message was lost (a step of the
//!   reaper).
//! - [`retention`]: deletes expired tarballs, artifacts, tokens and old events (D18), and with
//!   [`partials`] the partial uploads of killed processes (DEC-31).
//! - [`settings`]: every knob (the periodic loop and the sweep lock are `shared::sweep`).

pub mod azure;
pub mod partials;
pub mod reannounce;
pub mod reaper;
pub mod retention;
pub mod settings;
pub mod stage2;
pub mod vm;

use std::sync::Arc;

use clap::Parser;
use shared::{
    config::ServiceArgs,
    runtime::{run_service, Deps, Service},
};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

pub use settings::{AzureSettings, Settings};

/// When a queued job's current wait began: its last entry into `queued` (stage 2, a requeue by
/// the finisher), its last assignment (a requeue elsewhere), or its submission.
pub(crate) const WAIT_START_SQL: &str =
    "CASE WHEN COALESCE(queued_ms, enqueued_ms) > COALESCE(assigned_ms, 0) \
     THEN COALESCE(queued_ms, enqueued_ms) ELSE COALESCE(assigned_ms, 0) END";

/// Standalone finisher settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "finisher",
    about = "Perry Hub finisher: two-stage builds, the Azure signing VM, lost jobs and retention"
)]
pub struct Config {
    /// Port of the health and metrics endpoints.
    #[arg(long, env = "PERRY_FINISHER_PORT", default_value_t = 3460)]
    pub port: u16,
    /// Finisher behaviour.
    #[command(flatten)]
    pub settings: Settings,
    /// Bind address, hub, MySQL, RabbitMQ and blob store settings.
    #[command(flatten)]
    pub common: ServiceArgs,
}

/// What the finisher's tasks share.
#[derive(Clone)]
pub struct AppState {
    /// Process handles.
    pub deps: Deps,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Wakes the VM controller (a sign job was just queued, or a job ended).
    pub vm_wake: Arc<Notify>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// A context over `deps`.
    pub fn new(deps: &Deps, settings: Settings) -> Self {
        Self {
            deps: deps.clone(),
            settings: Arc::new(settings),
            vm_wake: Arc::new(Notify::new()),
        }
    }
}

/// Start the finisher's consumer and sweeps on `deps.tracker`; they stop on `deps.cancel`.
pub fn start(deps: &Deps, settings: Settings) -> anyhow::Result<()> {
    settings.validate()?;
    let ctx = AppState::new(deps, settings);
    match vm::VmController::new(deps, &ctx.settings)? {
        Some(controller) => {
            tracing::info!(vm = %controller.name(), "Azure signing VM control is on");
            vm::spawn(&ctx, controller);
        }
        None => tracing::info!(
            missing = ?ctx.settings.azure.missing(),
            "Azure signing VM control is off: set all six AZURE_* variables to start and deallocate the signing VM on demand"
        ),
    }
    stage2::spawn(&ctx);
    reaper::spawn(&ctx);
    retention::spawn(&ctx);
    Ok(())
}

/// Run the finisher alone until `cancel` fires, serving `/healthz`, `/readyz` and `/metrics`
/// on `listener`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    config.common.amqp.require("finisher")?;
    config.common.blob.validate()?;
    config.settings.validate()?;
    let service = Service {
        name: "finisher (health and metrics)",
        args: &config.common,
        uses_broker: true,
        ready_needs_broker: true,
    };
    run_service(service, listener, cancel, |deps| {
        start(deps, config.settings.clone())?;
        Ok(axum::Router::new())
    })
    .await
}

/// The `perry-hub finisher` role (stage 2, signing VM, reaper, retention) as a process: with
/// `--check`, check the configuration and the backing services and exit; otherwise bind
/// `PERRY_FINISHER_PORT` and [`run`] until SIGTERM.
pub async fn launch(config: Config) -> anyhow::Result<()> {
    config.common.amqp.require("finisher")?;
    config.common.blob.validate()?;
    config.settings.validate()?;
    let args = config.common.clone();
    let role = shared::cli::Role {
        name: "finisher",
        args: &args,
        needs: shared::check::Needs::ALL,
    };
    shared::cli::launch(role, config.port, |listener, cancel| {
        run(config, listener, cancel)
    })
    .await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_setting_has_a_unique_name() {
        super::Config::command().debug_assert();
    }
}
