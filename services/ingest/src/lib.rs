//! Ingest: every write that comes from outside the hub (PROTOCOL.md §3.1–3.7, §3.9, §3.11,
//! §3.12, §6).
//!
//! - [`builds`]: `POST /api/v1/build`, the CLI's submission (multipart, or a raw tarball), with
//!   licence, quota and rate checks, the tarball streamed into the blob store, and the job, its
//!   sealed credentials and its outbox row written in one transaction.
//! - [`artifacts`]: `POST /api/v1/artifact/upload/{job_id}`, a worker's upload under its
//!   job-scoped token.
//! - [`licenses`], [`accounts`], [`admin`], [`status`], [`jobs`]: the small JSON endpoints.
//! - [`access`]: who is calling (admin secret, API token, licence key); [`limits`]: quotas and
//!   rolling-window rate limits kept in MySQL; [`manifest`]: what a submission must contain.
//! - [`body`], [`errors`]: request-body helpers and the ingest error constructors.
//! - [`openapi`]: `GET /api/v1/openapi.json`, the OpenAPI document of every route here.
//! - [`dashboard`]: the operators' web pages at `/admin`, behind a session cookie.
//!
//! Secrets (licence keys, tokens, credentials, the admin secret) are compared by hash or in
//! constant time and never logged; logs carry ids only.

pub mod access;
pub mod accounts;
pub mod admin;
pub mod artifacts;
pub mod body;
pub mod builds;
pub mod dashboard;
pub mod errors;
pub mod inflight;
pub mod jobs;
pub mod keyguard;
pub mod licenses;
pub mod limits;
pub mod manifest;
pub mod openapi;
pub mod status;
pub mod workers;

use std::sync::Arc;

use anyhow::Context as _;
use axum::{
    extract::DefaultBodyLimit,
    middleware::from_fn_with_state,
    routing::{get, post},
    Router,
};
use clap::Parser;
use protocol::Tier;
use shared::{
    auth::CredentialCipher,
    config::ServiceArgs,
    license_hash::LicenseHashing,
    runtime::{run_service, Deps, Service},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest JSON body accepted by the small endpoints (register, verify, account, admin).
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

/// Ingest settings (limits, retention, throttles).
#[derive(Debug, Clone, clap::Args)]
// A group id of our own: the standalone binary flattens several services' `Settings`.
#[group(id = "ingest_settings")]
pub struct Settings {
    /// Largest accepted request body for a build submission, in bytes (base64 text included).
    #[arg(long = "max-body-bytes", env = "PERRY_HUB_MAX_BODY_BYTES", default_value_t = 400 * 1024 * 1024)]
    pub max_body_bytes: u64,
    /// Largest accepted artifact upload, in decoded bytes.
    #[arg(long = "max-artifact-bytes", env = "PERRY_HUB_MAX_ARTIFACT_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_artifact_bytes: u64,
    /// Cap on a free licence's decoded tarball, in bytes.
    #[arg(long = "free-tarball-cap-bytes", env = "PERRY_HUB_FREE_TARBALL_CAP_BYTES", default_value_t = Tier::Free.tarball_cap_bytes())]
    pub free_tarball_cap_bytes: u64,
    /// Cap on a pro licence's decoded tarball, in bytes.
    #[arg(long = "pro-tarball-cap-bytes", env = "PERRY_HUB_PRO_TARBALL_CAP_BYTES", default_value_t = Tier::Pro.tarball_cap_bytes())]
    pub pro_tarball_cap_bytes: u64,
    /// How long a visible artifact is kept, in seconds (0: PERRY_HUB_ARTIFACT_TTL_SECS).
    #[arg(
        long = "artifact-retention-secs",
        env = "PERRY_HUB_ARTIFACT_RETENTION_SECS",
        default_value_t = 0
    )]
    pub artifact_retention_secs: u64,
    /// How long an intermediate `*-precompiled` bundle is kept, in seconds (the finisher deletes
    /// it earlier, when its job ends).
    #[arg(
        long = "intermediate-retention-secs",
        env = "PERRY_HUB_INTERMEDIATE_RETENTION_SECS",
        default_value_t = 86_400
    )]
    pub intermediate_retention_secs: u64,
    /// Licence registrations allowed per client address within the register window.
    #[arg(
        long = "register-limit-per-addr",
        env = "PERRY_HUB_REGISTER_LIMIT_PER_ADDR",
        default_value_t = 10
    )]
    pub register_limit_per_addr: u32,
    /// Licence registrations allowed per device id within the register window.
    #[arg(
        long = "register-limit-per-device",
        env = "PERRY_HUB_REGISTER_LIMIT_PER_DEVICE",
        default_value_t = 3
    )]
    pub register_limit_per_device: u32,
    /// Licence registrations allowed in all within the register window (every address).
    #[arg(
        long = "register-limit-global",
        env = "PERRY_HUB_REGISTER_LIMIT_GLOBAL",
        default_value_t = 1000
    )]
    pub register_limit_global: u32,
    /// Length of the licence registration window, in seconds.
    #[arg(
        long = "register-window-secs",
        env = "PERRY_HUB_REGISTER_WINDOW_SECS",
        default_value_t = 3600
    )]
    pub register_window_secs: u64,
    /// Take the client address from the last `X-Forwarded-For` entry (only behind a proxy that
    /// sets it).
    #[arg(long = "trust-forwarded-for", env = "PERRY_HUB_TRUST_FORWARDED_FOR", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub trust_forwarded_for: bool,
    /// Build submissions without an API token (the licence-key path) that one client address
    /// may have in flight at once on this process (0: no cap).
    #[arg(
        long = "anonymous-uploads-per-addr",
        env = "PERRY_HUB_ANONYMOUS_UPLOADS_PER_ADDR",
        default_value_t = 2
    )]
    pub anonymous_uploads_per_addr: u32,
    /// Build submissions without an API token in flight at once on this process, from every
    /// address together (0: no cap).
    #[arg(
        long = "anonymous-uploads-global",
        env = "PERRY_HUB_ANONYMOUS_UPLOADS_GLOBAL",
        default_value_t = 32
    )]
    pub anonymous_uploads_global: u32,
    /// Failed licence-key lookups (unknown keys) one client address may make within the key
    /// failure window before every key lookup from it is refused (0: no limit).
    #[arg(
        long = "key-failures-per-addr",
        env = "PERRY_HUB_KEY_FAILURES_PER_ADDR",
        default_value_t = 20
    )]
    pub key_failures_per_addr: u32,
    /// Length of the key failure window, in seconds.
    #[arg(
        long = "key-failure-window-secs",
        env = "PERRY_HUB_KEY_FAILURE_WINDOW_SECS",
        default_value_t = 3600
    )]
    pub key_failure_window_secs: u64,
}

