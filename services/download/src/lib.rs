//! Download: every read of stored bytes (PROTOCOL.md §3.8, §3.10, A3).
//!
//! - [`artifacts`]: `GET /api/v1/dl/{token}`, the CLI's single-use artifact link.
//! - [`tarballs`]: `GET /api/v1/tarball/{job_id}`, the worker's fetch of its job's input.
//! - [`body`]: encoding negotiation (base64 text for the existing clients, raw bytes on
//!   `Accept: application/octet-stream`), response headers, and the streaming body that counts
//!   bytes and tells whether it was sent completely.
//! - [`tokens`]: token shape checks and the atomic single-use claim of a download token.
//! - [`audit`]: the `downloads` audit rows and what happens when a body ends.
//!
//! The service is stateless apart from MySQL and the blob store, so any number of replicas can
//! run. It needs no secret of its own: tokens are compared by their SHA-256 hashes.
//!
//! **Single use.** A download token is claimed with one conditional `UPDATE` (so of concurrent
//! requests exactly one wins) and is *consumed only by a read that completes*: when the blob
//! cannot be opened, or the body stream fails or the client goes away before the last byte, the
//! claim is released and the link stays usable until it expires (D29). A claim whose process
//! died mid-read lapses after `PERRY_HUB_DOWNLOAD_CLAIM_SECS`; a live read renews it, and
//! consumes the token before its last byte goes out, so at most one read completes (DEC-30). A raw download that was
//! interrupted can therefore be resumed with `Range: bytes=N-` on the same link; a ranged read
//! that completes consumes the token like any other read. With the S3 store and
//! `PERRY_S3_PRESIGN_DOWNLOADS`, a raw download is answered with a `307` to a presigned URL
//! valid for [`PRESIGN_TTL`], and the token is consumed by that redirect. Legacy (base64)
//! clients always get a `200` body, as the wire contract requires.

pub mod artifacts;
pub mod audit;
pub mod body;
pub mod tarballs;
pub mod tokens;

use std::time::Duration;

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use blob::BlobError;
use clap::Parser;
use shared::{
    config::ServiceArgs,
    http::{ApiError, ErrorCode},
    runtime::{run_service, Deps, Service},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Lifetime of a presigned S3 URL handed out by a redirect. Short: the client follows the
/// redirect at once, and S3 only checks the expiry when a request starts.
pub const PRESIGN_TTL: Duration = Duration::from_secs(60);

/// Download service settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "download",
    about = "Perry Hub download: single-use artifact links and worker tarball fetches"
)]
pub struct Config {
    /// Port serving `/api/v1/dl`, `/api/v1/tarball` and the health endpoints.
    #[arg(long, env = "PERRY_DOWNLOAD_PORT", default_value_t = 3459)]
    pub port: u16,
    /// Record the client address of a download from the last `X-Forwarded-For` entry (only
    /// behind a proxy that sets it).
    #[arg(
        long = "trust-forwarded-for",
        env = "PERRY_HUB_TRUST_FORWARDED_FOR",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value = "false"
    )]
    pub trust_forwarded_for: bool,
    /// Bind address, hub, MySQL, RabbitMQ and blob store settings.
    #[command(flatten)]
    pub common: ServiceArgs,
}

/// Handler state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Process handles.
    pub deps: Deps,
    /// Take the audited client address from `X-Forwarded-For` (see [`Config`]).
    pub trust_forwarded_for: bool,
}

impl AppState {
    /// Build the state (client addresses are the TCP peers).
    pub fn new(deps: &Deps) -> Self {
        Self {
            deps: deps.clone(),
            trust_forwarded_for: false,
        }
    }

    /// The same state, taking client addresses from `X-Forwarded-For` when `trust` is set.
    pub fn with_trust_forwarded_for(self, trust: bool) -> Self {
        Self {
            trust_forwarded_for: trust,
            ..self
        }
    }
}

/// Every download route.
pub fn router(state: AppState) -> Router {
    // The timeout bounds the handler (lookup, claim, opening the object), not the streamed body,
    // which `shared::serve`'s write-stall timeout bounds.
    let timeout = state.deps.hub.http.request_timeout();
    Router::new()
        .route("/api/v1/dl/{token}", get(artifacts::download_artifact))
        .route("/api/v1/tarball/{job_id}", get(tarballs::get_tarball))
        .route_layer(axum::middleware::from_fn_with_state(
            timeout,
            shared::serve::body::request_timeout,
        ))
        .with_state(state)
}

