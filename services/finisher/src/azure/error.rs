//! Errors of Azure calls, what is worth retrying, and how an error answer is read: only the
//! status, `Retry-After` and Azure's error code are kept, never a message that may quote the
//! request.

use std::time::Duration;

use reqwest::header;
use shared::metrics;

/// Longest `Retry-After` honoured between attempts or polls.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
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
            Self::Status { op, status, .. } => {
                *status == 429 || *status >= 500 || (*status == 401 && *op != "token")
            }
            Self::Transport { .. } => true,
            Self::BadResponse { .. } | Self::Operation { .. } => false,
        }
    }

    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Result alias of this module.
pub type Result<T, E = AzureError> = std::result::Result<T, E>;

/// Count an Azure call in `azure_calls{op, outcome}`.
pub(super) fn count(op: &'static str, outcome: &'static str) {
    let labels = vec![
        ("op".to_owned(), op.to_owned()),
        ("outcome".to_owned(), outcome.to_owned()),
    ];
    metrics::get().azure_calls.get_or_create(&labels).inc();
}

pub(super) fn transport(op: &'static str, e: reqwest::Error) -> AzureError {
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

pub(super) fn bad_body(op: &'static str, e: reqwest::Error) -> AzureError {
    AzureError::BadResponse {
        op,
        reason: e.without_url().to_string(),
    }
}

pub(super) fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Azure's error code from an error body (`{"error":{"code":..}}` or `{"error":".."}`), as
/// ": Code" (empty when there is none). Only the code: messages may quote request details.
pub(super) fn error_code(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    detail(
        v["error"]["code"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .unwrap_or_default(),
    )
}

pub(super) fn detail(code: &str) -> String {
    let code: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(100)
        .collect();
    if code.is_empty() {
        String::new()
    } else {
        format!(": {code}")
    }
}

pub(super) async fn status_error(op: &'static str, resp: reqwest::Response) -> AzureError {
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = read_limited(resp).await;
    AzureError::Status {
        op,
        status,
        detail: error_code(&body),
        retry_after,
    }
}

pub(super) async fn read_limited(mut resp: reqwest::Response) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_extracted_and_sanitised() {
        assert_eq!(
            error_code(br#"{"error":{"code":"AuthorizationFailed","message":"x"}}"#),
            ": AuthorizationFailed"
        );
        assert_eq!(
            error_code(br#"{"error":"invalid_client","error_description":"AADSTS7000215"}"#),
            ": invalid_client"
        );
        assert_eq!(error_code(b"<html>"), "");
        assert_eq!(error_code(br#"{"error":{"code":"a b\nc"}}"#), ": abc");
    }

    #[test]
    fn transient_errors_are_recognised() {
        let status = |s| AzureError::Status {
            op: "start",
            status: s,
            detail: String::new(),
            retry_after: None,
        };
        assert!(status(500).is_transient());
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(status(401).is_transient());
        assert!(!status(403).is_transient());
        let bad_credentials = AzureError::Status {
            op: "token",
            status: 401,
            detail: String::new(),
            retry_after: None,
        };
        assert!(
            !bad_credentials.is_transient(),
            "no retry fixes a wrong client secret"
        );
        assert!(!status(404).is_transient());
        assert!(AzureError::Transport {
            op: "start",
            reason: "timed out".into()
        }
        .is_transient());
        assert_eq!(status(409).to_string(), "start: HTTP 409");
    }
}
