//! Error codes and the HTTP error envelope (§2.2).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the CLI sends a user to link an account (`ACCOUNT_REQUIRED.login_url`, §2.2).
pub const LOGIN_URL: &str = "https://app.perryts.com/cli/authorize";

/// Code of an HTTP error envelope; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 400: malformed or missing input.
    BadRequest,
    /// 401: `GET /account` without a Bearer token.
    AuthRequired,
    /// 401: unknown API token, or its account was deleted.
    AuthInvalid,
    /// 401: unknown `license_key`.
    LicenseInvalid,
    /// 403: wrong admin secret or job token.
    Forbidden,
    /// 403: device license used for a second project.
    AccountRequired,
    /// 404: unknown account, missing tarball, unknown route.
    NotFound,
    /// 404: upload for an unknown job.
    JobNotFound,
    /// 404: download token unknown, used or expired.
    ArtifactNotFound,
    /// 405: wrong method on a known route.
    MethodNotAllowed,
    /// 408: *new*: the request's headers or body stopped arriving, or a small request took
    /// longer than the request timeout (DEC-22).
    RequestTimeout,
    /// 409: upload while the job is not `assigned`/`running`.
    JobNotRunning,
    /// 409: *new*: an admin action the target's current state does not allow (cancel an
    /// ended job, requeue one that did not fail) (DEC-28).
    Conflict,
    /// 410: expired download link.
    Gone,
    /// 413: over a size cap.
    UploadTooLarge,
    /// 416: *new*: a `Range` request on a raw download selects no byte of the object.
    RangeNotSatisfiable,
    /// 429: monthly publish quota reached.
    PublishLimitReached,
    /// 429: hourly limit or register throttle.
    RateLimited,
    /// 500: storage or database failure.
    InternalError,
    /// 503: service not ready.
    Unavailable,
}

impl ErrorCode {
    /// HTTP status that goes with this code.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::AuthRequired | Self::AuthInvalid | Self::LicenseInvalid => 401,
            Self::Forbidden | Self::AccountRequired => 403,
            Self::NotFound | Self::JobNotFound | Self::ArtifactNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::JobNotRunning | Self::Conflict => 409,
            Self::Gone => 410,
            Self::UploadTooLarge => 413,
            Self::RangeNotSatisfiable => 416,
            Self::PublishLimitReached | Self::RateLimited => 429,
            Self::InternalError => 500,
            Self::Unavailable => 503,
        }
    }

    /// Wire form, e.g. `"PUBLISH_LIMIT_REACHED"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::BadRequest => "BAD_REQUEST",
            Self::AuthRequired => "AUTH_REQUIRED",
            Self::AuthInvalid => "AUTH_INVALID",
            Self::LicenseInvalid => "LICENSE_INVALID",
            Self::Forbidden => "FORBIDDEN",
            Self::AccountRequired => "ACCOUNT_REQUIRED",
            Self::NotFound => "NOT_FOUND",
            Self::JobNotFound => "JOB_NOT_FOUND",
            Self::ArtifactNotFound => "ARTIFACT_NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::JobNotRunning => "JOB_NOT_RUNNING",
            Self::Conflict => "CONFLICT",
            Self::Gone => "GONE",
            Self::UploadTooLarge => "UPLOAD_TOO_LARGE",
            Self::RangeNotSatisfiable => "RANGE_NOT_SATISFIABLE",
            Self::PublishLimitReached => "PUBLISH_LIMIT_REACHED",
            Self::RateLimited => "RATE_LIMITED",
            Self::InternalError => "INTERNAL_ERROR",
            Self::Unavailable => "UNAVAILABLE",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Code of a WebSocket `error` frame (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WsErrorCode {
    /// Bad worker secret.
    AuthFailed,
    /// Subscribe to an unknown job.
    JobNotFound,
    /// Retries exhausted; the only code workers send.
    InternalError,
    /// Distribution verification failed (dormant).
    VerifyFailed,
}

impl WsErrorCode {
    /// Wire form, e.g. `"AUTH_FAILED"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AuthFailed => "AUTH_FAILED",
            Self::JobNotFound => "JOB_NOT_FOUND",
            Self::InternalError => "INTERNAL_ERROR",
            Self::VerifyFailed => "VERIFY_FAILED",
        }
    }
}

impl fmt::Display for WsErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP error envelope `{"error":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// An envelope with only `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
                usage: None,
                login_url: None,
            },
        }
    }

    /// Adds the `usage` object (for `PUBLISH_LIMIT_REACHED`).
    #[must_use]
    pub fn with_usage(mut self, usage: UsageInfo) -> Self {
        self.error.usage = Some(usage);
        self
    }

    /// Adds `login_url` (for `ACCOUNT_REQUIRED`).
    #[must_use]
    pub fn with_login_url(mut self, url: impl Into<String>) -> Self {
        self.error.login_url = Some(url.into());
        self
    }

    /// HTTP status for this envelope.
    pub fn http_status(&self) -> u16 {
        self.error.code.http_status()
    }
}

/// Content of the error envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message (printed by the CLI).
    pub message: String,
    /// Quota usage, only for `PUBLISH_LIMIT_REACHED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageInfo>,
    /// Account login page, only for `ACCOUNT_REQUIRED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
}

/// Monthly publish usage reported with `PUBLISH_LIMIT_REACHED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageInfo {
    /// Publishes counted this period.
    pub publishes: u32,
    /// The tier's monthly limit.
    pub limit: u32,
    /// UTC month, `YYYY-MM`.
    pub period: String,
}
