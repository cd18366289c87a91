//! The OAuth2 client-credentials token for Azure Resource Manager, cached until shortly
//! before it expires.

use std::time::Duration;

use reqwest::Url;
use shared::config::Secret;
use tokio::time::Instant;

use super::{
    error::{bad_body, count, status_error, transport},
    AzureClient, AzureError, Result, SCOPE,
};

/// A token and when to fetch the next one.
pub(super) struct CachedToken {
    value: Secret,
    refresh_at: Instant,
}

impl AzureClient {
    /// A bearer token for ARM, from the cache while it is fresh.
    pub(super) async fn token(&self) -> Result<Secret> {
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
        *cached = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + expires_in.saturating_sub(margin),
        });
        Ok(value)
    }

    /// Drop the cached token (Azure refused it), so the next call fetches a new one.
    pub(super) async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    async fn fetch_token(&self) -> Result<(Secret, Duration)> {
        let op = "token";
        let s = &self.settings;
        let mut url = Url::parse(&s.login_url).map_err(|e| AzureError::BadResponse {
            op,
            reason: format!("login URL: {e}"),
        })?;
        url.path_segments_mut()
            .map_err(|()| AzureError::BadResponse {
                op,
                reason: "login URL cannot have a path".into(),
            })?
            .pop_if_empty()
            .extend([s.tenant_id.trim(), "oauth2", "v2.0", "token"]);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", s.client_id.trim()),
            ("client_secret", s.client_secret.expose()),
            ("scope", SCOPE),
        ];
        let resp = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| transport(op, e))?;
        if !resp.status().is_success() {
            return Err(status_error(op, resp).await);
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| bad_body(op, e))?;
        let token = body["access_token"].as_str().filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(AzureError::BadResponse {
                op,
                reason: "no access_token".into(),
            });
        };
        // v2 answers a number; v1 answered a string.
        let expires_in = body["expires_in"]
            .as_u64()
            .or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(300);
        Ok((Secret::new(token), Duration::from_secs(expires_in)))
    }
}
