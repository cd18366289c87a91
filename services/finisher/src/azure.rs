//! Azure client for the signing VM: an OAuth2 client-credentials token (cached until shortly
//! before it expires) and the ARM `start` / `deallocate` calls, with retries on transient
//! failures and bounded polling of the asynchronous operation. Every call is counted in
//! `azure_calls{op, outcome}`. The client secret and the token never reach a log: errors carry
//! the operation, the HTTP status and Azure's error code only.

use std::time::Duration;

use reqwest::{header, StatusCode, Url};
use shared::{config::Secret, metrics};
use tokio::{sync::Mutex, time::Instant};

use crate::settings::AzureSettings;

/// ARM API version of the VM calls.
pub const API_VERSION: &str = "2024-07-01";
/// OAuth2 scope of Azure Resource Manager.
pub const SCOPE: &str = "https://management.azure.com/.default";
/// Longest `Retry-After` honoured between attempts or polls.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Poll interval when Azure does not say.
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// Most bytes of an error body read (for its error code).
const ERROR_BODY_LIMIT: usize = 4096;

/// A failed Azure call.
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// Azure answered with an error status.
    #[error("{op}: HTTP {status}{detail}")]
    Status {
        /// Operation (`token`, `start`, `deallocate`, `poll`).
        op: &'static str,
        /// HTTP status.
        status: u16,
        /// Azure's error code, prefixed with ": " (or empty).
        detail: String,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// No answer: connection failure or timeout.
    #[error("{op}: {reason}")]
    Transport {
        /// Operation.
        op: &'static str,
        /// What happened (never includes a secret).
        reason: String,
    },
    /// The answer could not be understood.
    #[error("{op}: unexpected response: {reason}")]
    BadResponse {
        /// Operation.
        op: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The asynchronous operation ended unsuccessfully.
    #[error("{op}: operation ended with status {status}{detail}")]
    Operation {
        /// Operation.
        op: &'static str,
        /// Final status (`Failed`, `Canceled`).
        status: String,
        /// Azure's error code, prefixed with ": " (or empty).
        detail: String,
    },
}

impl AzureError {
    /// Worth retrying: timeouts, connection errors, 5xx, 429 and 401 (expired token).
    pub fn is_transient(&self) -> bool {
        match self {
            // 401 from ARM means the cached token went stale (a new one is fetched); from the
            // token endpoint it means bad credentials, which no retry fixes.
            Self::Status { op, status, .. } => *status == 429 || *status >= 500 || (*status == 401 && *op != "token"),
            Self::Transport { .. } => true,
            Self::BadResponse { .. } | Self::Operation { .. } => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Result alias of this module.
pub type Result<T, E = AzureError> = std::result::Result<T, E>;

struct CachedToken {
    value: Secret,
    refresh_at: Instant,
}

/// How an accepted call reports its progress.
enum Progress {
    /// Nothing to poll.
    Done,
    /// `Azure-AsyncOperation`: GET returns `{"status": ...}`.
    AsyncOperation(Url, Option<Duration>),
    /// `Location`: GET returns 202 while running, 200/204 when done.
    Location(Url, Option<Duration>),
}

/// The Azure client of one VM.
pub struct AzureClient {
    http: reqwest::Client,
    settings: AzureSettings,
    token: Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for AzureClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureClient").field("vm", &self.settings.vm_name).finish_non_exhaustive()
    }
}

fn count(op: &'static str, outcome: &'static str) {
    let labels = vec![("op".to_owned(), op.to_owned()), ("outcome".to_owned(), outcome.to_owned())];
    metrics::get().azure_calls.get_or_create(&labels).inc();
}

fn transport(op: &'static str, e: reqwest::Error) -> AzureError {
    let reason = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        // Without the URL: a poll URL may carry a signature in its query.
        e.without_url().to_string()
    };
    AzureError::Transport { op, reason }
}

fn bad_body(op: &'static str, e: reqwest::Error) -> AzureError {
    AzureError::BadResponse { op, reason: e.without_url().to_string() }
}

fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Azure's error code from an error body (`{"error":{"code":..}}` or `{"error":".."}`), as
/// ": Code" (empty when there is none). Only the code: messages may quote request details.
fn error_code(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return String::new() };
    detail(v["error"]["code"].as_str().or_else(|| v["error"].as_str()).unwrap_or_default())
}

fn detail(code: &str) -> String {
    let code: String = code.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')).take(100).collect();
    if code.is_empty() {
        String::new()
    } else {
        format!(": {code}")
    }
}

async fn status_error(op: &'static str, resp: reqwest::Response) -> AzureError {
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = read_limited(resp).await;
    AzureError::Status { op, status, detail: error_code(&body), retry_after }
}

async fn read_limited(mut resp: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= ERROR_BODY_LIMIT {
            body.truncate(ERROR_BODY_LIMIT);
            break;
        }
    }
    body
}