/// Check the settings this service uses. It needs no secret and no public URL, so unlike the
/// other services it does not require the credentials key.
pub fn validate(config: &Config) -> anyhow::Result<()> {
    // Unused here, but a split deployment runs on RabbitMQ: one rule for the four roles.
    config.common.amqp.require("download")?;
    config.common.blob.validate()?;
    Ok(())
}

/// Run the download service alone on `listener` until `cancel` fires. It never talks to
/// RabbitMQ, so a broker outage does not make it unready.
pub async fn run(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    validate(&config)?;
    let service = Service {
        name: "download",
        args: &config.common,
        uses_broker: false,
        ready_needs_broker: false,
    };
    run_service(service, listener, cancel, |deps| {
        let state = AppState::new(deps).with_trust_forwarded_for(config.trust_forwarded_for);
        Ok(router(state))
    })
    .await
}

/// The `perry-hub download` role (artifact links and worker tarballs) as a process: with `--check`,
/// check the configuration and the backing services and exit; otherwise bind `PERRY_DOWNLOAD_PORT`
/// and [`run`] until SIGTERM.
pub async fn launch(config: Config) -> anyhow::Result<()> {
    validate(&config)?;
    let args = config.common.clone();
    let role = shared::cli::Role {
        name: "download",
        args: &args,
        needs: shared::check::Needs {
            db: true,
            broker: false,
            blob: true,
        },
    };
    shared::cli::launch(role, config.port, |listener, cancel| {
        run(config, listener, cancel)
    })
    .await
}

/// Count one request outcome in the `downloads` metric family.
pub(crate) fn count(kind: &'static str, outcome: &'static str) {
    let labels = vec![
        ("kind".to_owned(), kind.to_owned()),
        ("outcome".to_owned(), outcome.to_owned()),
    ];
    shared::metrics::get()
        .downloads
        .get_or_create(&labels)
        .inc();
}

/// A request that is answered with the error envelope, with the outcome it is counted as.
#[derive(Debug)]
pub(crate) struct Refusal {
    outcome: &'static str,
    error: ApiError,
    /// A header the refusal carries besides the envelope.
    header: Extra,
}

/// The header of a [`Refusal`], if any.
#[derive(Debug, Clone, Copy)]
enum Extra {
    None,
    /// Object size for `Content-Range: bytes */size` on a 416.
    RangeSize(u64),
    /// Seconds for `Retry-After`.
    RetryAfter(u64),
}

impl Refusal {
    pub(crate) fn new(outcome: &'static str, error: ApiError) -> Self {
        Self {
            outcome,
            error,
            header: Extra::None,
        }
    }

    /// The same refusal, telling the client when to try again.
    pub(crate) fn retry_after(self, secs: u64) -> Self {
        Self {
            header: Extra::RetryAfter(secs),
            ..self
        }
    }

    /// A failure to open a blob: a missing object is answered with `missing`, an unsatisfiable
    /// range with 416, anything else with 500 (the cause is logged, never sent).
    pub(crate) fn open_failed(
        err: BlobError,
        missing: impl FnOnce() -> ApiError,
        size: Option<u64>,
    ) -> Self {
        match err {
            BlobError::NotFound => Self::new("missing_blob", missing()),
            BlobError::RangeNotSatisfiable => Self {
                outcome: "range_not_satisfiable",
                error: ApiError::new(
                    ErrorCode::RangeNotSatisfiable,
                    "Requested range not satisfiable",
                ),
                header: size.map_or(Extra::None, Extra::RangeSize),
            },
            other => Self::new("error", ApiError::internal(&other)),
        }
    }

    /// Count the outcome and render the envelope.
    pub(crate) fn respond(self, kind: &'static str) -> Response {
        count(kind, self.outcome);
        let mut resp = self.error.into_response();
        match self.header {
            Extra::None => {}
            Extra::RangeSize(size) => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, value);
                }
            }
            Extra::RetryAfter(secs) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
        }
        resp
    }
}

impl From<sqlx::Error> for Refusal {
    fn from(e: sqlx::Error) -> Self {
        Self::new("error", ApiError::internal(&e))
    }
}
