//! HTTP plumbing shared by the services: the `{"error":{"code","message"}}` envelope
//! ([`ApiError`]), a JSON extractor whose rejections use it, the health/readiness/metrics routes,
//! a middleware that wraps every framework error (404, 405, 413, timeouts) in the envelope, and
//! [`serve`] with request tracing and graceful shutdown.

use std::future::Future;

use axum::{
    body::Body,
    extract::{rejection::JsonRejection, FromRequest, Request},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json, Router,
};
use tokio::net::TcpListener;

pub use protocol::ErrorCode;
use protocol::{ErrorBody, ErrorDetail, UsageInfo};

/// An error answered with the JSON envelope and a stable code.
#[derive(Debug)]
pub struct ApiError {
    /// Stable machine code.
    pub code: ErrorCode,
    /// Human message.
    pub message: String,
    /// Quota details (`PUBLISH_LIMIT_REACHED`).
    pub usage: Option<UsageInfo>,
    /// Where to log in (`ACCOUNT_REQUIRED`).
    pub login_url: Option<String>,
    /// The transaction behind it lost a race for locks and can be run again as it is.
    pub lock_conflict: bool,
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            usage: None,
            login_url: None,
            lock_conflict: false,
        }
    }
    /// 400 `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    /// 403 `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    /// 413 `UPLOAD_TOO_LARGE`.
    pub fn too_large(limit: u64) -> Self {
        Self::new(
            ErrorCode::UploadTooLarge,
            format!("Upload exceeds the size limit of {limit} bytes"),
        )
    }
    /// 500 `INTERNAL_ERROR`; the cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::InternalError, "Internal server error")
    }
    /// 503 `UNAVAILABLE`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                usage: self.usage,
                login_url: self.login_url,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if database_unreachable(&e) {
            // An outage, not a bug: answer at once with 503 and when to come back.
            tracing::warn!(error = %e, "database unavailable");
            return Self::unavailable("The database is unavailable; try again shortly");
        }
        if crate::db::is_deadlock(&e) {
            // Contention, not a bug: the caller may run its transaction again; if it does not,
            // the client is asked to.
            tracing::debug!(error = %e, "transaction lost a lock race");
            let mut busy = Self::unavailable("The hub is busy; try again shortly");
            busy.lock_conflict = true;
            return busy;
        }
        Self::internal(&e)
    }
}

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Whether a database error means the database cannot be reached now (rather than a bad
/// query): no connection within the pool's timeout, a broken connection, or the server refusing
/// connections or shutting down.
pub fn database_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            // Too many connections, server shutdown in progress, connection killed.
            .is_some_and(|m| matches!(m.number(), 1040 | 1053 | 1927)),
        _ => false,
    }
}

impl From<crate::queue::Error> for ApiError {
    fn from(e: crate::queue::Error) -> Self {
        match e {
            crate::queue::Error::Db(db) => db.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<blob::BlobError> for ApiError {
    fn from(e: blob::BlobError) -> Self {
        use blob::BlobError;
        match e {
            BlobError::TooLarge { limit } => Self::too_large(limit),
            BlobError::ShaMismatch => {
                Self::bad_request("SHA-256 of the received bytes does not match")
            }
            BlobError::NotFound => Self::not_found("Not found"),
            BlobError::Source(src) if blob::b64::is_decode_error(&src) => {
                Self::bad_request(format!("Invalid base64 body: {src}"))
            }
            BlobError::Source(src) => Self::bad_request(format!("Body could not be read: {src}")),
            other => Self::internal(&other),
        }
    }
}

/// `Json<T>` whose rejections use the envelope (400 for bad JSON, 413 over the body limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(ErrorCode::UploadTooLarge, "Request body too large");
    }
    ApiError::bad_request(format!("Invalid JSON body: {}", rejection.body_text()))
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// The TCP peer address when the server records it (`into_make_service_with_connect_info`);
/// `None` in in-process tests. Services that sit behind a proxy decide themselves whether to
/// trust `X-Forwarded-For` (see ingest's `PERRY_HUB_TRUST_FORWARDED_FOR`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// Fallback for unknown routes: 404 with the envelope.
pub async fn not_found() -> ApiError {
    ApiError::not_found("Not found")
}

/// Middleware: any error response that is not already JSON (framework 405/413/408/...) gets the
/// envelope with the matching code.
pub async fn envelope_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // JSON is already an envelope; an HTML page (the dashboard's) is meant for a person.
    let rendered = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if rendered || resp.headers().contains_key(header::UPGRADE) {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "Not found"),
        StatusCode::METHOD_NOT_ALLOWED => (ErrorCode::MethodNotAllowed, "Method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::UploadTooLarge, "Request body too large"),
        StatusCode::REQUEST_TIMEOUT => (ErrorCode::RequestTimeout, "Request timed out"),
        StatusCode::UNAUTHORIZED => (ErrorCode::AuthRequired, "Authentication required"),
        StatusCode::FORBIDDEN => (ErrorCode::Forbidden, "Forbidden"),
        StatusCode::SERVICE_UNAVAILABLE => (ErrorCode::Unavailable, "Service unavailable"),
        s if s.is_client_error() => (ErrorCode::BadRequest, "Bad request"),
        _ => (ErrorCode::InternalError, "Internal server error"),
    };
    let mut out = ApiError::new(code, message).into_response();
    *out.status_mut() = status;
    out
}

mod health;

pub use health::{health_router, BlobReady, BrokerReady, DbReady, ReadyCheck};

/// Add the shared layers: envelope for framework errors, request tracing, 404 fallback.
pub fn finish_router(router: Router) -> Router {
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn(envelope_errors))
        .layer(axum::middleware::from_fn(crate::metrics::http::track))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
                tracing::info_span!("request", method = %req.method(), route = %route)
            }),
        )
}

/// Serve `router` on `listener` with the connection caps and timeouts of `limits` until
/// `shutdown` resolves, then drain in-flight requests (see [`crate::serve`]).
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    limits: &crate::config::HttpLimits,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    crate::serve::serve(listener, router, limits, shutdown).await
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    async fn body_json(resp: Response) -> serde_json::Value {
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn api_error_uses_the_envelope_and_status() {
        let resp = ApiError::new(ErrorCode::JobNotRunning, "Job is not running").into_response();
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        let v = body_json(resp).await;
        assert_eq!(v["error"]["code"], "JOB_NOT_RUNNING");
        assert_eq!(v["error"]["message"], "Job is not running");
        assert!(v["error"].get("usage").is_none());
    }

    #[tokio::test]
    async fn internal_errors_hide_the_cause() {
        let resp = ApiError::internal(&"db password wrong for user x").into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let v = body_json(resp).await;
        assert_eq!(v["error"]["code"], "INTERNAL_ERROR");
        assert!(!v.to_string().contains("password"));
    }
}
