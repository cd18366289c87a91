//! `POST /api/v1/build` (§3.7): a build submission.
//!
//! Two request shapes:
//! - **multipart/form-data** ([`form`]), what the CLI sends: text parts `manifest`,
//!   `credentials`, `tarball_b64` (base64) and `license_key`, in that order; new clients may send
//!   the tarball as raw bytes in a `tarball` part instead of `tarball_b64`.
//! - **application/octet-stream** ([`raw`]) for new clients: the body is the raw tarball; the
//!   manifest and credentials travel in `X-Perry-Manifest` / `X-Perry-Credentials` (JSON, or
//!   base64 of JSON) and the licence in `X-Perry-License-Key` or the Bearer header.
//!
//! Checks run in the order of §3.7. The Bearer token is resolved before any body byte is read;
//! a licence key part is resolved as soon as it arrives. When the manifest and the principal
//! are known before the tarball part (always on the Bearer path), checks 4–7 run before a byte
//! is stored and the tarball is capped at the tier's limit while it streams. Otherwise (the
//! CLI's key path, where `license_key` follows the tarball) the tarball streams into the blob
//! store under the job's key with the largest cap, and every check runs once the form is read.
//! [`submit`] repeats checks 6–8 under the licence's row lock and writes the job, its sealed
//! credentials, the project binding, the rate hit and the outbox row in one transaction. Any
//! failure deletes the stored tarball: nothing is left behind.
//!
//! A multipart submission without a Bearer token holds one of the anonymous upload slots
//! ([`crate::inflight`], DEC-22) while it runs, since its tarball streams before its key.
//!
//! An `Idempotency-Key` header (per licence) makes a retry answer the first submission's
//! `job_id`, `ws_url` and current `position` without creating anything.

pub mod form;
pub mod framing;
pub mod raw;
pub mod submit;

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap},
    Json,
};
use blob::{DynBlobStore, PutResult};
use protocol::BuildResponse;
use shared::http::{ApiError, ApiResult};

use crate::{
    access::{self, Principal},
    body,
    keyguard::KeyGuard,
    manifest::BuildManifest,
    AppState,
};

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// `POST /api/v1/build`.
pub async fn create_build(
    State(state): State<AppState>,
    request: Request,
) -> ApiResult<Json<BuildResponse>> {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    body::check_content_length(headers, state.settings.max_body_bytes)?;
    let kind = classify(headers)?;
    let idempotency_key = idempotency_key(headers)?;
    let bearer = match access::bearer_token(headers) {
        Some(token) => {
            let mut conn = state.deps.pool.acquire().await?;
            Some(access::principal_from_bearer(&mut conn, token).await)
        }
        None => None,
    };
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let client = crate::licenses::client_addr(peer, headers, state.settings.trust_forwarded_for);
    let key_guard = KeyGuard::new(&state, &client);
    // The key path streams the tarball before its key arrives: hold a slot while it does, and
    // refuse at once an address that has used up its key failures.
    let _slot = match (&kind, &bearer) {
        (BodyKind::Multipart(_), None) => {
            let slot = state.uploads.acquire(&client)?;
            key_guard
                .check(&mut *state.deps.pool.acquire().await?)
                .await?;
            Some(slot)
        }
        _ => None,
    };
    let job_id = uuid::Uuid::new_v4().to_string();
    let mut intake = Intake {
        state: &state,
        job_id: &job_id,
        idempotency_key: idempotency_key.as_deref(),
        key_guard,
        tarball: BlobGuard::new(
            state.deps.blob.clone(),
            job::artifacts::tarball_key(&job_id),
        ),
    };
    let outcome = match kind {
        BodyKind::Multipart(boundary) => form::read(&mut intake, bearer, body, boundary).await,
        BodyKind::Raw => raw::read(&mut intake, bearer, headers, body).await,
    };
    let result = match outcome {
        Ok(Outcome::Ready(parsed)) => submit::accept(&intake, *parsed).await,
        Ok(Outcome::Replay(answer)) => Ok(answer),
        Err(e) => Err(e),
    };
    match &result {
        Ok(answer) if answer.job_id == job_id => intake.tarball.keep(),
        _ => intake.tarball.discard().await,
    }
    result.map(Json)
}

/// What one request is working with.
pub struct Intake<'a> {
    /// Handler state.
    pub state: &'a AppState,
    /// The id the new job will have (its tarball is stored under its key).
    pub job_id: &'a str,
    /// The request's `Idempotency-Key`.
    pub idempotency_key: Option<&'a str>,
    /// The client address's key-failure throttle.
    pub key_guard: KeyGuard,
    /// The stored tarball, deleted unless the job is created.
    pub tarball: BlobGuard,
}