impl AzureClient {
    /// A client for the VM in `settings` (which must be enabled).
    pub fn new(settings: &AzureSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.http_timeout())
            .connect_timeout(settings.http_timeout())
            // Never follow redirects with a bearer token.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, settings: settings.clone(), token: Mutex::new(None) })
    }

    /// Start the VM (idempotent on Azure's side).
    pub async fn start_vm(&self) -> Result<()> {
        self.vm_action("start").await
    }

    /// Deallocate the VM (stops billing for compute; power-off would not).
    pub async fn deallocate_vm(&self) -> Result<()> {
        self.vm_action("deallocate").await
    }

    /// `POST .../virtualMachines/{vm}/{action}?api-version=...`, retried on transient failures,
    /// then polled until the operation ends (bounded by the poll timeout).
    async fn vm_action(&self, op: &'static str) -> Result<()> {
        let url = self.vm_url(op)?;
        let mut delay = Duration::from_millis(self.settings.retry_base_ms);
        let mut attempt = 1;
        let progress = loop {
            match self.post_once(op, &url).await {
                Ok(progress) => break progress,
                Err(error) if error.is_transient() && attempt < self.settings.max_attempts => {
                    count(op, "retry");
                    let wait = error.retry_after().unwrap_or(delay);
                    tracing::warn!(op, attempt, error = %error, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "Azure call failed; retrying");
                    tokio::time::sleep(wait).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                Err(error) => {
                    count(op, "error");
                    tracing::error!(op, attempt, error = %error, "Azure call failed");
                    return Err(error);
                }
            }
        };
        match self.poll(op, progress).await {
            Ok(()) => {
                count(op, "ok");
                tracing::info!(op, vm = %self.settings.vm_name, "Azure VM operation succeeded");
                Ok(())
            }
            Err(error) => {
                count(op, "error");
                tracing::error!(op, error = %error, "Azure VM operation failed");
                Err(error)
            }
        }
    }

    fn vm_url(&self, action: &str) -> Result<Url> {
        let s = &self.settings;
        let bad = |reason: String| AzureError::BadResponse { op: "config", reason };
        let mut url = Url::parse(&s.management_url).map_err(|e| bad(format!("management URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| bad("management URL cannot have a path".into()))?
            .pop_if_empty()
            .extend([
                "subscriptions",
                s.subscription_id.trim(),
                "resourceGroups",
                s.resource_group.trim(),
                "providers",
                "Microsoft.Compute",
                "virtualMachines",
                s.vm_name.trim(),
                action,
            ]);
        url.query_pairs_mut().append_pair("api-version", API_VERSION);
        Ok(url)
    }

    async fn post_once(&self, op: &'static str, url: &Url) -> Result<Progress> {
        let token = self.token().await?;
        let resp = self
            .http
            .post(url.clone())
            .bearer_auth(token.expose())
            .header(header::CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(|e| transport(op, e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            // The cached token may have been revoked: fetch a new one on the retry.
            self.forget_token().await;
        }
        if !status.is_success() {
            return Err(status_error(op, resp).await);
        }
        let wait = retry_after(resp.headers());
        let header_url = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| Url::parse(v).ok());
        let progress = if status == StatusCode::OK || status == StatusCode::NO_CONTENT {
            Progress::Done
        } else if let Some(u) = header_url("azure-asyncoperation") {
            Progress::AsyncOperation(u, wait)
        } else if let Some(u) = header_url("location") {
            Progress::Location(u, wait)
        } else {
            Progress::Done
        };
        Ok(progress)
    }

    /// Follow an accepted operation until it ends or the poll timeout passes. Transient poll
    /// errors are retried until then; a poll URL outside the management origin is not followed
    /// (the bearer token must not leave Azure Resource Manager).
    async fn poll(&self, op: &'static str, progress: Progress) -> Result<()> {
        let (url, mut wait, is_async_op) = match progress {
            Progress::Done => return Ok(()),
            Progress::AsyncOperation(u, w) => (u, w, true),
            Progress::Location(u, w) => (u, w, false),
        };
        if !self.same_origin(&url) {
            tracing::warn!(op, "Azure returned a status URL outside the management endpoint; not polling it");
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(self.settings.poll_timeout_secs);
        loop {
            let pause = wait.unwrap_or(DEFAULT_POLL);
            if Instant::now() + pause > deadline {
                tracing::warn!(op, "Azure operation still running at the poll timeout; no longer waiting for it");
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            match self.poll_once(&url, is_async_op).await {
                Ok(PollState::Done) => return Ok(()),
                Ok(PollState::Running(w)) => wait = w,
                Ok(PollState::Ended(status, detail)) => return Err(AzureError::Operation { op, status, detail }),
                Err(error) if error.is_transient() => {
                    count("poll", "retry");
                    tracing::warn!(op, error = %error, "polling the Azure operation failed; retrying");
                    wait = error.retry_after();
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn poll_once(&self, url: &Url, is_async_op: bool) -> Result<PollState> {
        let op = "poll";
        let token = self.token().await?;
        let resp = self.http.get(url.clone()).bearer_auth(token.expose()).send().await.map_err(|e| transport(op, e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            self.forget_token().await;
        }
        if !status.is_success() {
            return Err(status_error(op, resp).await);
        }
        let wait = retry_after(resp.headers());
        if !is_async_op {
            return Ok(if status == StatusCode::ACCEPTED { PollState::Running(wait) } else { PollState::Done });
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| bad_body(op, e))?;
        let state = body["status"].as_str().unwrap_or_default();
        Ok(match state {
            "Succeeded" => PollState::Done,
            "Failed" | "Canceled" | "Cancelled" => {
                PollState::Ended(state.to_owned(), detail(body["error"]["code"].as_str().unwrap_or_default()))
            }
            _ => PollState::Running(wait),
        })
    }

    fn same_origin(&self, url: &Url) -> bool {
        Url::parse(&self.settings.management_url).is_ok_and(|base| base.origin() == url.origin())
    }

    /// A bearer token for ARM, from the cache while it is fresh.
    pub async fn token(&self) -> Result<Secret> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let (value, expires_in) = match self.fetch_token().await {
            Ok(t) => {
                count("token", "ok");
                t
            }
            Err(error) => {
                count("token", "error");
                return Err(error);
            }
        };
        // Refresh a little before expiry: a tenth of the lifetime, at most five minutes.
        let margin = (expires_in / 10).min(Duration::from_secs(300));
        *cached = Some(CachedToken { value: value.clone(), refresh_at: Instant::now() + expires_in.saturating_sub(margin) });
        Ok(value)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    async fn fetch_token(&self) -> Result<(Secret, Duration)> {
        let op = "token";
        let s = &self.settings;
        let mut url = Url::parse(&s.login_url).map_err(|e| AzureError::BadResponse { op, reason: format!("login URL: {e}") })?;
        url.path_segments_mut()
            .map_err(|()| AzureError::BadResponse { op, reason: "login URL cannot have a path".into() })?
            .pop_if_empty()
            .extend([s.tenant_id.trim(), "oauth2", "v2.0", "token"]);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", s.client_id.trim()),
            ("client_secret", s.client_secret.expose()),
            ("scope", SCOPE),
        ];
        let resp = self.http.post(url).form(&form).send().await.map_err(|e| transport(op, e))?;
        if !resp.status().is_success() {
            return Err(status_error(op, resp).await);
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| bad_body(op, e))?;
        let token = body["access_token"].as_str().filter(|t| !t.is_empty());
        let Some(token) = token else { return Err(AzureError::BadResponse { op, reason: "no access_token".into() }) };
        // v2 answers a number; v1 answered a string.
        let expires_in = body["expires_in"].as_u64().or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok())).unwrap_or(300);
        Ok((Secret::new(token), Duration::from_secs(expires_in)))
    }
}

enum PollState {
    Done,
    Running(Option<Duration>),
    Ended(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_extracted_and_sanitised() {
        assert_eq!(error_code(br#"{"error":{"code":"AuthorizationFailed","message":"x"}}"#), ": AuthorizationFailed");
        assert_eq!(error_code(br#"{"error":"invalid_client","error_description":"AADSTS7000215"}"#), ": invalid_client");
        assert_eq!(error_code(b"<html>"), "");
        assert_eq!(error_code(br#"{"error":{"code":"a b\nc"}}"#), ": abc");
    }

    #[test]
    fn transient_errors_are_recognised() {
        let status = |s| AzureError::Status { op: "start", status: s, detail: String::new(), retry_after: None };
        assert!(status(500).is_transient());
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(status(401).is_transient());
        assert!(!status(403).is_transient());
        assert!(!status(404).is_transient());
        assert!(AzureError::Transport { op: "start", reason: "timed out".into() }.is_transient());
        assert_eq!(status(409).to_string(), "start: HTTP 409");
    }
}
