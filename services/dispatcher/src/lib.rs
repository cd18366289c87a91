//! Dispatcher: the only service that holds WebSockets.
//!
//! - [`ws`]: `/ws` upgrade and role detection (first valid frame).
//! - [`worker`]: worker sessions: hello, job frames, completion, re-attach, disconnect.
//! - [`subscriber`]: CLI sessions: backlog replay then live events, without gap or duplicate.
//! - [`pump`]: one consumer per target queue, with prefetch equal to the free slots here.
//! - [`fanout`]: this instance's queue of job events and control messages.
//! - [`presence`]: this instance's heartbeat, so its workers can re-attach elsewhere if it dies.
//! - [`reaping`]: jobs whose worker is gone are requeued from here too, not only by the finisher.
//! - [`registry`]: who is connected to this process (workers with their slots, subscribers).
//! - [`conn`]: one connection after the handshake (frames in, bounded frames out), and the
//!   liveness sweep of every socket (pings, silence, stalled writes).

pub mod billing;
pub mod bursts;
pub mod completion;
pub mod conn;
pub mod credentials;
pub mod fanout;
pub mod presence;
pub mod pump;
pub mod reaping;
pub mod registry;
pub mod subscriber;
pub mod worker;
pub mod ws;

use std::sync::Arc;

use anyhow::Context as _;
use axum::{routing::any, Router};
use clap::Parser;
use shared::{
    auth::CredentialCipher,
    config::{HubConfig, ServiceArgs},
    runtime::{run_service, Deps, Service},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Dispatcher settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dispatcher",
    about = "Perry Registry dispatcher: worker and CLI WebSockets, per-target queues"
)]
pub struct Config {
    /// Port serving `/ws` and the health endpoints.
    #[arg(long, env = "PERRY_DISPATCHER_PORT", default_value_t = 3458)]
    pub port: u16,
    /// Dispatcher behaviour.
    #[command(flatten)]
    pub settings: Settings,
    /// Bind address, hub, MySQL, RabbitMQ and blob store settings.
    #[command(flatten)]
    pub common: ServiceArgs,
}

/// Timing of sessions and leases.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "dispatcher-settings")]
pub struct Settings {
    /// Lease of an assigned job; renewed while its worker's socket is alive.
    #[arg(long, env = "PERRY_HUB_LEASE_SECS", default_value_t = 90)]
    pub lease_secs: u64,
    /// How long a disconnected worker's jobs wait for it to reconnect and re-attach before they
    /// are requeued (two reconnect periods of builder-linux/-windows, DEC-32).
    #[arg(long, env = "PERRY_HUB_REATTACH_SECS", default_value_t = 10)]
    pub reattach_secs: u64,
    /// Interval of hub pings (and lease renewal).
    #[arg(long, env = "PERRY_HUB_PING_SECS", default_value_t = 25)]
    pub ping_secs: u64,
    /// A socket silent this long is considered lost.
    #[arg(long, env = "PERRY_HUB_SILENCE_SECS", default_value_t = 90)]
    pub silence_secs: u64,
    /// Time a new connection has to identify itself.
    #[arg(long, env = "PERRY_HUB_IDENTIFY_SECS", default_value_t = 30)]
    pub identify_secs: u64,
    /// Largest accepted WebSocket message before a connection is identified, and from a CLI
    /// subscriber.
    #[arg(long, env = "PERRY_HUB_WS_MAX_MESSAGE_BYTES", default_value_t = 1 << 20)]
    pub max_message_bytes: usize,
    /// Largest accepted WebSocket message from an authenticated worker (a long `log` line is
    /// then cut, not the socket).
    #[arg(long, env = "PERRY_HUB_WS_MAX_WORKER_MESSAGE_BYTES", default_value_t = 4 << 20)]
    pub max_worker_message_bytes: usize,
    /// A write that waits this long for a peer that does not read drops the connection (a
    /// CLI reconnects and replays from storage).
    #[arg(long, env = "PERRY_HUB_WS_WRITE_TIMEOUT_SECS", default_value_t = 30)]
    pub write_timeout_secs: u64,
    /// Most subscriptions one client address holds at once on this process.
    #[arg(
        long,
        env = "PERRY_HUB_WS_MAX_SUBSCRIPTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    pub max_subscriptions_per_address: usize,
    /// Most subscribers one job has at once on this process.
    #[arg(
        long,
        env = "PERRY_HUB_WS_MAX_SUBSCRIBERS_PER_JOB",
        default_value_t = 64
    )]
    pub max_subscribers_per_job: usize,
    /// Requeue jobs whose worker is gone from this dispatcher too, not only from the finisher
    /// (DEC-32), so recovery never waits for one service.
    #[arg(
        long,
        env = "PERRY_HUB_DISPATCHER_REAPS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub reap_lost_jobs: bool,
    /// Overage billing.
    #[command(flatten)]
    pub polar: shared::config::PolarConfig,
}

