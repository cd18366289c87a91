//! `perry-hub` as a library: ingest, dispatcher, finisher and download composed in one process,
//! on one HTTP port (the API, `/ws` and the health routes) plus the legacy WebSocket port (any
//! path upgrades).
//!
//! - [`Config`]: every setting of the process (`--help` of `perry-hub`).
//! - [`start`]: start the services' background work on shared [`Deps`] and compose their routes
//!   into one [`App`]. The test harness calls it too, so tests run the real composition.
//! - [`serve`]: serve an [`App`] on its [`Listeners`] until cancelled.
//! - [`run`]: validate, connect, migrate, [`start`], [`serve`], shut down.
//! - [`launch`]: the `all` role of the `perry-hub` binary (`--check`, or bind and [`run`]).
//! - [`admin`]: `perry-hub admin …`, the operator API from a terminal ([`admin_tables`]).

pub mod admin;
pub mod admin_tables;
pub mod queue_lock;
pub mod to_mysql;

use anyhow::Context as _;
use axum::Router;
use shared::{config::ServiceArgs, runtime::Deps};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every setting of the all-in-one hub.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// HTTP port: the API, `/ws` and the health endpoints.
    #[arg(long, env = "PERRY_HUB_HTTP_PORT", default_value_t = 3456)]
    pub http_port: u16,
    /// Legacy WebSocket port (any path upgrades); 0 disables it.
    #[arg(long, env = "PERRY_HUB_WS_PORT", default_value_t = 3457)]
    pub ws_port: u16,
    /// Bind address, hub, MySQL, RabbitMQ and blob store settings.
    #[command(flatten)]
    pub common: ServiceArgs,
    /// Ingest behaviour.
    #[command(flatten)]
    pub ingest: ingest::Settings,
    /// Dispatcher timing.
    #[command(flatten)]
    pub dispatcher: dispatcher::Settings,
    /// Finisher behaviour.
    #[command(flatten)]
    pub finisher: finisher::Settings,
}

impl Config {
    /// Check every setting before connecting anywhere.
    pub fn validate(&self) -> anyhow::Result<()> {
        let hub = &self.common.hub;
        hub.validate()?;
        self.common.amqp.validate()?;
        self.common.blob.validate()?;
        hub.validate_admin_secret()?;
        self.ingest.validate()?;
        dispatcher::validate(hub, &self.dispatcher)?;
        self.finisher.validate()?;
        if hub.dev_mode {
            tracing::warn!("development mode: do not expose this hub to the internet");
        }
        Ok(())
    }

    /// Bind the HTTP port and, unless it is 0, the legacy WebSocket port.
    pub async fn listen(&self) -> anyhow::Result<Listeners> {
        let http = self
            .common
            .listen(self.http_port)
            .await
            .context("binding the HTTP port")?;
        let legacy_ws = match self.ws_port {
            0 => None,
            port => Some(
                self.common
                    .listen(port)
                    .await
                    .context("binding the legacy WebSocket port")?,
            ),
        };
        Ok(Listeners { http, legacy_ws })
    }

    /// The settings of the composed services.
    pub fn services(&self) -> Services {
        Services {
            ingest: self.ingest.clone(),
            dispatcher: self.dispatcher.clone(),
            finisher: Some(self.finisher.clone()),
        }
    }
}

/// The settings of the services composed into one process.
#[derive(Debug, Clone)]
pub struct Services {
    /// Ingest limits and throttles (its `trust_forwarded_for` applies to downloads too).
    pub ingest: ingest::Settings,
    /// Dispatcher timing.
    pub dispatcher: dispatcher::Settings,
    /// Finisher settings; `None` leaves the finisher off (tests that drive stage 2 and the
    /// sweeps themselves).
    pub finisher: Option<finisher::Settings>,
}

/// The composed hub, ready to serve.
#[derive(Debug, Clone)]
pub struct App {
    /// Every HTTP route: ingest, download, `/ws`, health, with the shared layers.
    pub http: Router,
    /// The legacy WebSocket listener's router (any path upgrades).
    pub legacy_ws: Router,
    /// The dispatcher's context (who is connected here).
    pub dispatcher: dispatcher::AppState,
    /// Connection caps and timeouts of both listeners.
    pub limits: shared::config::HttpLimits,
}

/// Where the hub listens.
#[derive(Debug)]
pub struct Listeners {
    /// The HTTP port.
    pub http: TcpListener,
    /// The legacy WebSocket port, if enabled.
    pub legacy_ws: Option<TcpListener>,
}

