//! Azure client for the signing VM: an OAuth2 client-credentials token (cached until shortly
//! before it expires) and the ARM `start` / `deallocate` calls, with retries on transient
//! failures and bounded polling of the asynchronous operation. Every call is counted in
//! `azure_calls{op, outcome}`. The client secret and the token never reach a log: errors carry
//! the operation, the HTTP status and Azure's error code only.

mod error;
mod token;

use std::time::Duration;

use reqwest::{header, StatusCode, Url};
use tokio::{sync::Mutex, time::Instant};

use crate::settings::AzureSettings;
use error::{bad_body, count, detail, retry_after, status_error, transport};
pub use error::{AzureError, Result};
use token::CachedToken;

/// ARM API version of the VM calls.
pub const API_VERSION: &str = "2024-07-01";
/// OAuth2 scope of Azure Resource Manager.
pub const SCOPE: &str = "https://management.azure.com/.default";
/// Poll interval when Azure does not say.
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// Shortest poll interval, whatever `Retry-After` says (no busy loop on `Retry-After: 0`).
const MIN_POLL: Duration = Duration::from_millis(100);

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
        f.debug_struct("AzureClient")
            .field("vm", &self.settings.vm_name)
            .finish_non_exhaustive()
    }
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
        Ok(Self {
            http,
            settings: settings.clone(),
            token: Mutex::new(None),
        })
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
                    let retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                    tracing::warn!(op, attempt, error = %error, retry_in_ms, "Azure call failed; retrying");
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
        let bad = |reason: String| AzureError::BadResponse {
            op: "config",
            reason,
        };
        let mut url =
            Url::parse(&s.management_url).map_err(|e| bad(format!("management URL: {e}")))?;
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
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
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
        let header_url = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Url::parse(v).ok())
        };
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
            tracing::warn!(
                op,
                "Azure returned a status URL outside the management endpoint; not polling it"
            );
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(self.settings.poll_timeout_secs);
        loop {
            let pause = wait.unwrap_or(DEFAULT_POLL).max(MIN_POLL);
            if Instant::now() + pause > deadline {
                tracing::warn!(
                    op,
                    "Azure operation still running at the poll timeout; no longer waiting for it"
                );
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            match self.poll_once(&url, is_async_op).await {
                Ok(PollState::Done) => return Ok(()),
                Ok(PollState::Running(w)) => wait = w,
                Ok(PollState::Ended(status, detail)) => {
                    return Err(AzureError::Operation { op, status, detail })
                }
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
        let resp = self
            .http
            .get(url.clone())
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| transport(op, e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            self.forget_token().await;
        }
        if !status.is_success() {
            return Err(status_error(op, resp).await);
        }
        let wait = retry_after(resp.headers());
        if !is_async_op {
            return Ok(if status == StatusCode::ACCEPTED {
                PollState::Running(wait)
            } else {
                PollState::Done
            });
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| bad_body(op, e))?;
        let state = body["status"].as_str().unwrap_or_default();
        Ok(match state {
            "Succeeded" => PollState::Done,
            "Failed" | "Canceled" | "Cancelled" => PollState::Ended(
                state.to_owned(),
                detail(body["error"]["code"].as_str().unwrap_or_default()),
            ),
            _ => PollState::Running(wait),
        })
    }

    fn same_origin(&self, url: &Url) -> bool {
        Url::parse(&self.settings.management_url).is_ok_and(|base| base.origin() == url.origin())
    }
}

/// What one poll of an accepted operation found.
enum PollState {
    /// Finished successfully.
    Done,
    /// Still running; poll again after the `Retry-After`, if given.
    Running(Option<Duration>),
    /// Finished unsuccessfully: final status and error code.
    Ended(String, String),
}