impl Settings {
    /// Lease length in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        ms(self.lease_secs)
    }

    /// Re-attach window in milliseconds.
    pub fn reattach_ms(&self) -> i64 {
        ms(self.reattach_secs)
    }

    /// Socket liveness timing.
    pub fn liveness(&self) -> conn::sweep::Timing {
        conn::sweep::Timing {
            ping_ms: ms(self.ping_secs),
            silence_ms: ms(self.silence_secs),
            write_timeout_ms: ms(self.write_timeout_secs),
        }
    }

    /// Subscription limits.
    pub fn subscribe_limits(&self) -> registry::SubscribeLimits {
        registry::SubscribeLimits {
            per_address: self.max_subscriptions_per_address,
            per_job: self.max_subscribers_per_job,
        }
    }
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease_secs: 90,
            reattach_secs: 10,
            ping_secs: 25,
            silence_secs: 90,
            identify_secs: 30,
            max_message_bytes: 1 << 20,
            max_worker_message_bytes: 4 << 20,
            write_timeout_secs: 30,
            max_subscriptions_per_address: 256,
            max_subscribers_per_job: 64,
            reap_lost_jobs: true,
            polar: shared::config::PolarConfig::default(),
        }
    }
}

/// Everything a session needs: one shared [`State`], so a connection holds a pointer to it
/// (thousands of idle sockets each keep one).
#[derive(Clone)]
pub struct AppState(Arc<State>);

impl std::ops::Deref for AppState {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct State {
    /// Process handles.
    pub deps: Deps,
    /// Local sockets.
    pub registry: Arc<registry::Registry>,
    /// Timing.
    pub settings: Arc<Settings>,
    /// Credentials decryption.
    pub cipher: CredentialCipher,
    /// This instance's id (recorded on workers and jobs).
    pub instance_id: Arc<str>,
    /// Log bursts to the other replicas (DEC-37).
    pub bursts: bursts::Bursts,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

/// Validate the dispatcher's settings.
pub fn validate(hub: &HubConfig, settings: &Settings) -> anyhow::Result<()> {
    hub.validate()?;
    hub.validate_worker_secret()?;
    if hub.worker_secret.is_empty() {
        tracing::warn!(
            "development mode: PERRY_HUB_WORKER_SECRET is empty, any worker is accepted"
        );
    }
    anyhow::ensure!(
        settings.lease_secs >= 10,
        "invalid configuration: PERRY_HUB_LEASE_SECS: must be at least 10"
    );
    anyhow::ensure!(
        settings.ping_secs >= 1,
        "invalid configuration: PERRY_HUB_PING_SECS: must be at least 1"
    );
    anyhow::ensure!(
        settings.write_timeout_secs >= 1,
        "invalid configuration: PERRY_HUB_WS_WRITE_TIMEOUT_SECS: must be at least 1"
    );
    anyhow::ensure!(
        settings.max_subscriptions_per_address >= 1 && settings.max_subscribers_per_job >= 1,
        "invalid configuration: PERRY_HUB_WS_MAX_SUBSCRIPTIONS_PER_ADDRESS and \
         PERRY_HUB_WS_MAX_SUBSCRIBERS_PER_JOB: must be at least 1"
    );
    Ok(())
}

/// Start the dispatcher's background tasks (pumps, fan-out, presence) and return its context.
pub fn start(deps: &Deps, settings: Settings) -> anyhow::Result<AppState> {
    let key = deps.hub.credentials_key().context("credentials key")?;
    let ctx = AppState(Arc::new(State {
        deps: deps.clone(),
        registry: Arc::new(registry::Registry::default()),
        settings: Arc::new(settings),
        cipher: CredentialCipher::new(&key),
        instance_id: uuid::Uuid::new_v4().to_string().into(),
        bursts: bursts::Bursts::spawn(deps),
    }));
    pump::spawn_all(&ctx);
    fanout::spawn(&ctx);
    presence::spawn(&ctx);
    if ctx.settings.reap_lost_jobs {
        reaping::spawn(&ctx);
    }
    conn::sweep::spawn(
        ctx.registry.sockets.clone(),
        ctx.settings.liveness(),
        deps.cancel.clone(),
        &deps.tracker,
    );
    Ok(ctx)
}

/// `/ws` on the public HTTP origin.
pub fn router(ctx: AppState) -> Router {
    Router::new().route("/ws", any(ws::upgrade)).with_state(ctx)
}

/// The legacy WebSocket listener: any path upgrades.
pub fn legacy_router(ctx: AppState) -> Router {
    Router::new().fallback(ws::upgrade).with_state(ctx)
}

/// Run the dispatcher alone on `listener` until `cancel` fires.
pub async fn run(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    validate(&config.common.hub, &config.settings)?;
    let service = Service {
        name: "dispatcher",
        args: &config.common,
        uses_broker: true,
        ready_needs_broker: true,
    };
    run_service(service, listener, cancel, |deps| {
        Ok(router(start(deps, config.settings.clone())?))
    })
    .await
}

/// The `perry-hub dispatcher` role (worker and CLI WebSockets) as a process: with `--check`, check
/// the configuration and the backing services and exit; otherwise bind `PERRY_DISPATCHER_PORT` and
/// [`run`] until SIGTERM.
pub async fn launch(config: Config) -> anyhow::Result<()> {
    config.common.amqp.require("dispatcher")?;
    config.common.blob.validate()?;
    validate(&config.common.hub, &config.settings)?;
    let args = config.common.clone();
    let role = shared::cli::Role {
        name: "dispatcher",
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