/// Start every service's background work on `deps` (dispatcher pumps and fan-out, the finisher's
/// consumer and sweeps; on the in-process queue, its rebuild from MySQL) and compose their
/// routes. The outbox relay is the caller's: call [`Deps::spawn_relay`] once per process.
pub fn start(deps: &Deps, services: Services) -> anyhow::Result<App> {
    if deps.queue.is_in_process() {
        tracing::info!(
            "queue: in-process (AMQP_URL is not set): no RabbitMQ needed; rebuilt from the database at \
             start, so this hub must be the only process on its database; set AMQP_URL to use RabbitMQ"
        );
        rebuild_queue(deps);
    } else {
        tracing::info!("queue: RabbitMQ (AMQP_URL)");
    }
    let dispatch = dispatcher::start(deps, services.dispatcher).context("dispatcher")?;
    if let Some(settings) = services.finisher {
        finisher::start(deps, settings).context("finisher")?;
    }
    let trust_forwarded_for = services.ingest.trust_forwarded_for;
    let ingest_state = ingest::AppState::new(deps, services.ingest).context("ingest")?;
    let download_state =
        download::AppState::new(deps).with_trust_forwarded_for(trust_forwarded_for);
    let http = ingest::router(ingest_state)
        .merge(download::router(download_state))
        .merge(dispatcher::router(dispatch.clone()))
        .merge(shared::http::health_router(
            deps.ready_checks(),
            deps.pool.clone(),
        ));
    Ok(App {
        http: shared::http::finish_router(http),
        legacy_ws: dispatcher::legacy_router(dispatch.clone()),
        dispatcher: dispatch,
        limits: deps.hub.http.clone(),
    })
}

/// The in-process queue is empty at start: announce the queued jobs again (retrying while the
/// database is unavailable), so they are offered as soon as workers connect.
fn rebuild_queue(deps: &Deps) {
    let pool = deps.pool.clone();
    let cancel = deps.cancel.clone();
    let relay = deps.outbox.clone();
    deps.tracker.spawn(async move {
        let mut backoff = shared::queue::Backoff::default();
        loop {
            match finisher::reannounce::announce_all_queued(&pool).await {
                Ok(n) => {
                    tracing::info!(jobs = n, "in-process queue rebuilt: queued jobs announced");
                    relay.notify_one();
                    return;
                }
                Err(error) => tracing::warn!(%error, "rebuilding the in-process queue; retrying"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {},
            }
        }
    });
}

/// Serve `app` on `listeners` until `cancel` fires (or a listener fails, which cancels the
/// other), then drain in-flight requests.
pub async fn serve(
    app: App,
    listeners: Listeners,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut servers = tokio::task::JoinSet::new();
    let c = cancel.clone();
    let App {
        http,
        legacy_ws,
        limits,
        ..
    } = app;
    let http_limits = limits.clone();
    servers.spawn(async move {
        shared::http::serve(listeners.http, http, &http_limits, c.cancelled_owned()).await
    });
    if let Some(legacy) = listeners.legacy_ws {
        tracing::info!(addr = %legacy.local_addr()?, "legacy WebSocket listener (any path)");
        let c = cancel.clone();
        servers.spawn(async move {
            shared::http::serve(legacy, legacy_ws, &limits, c.cancelled_owned()).await
        });
    }
    while let Some(result) = servers.join_next().await {
        if let Err(error) = result.context("server task")? {
            cancel.cancel();
            return Err(error).context("serving HTTP");
        }
    }
    Ok(())
}

/// Run the whole hub on `listeners` until `cancel` fires: validate, connect, apply migrations,
/// [`start`], [`serve`], then stop background work and close connections.
pub async fn run(
    mut config: Config,
    listeners: Listeners,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    config.common.db.embedded_allowed = true;
    config.validate()?;
    let common = &config.common;
    let deps = Deps::connect(
        &common.db,
        &common.amqp,
        &common.blob,
        &common.hub,
        cancel.clone(),
    )
    .await
    .context("connecting to the database and the blob store")?;
    shared::db::migrate(&deps.pool).await?;
    let hashing = shared::license_hash::LicenseHashing::new(&common.hub.license_pepper);
    shared::license_hash::seal_all(&deps.pool, &hashing).await?;
    if !hashing.peppered() {
        tracing::warn!(
            "PERRY_HUB_LICENSE_PEPPER is not set: licence keys are stored as bare SHA-256 hashes"
        );
    }
    // One process per in-process queue, and per embedded database (its sweeps and its single
    // writer assume one process).
    if deps.queue.is_in_process() || shared::db::Dialect::of_pool(&deps.pool).is_sqlite() {
        queue_lock::hold(&deps).await?;
    }
    deps.spawn_relay();
    let app = start(&deps, config.services())?;
    tracing::info!(
        addr = %listeners.http.local_addr()?,
        public_url = %deps.hub.public_url(),
        "perry-hub listening (HTTP + /ws)"
    );
    let grace = config.common.shutdown_grace();
    let (served, deadline) =
        shared::runtime::within_grace(serve(app, listeners, cancel.clone()), &cancel, grace).await;
    deps.shutdown(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await;
    tracing::info!("perry-hub stopped");
    served.unwrap_or(Ok(()))
}

/// `perry-hub all` as a process: with `--check`, check the configuration and every backing
/// service and exit; otherwise bind both ports and [`run`] until SIGTERM.
pub async fn launch(mut config: Config) -> anyhow::Result<()> {
    config.common.db.embedded_allowed = true;
    config.validate()?;
    if config.common.check {
        return shared::check::run("perry-hub", &config.common, shared::check::Needs::ALL).await;
    }
    let listeners = config.listen().await?;
    run(config, listeners, shared::shutdown::token_from_signal()).await
}