impl Settings {
    /// The decoded tarball cap of a tier.
    pub fn tarball_cap(&self, tier: Tier) -> u64 {
        match tier {
            Tier::Free => self.free_tarball_cap_bytes,
            Tier::Pro => self.pro_tarball_cap_bytes,
        }
    }

    /// The largest tarball any tier may send (used while the tier is not known yet).
    pub fn largest_tarball_cap(&self) -> u64 {
        self.free_tarball_cap_bytes.max(self.pro_tarball_cap_bytes)
    }

    /// Check the settings.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_body_bytes > 0,
            "invalid configuration: PERRY_HUB_MAX_BODY_BYTES: must be positive"
        );
        anyhow::ensure!(
            self.max_artifact_bytes > 0,
            "invalid configuration: PERRY_HUB_MAX_ARTIFACT_BYTES: must be positive"
        );
        anyhow::ensure!(
            self.free_tarball_cap_bytes > 0 && self.pro_tarball_cap_bytes > 0,
            "invalid configuration: PERRY_HUB_FREE_TARBALL_CAP_BYTES / PERRY_HUB_PRO_TARBALL_CAP_BYTES: must be positive"
        );
        anyhow::ensure!(
            self.key_failure_window_secs > 0,
            "invalid configuration: PERRY_HUB_KEY_FAILURE_WINDOW_SECS: must be positive"
        );
        anyhow::ensure!(
            self.register_window_secs > 0,
            "invalid configuration: PERRY_HUB_REGISTER_WINDOW_SECS: must be positive"
        );
        Ok(())
    }
}

/// Handler state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Process handles.
    pub deps: Deps,
    /// Limits.
    pub settings: Arc<Settings>,
    /// Seals signing credentials at rest.
    pub cipher: CredentialCipher,
    /// Anonymous uploads in flight.
    pub uploads: Arc<inflight::UploadSlots>,
    /// How licence keys are stored (DEC-26).
    pub hashing: LicenseHashing,
}

impl AppState {
    /// Build the state (fails when the credentials key is unusable).
    pub fn new(deps: &Deps, settings: Settings) -> anyhow::Result<Self> {
        let key = deps.hub.credentials_key().context("credentials key")?;
        Ok(Self {
            deps: deps.clone(),
            uploads: inflight::UploadSlots::new(
                settings.anonymous_uploads_per_addr,
                settings.anonymous_uploads_global,
            ),
            settings: Arc::new(settings),
            cipher: CredentialCipher::new(&key),
            hashing: LicenseHashing::new(&deps.hub.license_pepper),
        })
    }

    /// Seconds a visible artifact is kept.
    pub fn artifact_retention_secs(&self) -> u64 {
        match self.settings.artifact_retention_secs {
            0 => self.deps.hub.artifact_ttl_secs,
            secs => secs,
        }
    }
}