/// Where reading the request ended.
pub enum Outcome {
    /// Everything was read; the job can be created.
    Ready(Box<Parsed>),
    /// An idempotent retry: the first submission's answer.
    Replay(BuildResponse),
}

/// A submission whose parts were read and checked (checks 1–5).
pub struct Parsed {
    /// The manifest.
    pub manifest: BuildManifest,
    /// Compact credentials JSON to seal, `None` for `{}`.
    pub credentials: Option<Vec<u8>>,
    /// Who submits.
    pub principal: Principal,
    /// The tarball.
    pub tarball: Tarball,
}

/// The tarball of a submission.
pub enum Tarball {
    /// Stored under the job's key.
    Stored(PutResult),
    /// Over the largest tier cap; not stored (413 once checks 4–7 have passed).
    OverCap,
}

/// Whether the rest of a refused request's body should be read and discarded before answering:
/// a client still sending (the CLI sends its whole form before reading) would otherwise see a
/// reset connection instead of the answer. Never for a body that is too large.
pub fn should_drain(result: &ApiResult<Outcome>) -> bool {
    match result {
        Ok(Outcome::Ready(_)) => false,
        Ok(Outcome::Replay(_)) => true,
        Err(e) => e.code != shared::http::ErrorCode::UploadTooLarge,
    }
}

/// The two accepted request shapes.
enum BodyKind {
    Multipart(String),
    Raw,
}

fn classify(headers: &HeaderMap) -> ApiResult<BodyKind> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let lower = content_type.trim().to_ascii_lowercase();
    if lower.starts_with("multipart/form-data") {
        return multer::parse_boundary(content_type)
            .map(BodyKind::Multipart)
            .map_err(|_| ApiError::bad_request("multipart/form-data without a boundary"));
    }
    if lower.starts_with("application/octet-stream") {
        return Ok(BodyKind::Raw);
    }
    Err(ApiError::bad_request(
        "Expected multipart/form-data (or application/octet-stream with X-Perry-Manifest)",
    ))
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map(str::trim).unwrap_or_default();
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::bad_request(format!(
            "Invalid Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

/// Deletes a stored object (a build's tarball, an uploaded artifact) unless told to keep it:
/// explicitly on every error path, and from a spawned task if the request is dropped half-way.
pub struct BlobGuard {
    blob: DynBlobStore,
    key: String,
    armed: bool,
}

impl BlobGuard {
    /// A guard for `key` (disarmed until [`BlobGuard::arm`]).
    pub fn new(blob: DynBlobStore, key: String) -> Self {
        Self {
            blob,
            key,
            armed: false,
        }
    }

    /// The key the tarball is stored under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A put is about to start: from now on the key must be cleaned up on failure.
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// The job owns the tarball now.
    pub fn keep(&mut self) {
        self.armed = false;
    }

    /// Delete whatever was stored.
    pub async fn discard(&mut self) {
        if std::mem::take(&mut self.armed) {
            if let Err(error) = self.blob.delete(&self.key).await {
                tracing::error!(%error, key = %self.key, "cannot delete the tarball of a refused build");
            }
        }
    }
}

impl Drop for BlobGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (blob, key) = (self.blob.clone(), std::mem::take(&mut self.key));
            handle.spawn(async move {
                if let Err(error) = blob.delete(&key).await {
                    tracing::error!(%error, key = %key, "cannot delete the tarball of an abandoned build");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn only_multipart_with_a_boundary_or_octet_stream_is_accepted() {
        assert!(
            matches!(classify(&with("content-type", "multipart/form-data; boundary=x")), Ok(BodyKind::Multipart(b)) if b == "x")
        );
        assert!(matches!(
            classify(&with("content-type", "application/octet-stream")),
            Ok(BodyKind::Raw)
        ));
        assert!(classify(&with("content-type", "multipart/form-data")).is_err());
        assert!(classify(&with("content-type", "application/json")).is_err());
        assert!(classify(&HeaderMap::new()).is_err());
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_and_bounded() {
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            idempotency_key(&with("idempotency-key", " abc-123 "))
                .unwrap()
                .as_deref(),
            Some("abc-123")
        );
        assert!(idempotency_key(&with("idempotency-key", "a b")).is_err());
        assert!(idempotency_key(&with("idempotency-key", "")).is_err());
        let long: &'static str = Box::leak("k".repeat(256).into_boxed_str());
        assert!(idempotency_key(&with("idempotency-key", long)).is_err());
    }
}