/// Every ingest route (no fallback: the caller adds `shared::http::finish_router`). The small
/// endpoints answer within the request timeout; the two uploads stream for as long as their
/// bytes keep coming (the idle timeout of `shared::serve` bounds their pauses).
pub fn router(state: AppState) -> Router {
    let timeout = state.deps.hub.http.request_timeout();
    let small = Router::new()
        .route("/api/v1/status", get(status::get_status))
        .route("/api/v1/license/register", post(licenses::register_license))
        .route("/api/v1/license/verify", post(licenses::verify_license))
        .route("/api/v1/account", get(accounts::get_account))
        .route("/api/v1/account/create", post(accounts::create_account))
        .route("/api/v1/account/update", post(accounts::update_account))
        .route("/api/v1/admin/update-perry", post(admin::update_perry))
        .route("/api/v1/admin/workers", get(admin::list_workers))
        .route(
            "/api/v1/admin/workers/{name}/drain",
            post(admin::fleet::drain),
        )
        .route(
            "/api/v1/admin/workers/{name}/undrain",
            post(admin::fleet::undrain),
        )
        .route("/api/v1/admin/jobs", get(admin::jobs::list_jobs))
        .route("/api/v1/admin/jobs/{job_id}", get(admin::jobs::get_job))
        .route(
            "/api/v1/admin/jobs/{job_id}/cancel",
            post(admin::actions::cancel_job),
        )
        .route(
            "/api/v1/admin/jobs/{job_id}/requeue",
            post(admin::actions::requeue_job),
        )
        .route("/api/v1/admin/queues", get(admin::fleet::queues))
        .route("/api/v1/admin/outbox", get(admin::fleet::outbox_state))
        .route("/api/v1/admin/outbox/replay", post(admin::fleet::replay))
        .route("/api/v1/admin/licenses", get(admin::licences::list))
        .route("/api/v1/admin/accounts", get(admin::licences::accounts))
        .route("/api/v1/admin/licenses/{id}", get(admin::licences::show))
        .route(
            "/api/v1/admin/licenses/{id}/tier",
            post(admin::licences::set_tier),
        )
        .route(
            "/api/v1/admin/tokens/{id}/revoke",
            post(admin::licences::revoke_token),
        )
        .route("/api/v1/jobs/{job_id}", get(jobs::get_job))
        .route("/api/v1/openapi.json", get(openapi::get_document))
        .merge(dashboard::router())
        .route_layer(from_fn_with_state(
            timeout,
            shared::serve::body::request_timeout,
        ));
    let uploads = Router::new()
        .route("/api/v1/build", post(builds::create_build))
        .route(
            "/api/v1/artifact/upload/{job_id}",
            post(artifacts::upload_artifact),
        );
    small
        .merge(uploads)
        // Applies to the JSON extractors only; the streaming routes count their own bytes.
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .with_state(state)
}

/// Ingest settings when run alone.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ingest",
    about = "Perry Hub ingest: builds, artifact uploads, licences, accounts, admin"
)]
pub struct Config {
    /// Port serving the ingest API and the health endpoints.
    #[arg(long, env = "PERRY_INGEST_PORT", default_value_t = 3456)]
    pub port: u16,
    /// Ingest behaviour.
    #[command(flatten)]
    pub settings: Settings,
    /// Bind address, hub, MySQL, RabbitMQ and blob store settings.
    #[command(flatten)]
    pub common: ServiceArgs,
}

/// Validate everything ingest needs before it connects anywhere.
pub fn validate(config: &Config) -> anyhow::Result<()> {
    let common = &config.common;
    common.hub.validate()?;
    common.hub.validate_admin_secret()?;
    common.amqp.require("ingest")?;
    common.blob.validate()?;
    config.settings.validate()?;
    if common.hub.admin_secret.is_empty() {
        tracing::warn!(
            "development mode: PERRY_HUB_ADMIN_SECRET is empty, admin endpoints answer 403"
        );
    }
    Ok(())
}

/// Run ingest alone on `listener` until `cancel` fires.
pub async fn run(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    validate(&config)?;
    let service = Service {
        name: "ingest",
        args: &config.common,
        uses_broker: true,
        ready_needs_broker: false,
    };
    run_service(service, listener, cancel, |deps| {
        let state = AppState::new(deps, config.settings.clone())?;
        // Convert bare licence hashes in the background; lookups find both forms meanwhile.
        let (pool, hashing) = (deps.pool.clone(), state.hashing.clone());
        deps.tracker.spawn(async move {
            if let Err(error) = shared::license_hash::seal_all(&pool, &hashing).await {
                tracing::error!(%error, "licence keys not converted to the keyed hash");
            }
        });
        Ok(router(state))
    })
    .await
}

/// The `perry-hub ingest` role (builds, uploads, licences, accounts, admin) as a process: with
/// `--check`, check the configuration and the backing services and exit; otherwise bind
/// `PERRY_INGEST_PORT` and [`run`] until SIGTERM.
pub async fn launch(config: Config) -> anyhow::Result<()> {
    validate(&config)?;
    let args = config.common.clone();
    let role = shared::cli::Role {
        name: "ingest",
        args: &args,
        needs: shared::check::Needs::ALL,
    };
    shared::cli::launch(role, config.port, |listener, cancel| {
        run(config, listener, cancel)
    })
    .await
}
