//! Wire types of the Perry Hub contract (`shared/PROTOCOL.md`).
//!
//! Every HTTP body and WebSocket frame exchanged with the unmodified `perry publish` CLI and the
//! existing build workers is defined here with serde, so no JSON is ever built by hand (D24).
//!
//! - HTTP errors: [`ErrorCode`], [`ErrorBody`], [`ErrorDetail`], [`UsageInfo`] (§2.2).
//! - HTTP bodies: [`StatusResponse`], [`RegisterRequest`], … [`AdminWorkersResponse`] (§3).
//! - Licensing: [`Tier`] and its limits (§6).
//! - WebSocket frames received by the hub: [`Incoming`], parsed and validated by
//!   [`parse_incoming`] (§4.2, §4.4).
//! - WebSocket frames sent by the hub: [`Outgoing`] (§4.3, §4.5).
//!
//! Secrets carried by these types never appear in `Debug` output (D3, D9): they are either
//! wrapped in [`Redacted`] or the type has a hand-written `Debug`.

use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// Where the CLI sends a user to link an account (`ACCOUNT_REQUIRED.login_url`, §2.2).
pub const LOGIN_URL: &str = "https://app.perryts.com/cli/authorize";

/// What `Debug` prints instead of a secret.
const REDACTED: &str = "[redacted]";

// ---------------------------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------------------------

/// A value that is serialized transparently but never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Redacted<T>(T);

/// A secret string (worker secret, job token) that `Debug` prints as `[redacted]`.
pub type RedactedString = Redacted<String>;

impl<T> Redacted<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Borrows the secret value. Do not log the result.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Deref for Redacted<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl From<&str> for Redacted<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl AsRef<str> for Redacted<String> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// ---------------------------------------------------------------------------------------------
// Errors (§2.2)
// ---------------------------------------------------------------------------------------------

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
    /// 409: upload while the job is not `assigned`/`running`.
    JobNotRunning,
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
            Self::JobNotRunning => 409,
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
            Self::JobNotRunning => "JOB_NOT_RUNNING",
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

// ---------------------------------------------------------------------------------------------
// Licensing (§6)
// ---------------------------------------------------------------------------------------------

/// License tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Free, device-bound by default.
    #[default]
    Free,
    /// Paid.
    Pro,
}

impl Tier {
    /// Platforms reported for the tier (reported, not enforced: A13).
    pub fn platforms(&self) -> Vec<&'static str> {
        match self {
            Self::Free => vec!["macos"],
            Self::Pro => vec!["macos", "ios", "android", "windows", "linux"],
        }
    }

    /// Queue priority of the tier's jobs.
    pub fn priority(&self) -> u8 {
        match self {
            Self::Free => 1,
            Self::Pro => 10,
        }
    }

    /// Publishes per UTC month.
    pub fn monthly_publish_limit(&self) -> u32 {
        match self {
            Self::Free => 15,
            Self::Pro => 50,
        }
    }

    /// Submissions per rolling hour, per license.
    pub fn hourly_build_limit(&self) -> u32 {
        match self {
            Self::Free => 5,
            Self::Pro => 30,
        }
    }

    /// Deep verifies per month (reported only).
    pub fn verify_limit(&self) -> u32 {
        match self {
            Self::Free => 2,
            Self::Pro => 20,
        }
    }

    /// Cap on the decoded source tarball, in bytes.
    pub fn tarball_cap_bytes(&self) -> u64 {
        match self {
            Self::Free => 50 * 1024 * 1024,
            Self::Pro => 200 * 1024 * 1024,
        }
    }

    /// Wire form: `"free"` or `"pro"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
        }
    }

    /// Parses the exact wire form; anything else is `None`.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "free" => Some(Self::Free),
            "pro" => Some(Self::Pro),
            _ => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP bodies (§3)
// ---------------------------------------------------------------------------------------------

/// `GET /status` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Always `"ok"`.
    pub status: String,
    /// Jobs waiting in queues.
    pub queue_length: u64,
    /// Identified worker connections.
    pub connected_workers: u64,
    /// The hub's own version.
    pub perry_version: String,
    /// Expected worker compiler version, `""` if none.
    pub expected_perry_version: String,
    /// Subset of `macos ios android linux windows`, in that order, offered by a worker.
    pub supported_targets: Vec<String>,
}

/// `POST /license/register` request (the CLI sends `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisterRequest {
    /// Optional GitHub user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_username: Option<String>,
    /// Optional device identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// `POST /license/register` response; the CLI requires all three fields.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The new license key (secret).
    pub license_key: String,
    /// Always `free` for a new key.
    pub tier: Tier,
    /// The tier's platforms.
    pub platforms: Vec<String>,
}

impl fmt::Debug for RegisterResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterResponse")
            .field("license_key", &REDACTED)
            .field("tier", &self.tier)
            .field("platforms", &self.platforms)
            .finish()
    }
}

/// `POST /license/verify` request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// The key to check (secret).
    pub license_key: String,
}

impl fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("license_key", &REDACTED)
            .finish()
    }
}

/// `POST /license/verify` response; `tier` and `platforms` are `null` when invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    /// Whether the key exists.
    pub valid: bool,
    /// The key's tier, `null` when invalid.
    pub tier: Option<Tier>,
    /// The key's platforms, `null` when invalid.
    pub platforms: Option<Vec<String>>,
}

impl VerifyResponse {
    /// The answer for an unknown key: `{"valid":false,"tier":null,"platforms":null}`.
    pub fn invalid() -> Self {
        Self {
            valid: false,
            tier: None,
            platforms: None,
        }
    }
}

/// `GET /account` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountResponse {
    /// Account id.
    pub id: String,
    /// GitHub user name.
    pub github_username: String,
    /// E-mail address, `null` if unknown.
    pub email: Option<String>,
    /// Tier of the account's license.
    pub tier: Tier,
    /// Whether billing has a payment method.
    pub has_payment_method: bool,
    /// Usage of the current period.
    pub usage: AccountUsage,
}

/// Usage block of [`AccountResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUsage {
    /// Publishes counted this period.
    pub publishes: u32,
    /// Monthly publish limit.
    pub publish_limit: u32,
    /// Always 0.
    pub deep_verifies: u32,
    /// Monthly verify limit.
    pub verify_limit: u32,
    /// UTC month, `YYYY-MM`.
    pub period: String,
}

/// `POST /account/create` request (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreateRequest {
    /// GitHub numeric id; accepted as a JSON string or integer, kept as a string.
    #[serde(deserialize_with = "string_or_integer")]
    pub github_id: String,
    /// GitHub user name.
    pub github_username: String,
    /// Optional e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// `POST /account/create` response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreateResponse {
    /// Account id.
    pub id: String,
    /// A freshly minted API token (secret).
    pub api_token: String,
    /// GitHub user name.
    pub github_username: String,
    /// Account tier.
    pub tier: Tier,
    /// `false` if the account already existed.
    pub created: bool,
}

impl fmt::Debug for AccountCreateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountCreateResponse")
            .field("id", &self.id)
            .field("api_token", &REDACTED)
            .field("github_username", &self.github_username)
            .field("tier", &self.tier)
            .field("created", &self.created)
            .finish()
    }
}

/// `POST /account/update` request (admin); absent fields are left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUpdateRequest {
    /// Account to update.
    pub account_id: String,
    /// New tier; an unknown value fails deserialization (400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Polar customer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polar_customer_id: Option<String>,
    /// Polar subscription id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polar_subscription_id: Option<String>,
    /// Whether billing has a payment method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_payment_method: Option<bool>,
}

/// `{"ok":true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OkResponse {
    /// Always `true` on success.
    pub ok: bool,
}

/// `POST /build` response; the CLI requires all three fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildResponse {
    /// New job id.
    pub job_id: String,
    /// WebSocket URL, relative (`"/ws"`) or absolute.
    pub ws_url: String,
    /// 1-based place in the job's queue.
    pub position: u64,
}

/// `POST /artifact/upload/:jobId` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactUploadResponse {
    /// Download token.
    pub token: String,
    /// Absolute download URL ending in the token.
    pub download_url: String,
    /// Decoded size in bytes.
    pub size: u64,
}

/// `POST /admin/update-perry` request; the body itself is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdatePerryRequest {
    /// New expected worker version, persisted when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<String>,
}

/// `POST /admin/update-perry` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePerryResponse {
    /// Always `true`.
    pub ok: bool,
    /// Idle workers sent `update_perry` now.
    pub workers_notified: u64,
    /// Expected version after the request (`""` if none).
    pub expected_version: String,
    /// Every connected worker.
    pub workers: Vec<WorkerSummary>,
}

/// Worker entry of [`UpdatePerryResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// Worker name.
    pub name: String,
    /// Reported version, `"unknown"` if never reported.
    pub perry_version: String,
    /// Whether the worker has active jobs.
    pub busy: bool,
}

/// `GET /admin/workers` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminWorkersResponse {
    /// Expected worker version (`""` if none).
    pub expected_version: String,
    /// Every connected worker.
    pub workers: Vec<AdminWorker>,
}

/// Worker entry of [`AdminWorkersResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminWorker {
    /// Worker name.
    pub name: String,
    /// Reported version, `"unknown"` if never reported.
    pub perry_version: String,
    /// Seed string form, e.g. `",linux,android,"`.
    pub capabilities: String,
    /// Whether the worker has active jobs.
    pub busy: bool,
}

/// Deserializes a JSON string or integer into a `String` (`github_id`, D28).
fn string_or_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct StringOrInteger;

    impl Visitor<'_> for StringOrInteger {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or an integer")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            // `123.0` is an integer too; anything fractional or out of the exact range is not.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if v.is_finite() && v.fract() == 0.0 && v.abs() <= EXACT {
                #[allow(clippy::cast_possible_truncation)]
                let n = v as i64;
                Ok(n.to_string())
            } else {
                Err(E::invalid_type(Unexpected::Float(v), &self))
            }
        }
    }

    deserializer.deserialize_any(StringOrInteger)
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames received by the hub (§4.2, §4.4)
// ---------------------------------------------------------------------------------------------

/// One artifact listed in a `complete` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// User-visible file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

/// A frame received from a worker or a CLI. Parse with [`parse_incoming`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Incoming {
    /// Worker identification; the secret is checked by the hub (a missing one is rejected).
    WorkerHello {
        /// Worker secret (redacted in `Debug`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<RedactedString>,
        /// Capabilities; the hub defaults to `["macos"]`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capabilities: Option<Vec<String>>,
        /// Worker name; the hub defaults to `worker-<n>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Parallel jobs; 0 or absent means 1, clamped to 16 by the hub.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_concurrent: Option<i64>,
        /// Worker compiler version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        perry_version: Option<String>,
    },
    /// Job entered a stage.
    Stage {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// Human-readable message.
        message: String,
    },
    /// Progress within a stage.
    Progress {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// 0–100; integers and floats accepted.
        percent: f64,
        /// Optional message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// One build log line.
    Log {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// The line.
        line: String,
        /// `stdout` or `stderr`.
        stream: String,
    },
    /// Published to a store.
    Published {
        /// Job id.
        job_id: String,
        /// Platform name.
        platform: String,
        /// Human-readable message.
        message: String,
        /// Optional store URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// Queue information from a worker.
    QueueUpdate {
        /// Job id.
        job_id: String,
        /// Place in a queue.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<u64>,
        /// Human-readable message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Estimated wait.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimated_wait_secs: Option<u64>,
    },
    /// A worker-side failure (A7, A16).
    Error {
        /// Job id; when absent the hub attributes it to the worker's only job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
        /// Error code (workers always send `INTERNAL_ERROR`).
        code: String,
        /// Human-readable message.
        message: String,
        /// Stage where it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
    },
    /// End of an attempt (§5).
    Complete {
        /// Job id.
        job_id: String,
        /// Worker-reported success.
        success: bool,
        /// Build duration in seconds.
        duration_secs: f64,
        /// Uploaded artifacts.
        artifacts: Vec<ArtifactInfo>,
        /// `windows`, `ios` or `macos` when stage 2 is needed (§5.4).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        needs_finishing: Option<String>,
        /// Failure description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Outcome of an `update_perry`.
    UpdateResult {
        /// Whether the update succeeded.
        success: bool,
        /// Version before.
        old_version: String,
        /// Version after.
        new_version: String,
        /// Failure description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Build finished before distribution (dormant, §5.5).
    BuildComplete {
        /// Job id.
        job_id: String,
        /// Whether a distribution step follows.
        has_distribution: bool,
        /// Build duration in seconds.
        duration_secs: f64,
    },
    /// Legacy frame; any content is accepted and the frame is dropped (D5).
    ArtifactReady {
        /// Whatever the worker sent, unread by the hub.
        #[serde(flatten)]
        rest: Map<String, Value>,
    },
    /// CLI: follow a job.
    Subscribe {
        /// Job id.
        job_id: String,
    },
    /// CLI: cancel the subscribed job.
    Cancel {
        /// Job id.
        job_id: String,
    },
}

impl Incoming {
    /// The frame's `type` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::WorkerHello { .. } => "worker_hello",
            Self::Stage { .. } => "stage",
            Self::Progress { .. } => "progress",
            Self::Log { .. } => "log",
            Self::Published { .. } => "published",
            Self::QueueUpdate { .. } => "queue_update",
            Self::Error { .. } => "error",
            Self::Complete { .. } => "complete",
            Self::UpdateResult { .. } => "update_result",
            Self::BuildComplete { .. } => "build_complete",
            Self::ArtifactReady { .. } => "artifact_ready",
            Self::Subscribe { .. } => "subscribe",
            Self::Cancel { .. } => "cancel",
        }
    }

    /// The job the frame refers to, if it names one.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Self::Stage { job_id, .. }
            | Self::Progress { job_id, .. }
            | Self::Log { job_id, .. }
            | Self::Published { job_id, .. }
            | Self::QueueUpdate { job_id, .. }
            | Self::Complete { job_id, .. }
            | Self::BuildComplete { job_id, .. }
            | Self::Subscribe { job_id }
            | Self::Cancel { job_id } => Some(job_id),
            Self::Error { job_id, .. } => job_id.as_deref(),
            Self::WorkerHello { .. } | Self::UpdateResult { .. } | Self::ArtifactReady { .. } => {
                None
            }
        }
    }
}

/// Every `type` accepted by [`parse_incoming`].
pub const INCOMING_TYPES: &[&str] = &[
    "worker_hello",
    "stage",
    "progress",
    "log",
    "published",
    "queue_update",
    "error",
    "complete",
    "update_result",
    "build_complete",
    "artifact_ready",
    "subscribe",
    "cancel",
];

/// Why a received text frame was rejected.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Not parseable as JSON (the serde message, without the input).
    #[error("frame is not valid JSON: {0}")]
    NotJson(String),
    /// Valid JSON but not an object.
    #[error("frame is not a JSON object")]
    NotObject,
    /// No `type` field, or it is not a string.
    #[error("frame has no string `type` field")]
    MissingType,
    /// A `type` the hub does not know (truncated to 64 characters).
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    /// A known type with missing, mistyped or out-of-range fields.
    #[error("invalid `{kind}` frame: {reason}")]
    Invalid {
        /// The frame's `type`.
        kind: String,
        /// What is wrong; names the field.
        reason: String,
    },
}

impl FrameError {
    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "NOT_JSON",
            Self::NotObject => "NOT_OBJECT",
            Self::MissingType => "MISSING_TYPE",
            Self::UnknownType(_) => "UNKNOWN_TYPE",
            Self::Invalid { .. } => "INVALID_FRAME",
        }
    }
}

/// JSON type expected for a frame field.
#[derive(Clone, Copy)]
enum Expect {
    Str,
    Bool,
    Number,
    UInt,
    Int,
    StrArray,
    Array,
}

impl Expect {
    fn matches(self, v: &Value) -> bool {
        match self {
            Self::Str => v.is_string(),
            Self::Bool => v.is_boolean(),
            Self::Number => v.is_number(),
            Self::UInt => v.is_u64(),
            Self::Int => v.is_i64(),
            Self::StrArray => v
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Self::Array => v.is_array(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Str => "a string",
            Self::Bool => "a boolean",
            Self::Number => "a number",
            Self::UInt => "an unsigned integer",
            Self::Int => "an integer",
            Self::StrArray => "an array of strings",
            Self::Array => "an array",
        }
    }
}

/// Field of a received frame: name, JSON type, required (optional ones also accept `null`).
type FieldSpec = (&'static str, Expect, bool);

const R: bool = true;
const O: bool = false;

/// Field table of each known incoming type (`None`: unknown type). Kept in step with
/// [`Incoming`] by the tests; it exists so that every rejection names the offending field.
fn incoming_fields(kind: &str) -> Option<&'static [FieldSpec]> {
    use Expect::{Array, Bool, Int, Number, Str, StrArray, UInt};
    let fields: &'static [FieldSpec] = match kind {
        "worker_hello" => &[
            ("secret", Str, O),
            ("capabilities", StrArray, O),
            ("name", Str, O),
            ("max_concurrent", Int, O),
            ("perry_version", Str, O),
        ],
        "stage" => &[("job_id", Str, R), ("stage", Str, R), ("message", Str, R)],
        "progress" => &[
            ("job_id", Str, R),
            ("stage", Str, R),
            ("percent", Number, R),
            ("message", Str, O),
        ],
        "log" => &[
            ("job_id", Str, R),
            ("stage", Str, R),
            ("line", Str, R),
            ("stream", Str, R),
        ],
        "published" => &[
            ("job_id", Str, R),
            ("platform", Str, R),
            ("message", Str, R),
            ("url", Str, O),
        ],
        "queue_update" => &[
            ("job_id", Str, R),
            ("position", UInt, O),
            ("message", Str, O),
            ("estimated_wait_secs", UInt, O),
        ],
        "error" => &[
            ("job_id", Str, O),
            ("code", Str, R),
            ("message", Str, R),
            ("stage", Str, O),
        ],
        "complete" => &[
            ("job_id", Str, R),
            ("success", Bool, R),
            ("duration_secs", Number, R),
            ("artifacts", Array, R),
            ("needs_finishing", Str, O),
            ("error", Str, O),
        ],
        "update_result" => &[
            ("success", Bool, R),
            ("old_version", Str, R),
            ("new_version", Str, R),
            ("error", Str, O),
        ],
        "build_complete" => &[
            ("job_id", Str, R),
            ("has_distribution", Bool, R),
            ("duration_secs", Number, R),
        ],
        "artifact_ready" => &[],
        "subscribe" | "cancel" => &[("job_id", Str, R)],
        _ => return None,
    };
    Some(fields)
}

/// Checks presence and JSON type of each listed field.
fn check_fields(obj: &Map<String, Value>, fields: &[FieldSpec]) -> Result<(), String> {
    for &(name, expect, required) in fields {
        match obj.get(name) {
            None if required => return Err(format!("missing field `{name}`")),
            None => {}
            Some(Value::Null) if !required => {}
            Some(v) if expect.matches(v) => {}
            Some(v) => {
                return Err(format!(
                    "field `{name}` must be {}, got {}",
                    expect.describe(),
                    json_type_name(v)
                ))
            }
        }
    }
    Ok(())
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "an integer",
        Value::Number(_) => "a float",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Range checks that serde cannot express.
fn check_values(frame: &Incoming) -> Result<(), String> {
    match frame {
        Incoming::Progress { percent, .. }
            if !(percent.is_finite() && (0.0..=100.0).contains(percent)) =>
        {
            Err(format!(
                "field `percent` must be between 0 and 100, got {percent}"
            ))
        }
        Incoming::Log { stream, .. } if stream != "stdout" && stream != "stderr" => {
            Err("field `stream` must be \"stdout\" or \"stderr\"".to_owned())
        }
        _ => Ok(()),
    }
}

/// Longest `type` echoed back in [`FrameError::UnknownType`].
const MAX_TYPE_ECHO: usize = 64;

/// Parses and validates one received text frame.
///
/// # Errors
///
/// A [`FrameError`] saying why the frame was rejected; its [`FrameError::code`] is stable.
pub fn parse_incoming(text: &str) -> Result<Incoming, FrameError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let Value::Object(obj) = &value else {
        return Err(FrameError::NotObject);
    };
    let kind = match obj.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => return Err(FrameError::MissingType),
    };
    let Some(fields) = incoming_fields(kind) else {
        return Err(FrameError::UnknownType(
            kind.chars().take(MAX_TYPE_ECHO).collect(),
        ));
    };
    let invalid = |reason: String| FrameError::Invalid {
        kind: kind.to_owned(),
        reason,
    };
    check_fields(obj, fields).map_err(invalid)?;
    let kind = kind.to_owned();
    let frame: Incoming = serde_json::from_value(value).map_err(|e| FrameError::Invalid {
        kind: kind.clone(),
        reason: e.to_string(),
    })?;
    check_values(&frame).map_err(|reason| FrameError::Invalid { kind, reason })?;
    Ok(frame)
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames sent by the hub (§4.3, §4.5)
// ---------------------------------------------------------------------------------------------

/// A frame sent to a worker or a CLI subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outgoing {
    /// To a worker: run this job attempt.
    JobAssign {
        /// Job id.
        job_id: String,
        /// Fresh per-attempt job token (redacted in `Debug`).
        auth_token: RedactedString,
        /// The manifest, forwarded unchanged (stage 2 rewrites `targets`).
        manifest: Value,
        /// Signing credentials, an object, never null (redacted in `Debug`).
        credentials: Redacted<Value>,
        /// Absolute tarball URL.
        tarball_url: String,
        /// Absolute artifact upload URL.
        artifact_upload_url: String,
    },
    /// To a worker: cancel a job it holds.
    Cancel {
        /// Job id.
        job_id: String,
    },
    /// To an idle worker: update the compiler.
    UpdatePerry,
    /// To a worker: distribute (dormant).
    ProceedDistribute {
        /// Job id.
        job_id: String,
    },
    /// To a worker: skip distribution (dormant).
    SkipDistribute {
        /// Job id.
        job_id: String,
        /// Why.
        reason: String,
    },
    /// Error; fatal to the CLI.
    Error {
        /// Job id, omitted when `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
        /// Error code.
        code: String,
        /// Human-readable message.
        message: String,
        /// Stage, omitted when `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
    },
    /// To a CLI: subscription accepted.
    JobCreated {
        /// Job id.
        job_id: String,
        /// 1-based queue place, 0 once assigned.
        position: u64,
        /// Estimated wait, sent as `null` when unknown.
        estimated_wait_secs: Option<u64>,
    },
    /// To a CLI: queue place changed or the job was requeued.
    QueueUpdate {
        /// Job id.
        job_id: String,
        /// 1-based queue place, 0 once assigned.
        position: u64,
        /// Human-readable message.
        message: String,
        /// Estimated wait, omitted when unknown (as in the §4.5 example).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimated_wait_secs: Option<u64>,
    },
    /// To a CLI: stage change.
    Stage {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// Human-readable message.
        message: String,
    },
    /// To a CLI: build log line.
    Log {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// The line.
        line: String,
        /// `stdout` or `stderr`.
        stream: String,
    },
    /// To a CLI: progress (integer percent).
    Progress {
        /// Job id.
        job_id: String,
        /// Stage name.
        stage: String,
        /// 0–100.
        percent: u8,
        /// Optional message, sent as `null` when absent.
        message: Option<String>,
    },
    /// To a CLI: an artifact can be downloaded (never carries `download_path`, D34).
    ArtifactReady {
        /// Job id.
        job_id: String,
        /// Artifact target, e.g. `linux`.
        target: String,
        /// User-visible file name.
        artifact_name: String,
        /// Decoded size in bytes.
        artifact_size: u64,
        /// Hex SHA-256.
        sha256: String,
        /// Absolute single-use download URL.
        download_url: String,
        /// Token lifetime.
        expires_in_secs: u64,
    },
    /// To a CLI: published to a store.
    Published {
        /// Job id.
        job_id: String,
        /// Platform name.
        platform: String,
        /// Human-readable message.
        message: String,
        /// Store URL, sent as `null` when absent.
        url: Option<String>,
    },
    /// To a CLI: the job ended.
    Complete {
        /// Job id.
        job_id: String,
        /// Final outcome.
        success: bool,
        /// Duration in seconds (a non-finite value is sent as 0).
        #[serde(serialize_with = "finite_f64")]
        duration_secs: f64,
        /// Artifacts, possibly empty.
        artifacts: Vec<ArtifactInfo>,
    },
}

/// Serializes a non-finite float as `0.0` so the field stays numeric (`serde_json` writes `null`).
fn finite_f64<S: Serializer>(v: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(if v.is_finite() { *v } else { 0.0 })
}

impl Outgoing {
    /// A WebSocket `error` frame with a hub-defined code.
    pub fn ws_error(job_id: Option<String>, code: WsErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            job_id,
            code: code.as_str().to_owned(),
            message: message.into(),
            stage: None,
        }
    }

    /// Serializes the frame to its JSON text.
    pub fn to_json(&self) -> String {
        // Cannot fail: string keys only, and no fallible custom serializer.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The frame's `type` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::JobAssign { .. } => "job_assign",
            Self::Cancel { .. } => "cancel",
            Self::UpdatePerry => "update_perry",
            Self::ProceedDistribute { .. } => "proceed_distribute",
            Self::SkipDistribute { .. } => "skip_distribute",
            Self::Error { .. } => "error",
            Self::JobCreated { .. } => "job_created",
            Self::QueueUpdate { .. } => "queue_update",
            Self::Stage { .. } => "stage",
            Self::Log { .. } => "log",
            Self::Progress { .. } => "progress",
            Self::ArtifactReady { .. } => "artifact_ready",
            Self::Published { .. } => "published",
            Self::Complete { .. } => "complete",
        }
    }

    /// The job the frame refers to, if it names one.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Self::JobAssign { job_id, .. }
            | Self::Cancel { job_id }
            | Self::ProceedDistribute { job_id }
            | Self::SkipDistribute { job_id, .. }
            | Self::JobCreated { job_id, .. }
            | Self::QueueUpdate { job_id, .. }
            | Self::Stage { job_id, .. }
            | Self::Log { job_id, .. }
            | Self::Progress { job_id, .. }
            | Self::ArtifactReady { job_id, .. }
            | Self::Published { job_id, .. }
            | Self::Complete { job_id, .. } => Some(job_id),
            Self::Error { job_id, .. } => job_id.as_deref(),
            Self::UpdatePerry => None,
        }
    }

    /// The CLI frame relaying a worker's `stage`, `progress`, `log`, `published`,
    /// `queue_update` or `error`; `None` for any other frame.
    pub fn from_worker_event(event: &Incoming) -> Option<Outgoing> {
        let frame = match event {
            Incoming::Stage {
                job_id,
                stage,
                message,
            } => Self::Stage {
                job_id: job_id.clone(),
                stage: stage.clone(),
                message: message.clone(),
            },
            Incoming::Progress {
                job_id,
                stage,
                percent,
                message,
            } => Self::Progress {
                job_id: job_id.clone(),
                stage: stage.clone(),
                percent: percent_to_u8(*percent),
                message: message.clone(),
            },
            Incoming::Log {
                job_id,
                stage,
                line,
                stream,
            } => Self::Log {
                job_id: job_id.clone(),
                stage: stage.clone(),
                line: line.clone(),
                stream: stream.clone(),
            },
            Incoming::Published {
                job_id,
                platform,
                message,
                url,
            } => Self::Published {
                job_id: job_id.clone(),
                platform: platform.clone(),
                message: message.clone(),
                url: url.clone(),
            },
            Incoming::QueueUpdate {
                job_id,
                position,
                message,
                estimated_wait_secs,
            } => Self::QueueUpdate {
                job_id: job_id.clone(),
                position: position.unwrap_or(0),
                message: message.clone().unwrap_or_default(),
                estimated_wait_secs: *estimated_wait_secs,
            },
            Incoming::Error {
                job_id,
                code,
                message,
                stage,
            } => Self::Error {
                job_id: job_id.clone(),
                code: code.clone(),
                message: message.clone(),
                stage: stage.clone(),
            },
            Incoming::WorkerHello { .. }
            | Incoming::Complete { .. }
            | Incoming::UpdateResult { .. }
            | Incoming::BuildComplete { .. }
            | Incoming::ArtifactReady { .. }
            | Incoming::Subscribe { .. }
            | Incoming::Cancel { .. } => return None,
        };
        Some(frame)
    }
}

/// Rounds and clamps a percentage to 0–100 (NaN becomes 0).
fn percent_to_u8(percent: f64) -> u8 {
    if percent.is_nan() {
        return 0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let p = percent.round().clamp(0.0, 100.0) as u8;
    p
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn assert_invalid(text: &str, kind: &str, needle: &str) {
        match parse_incoming(text) {
            Err(e @ FrameError::Invalid { .. }) => {
                assert_eq!(e.code(), "INVALID_FRAME");
                let FrameError::Invalid { kind: k, reason } = e else {
                    unreachable!()
                };
                assert_eq!(k, kind, "{text}");
                assert!(reason.contains(needle), "{text}: {reason}");
            }
            other => panic!("{text}: expected Invalid, got {other:?}"),
        }
    }

    /// Removes one top-level field from a JSON object text.
    fn without(text: &str, field: &str) -> String {
        let mut v = parse_json(text);
        v.as_object_mut().unwrap().remove(field);
        v.to_string()
    }

    // ----- §2.2 -------------------------------------------------------------------------------

    #[test]
    fn error_envelope_example_round_trips() {
        let text = r#"{"error":{"code":"PUBLISH_LIMIT_REACHED","message":"You've used 15/15 free publishes this month...","usage":{"publishes":15,"limit":15,"period":"2026-04"}}}"#;
        let body: ErrorBody = serde_json::from_str(text).unwrap();
        assert_eq!(body.error.code, ErrorCode::PublishLimitReached);
        assert_eq!(body.http_status(), 429);
        let built = ErrorBody::new(
            ErrorCode::PublishLimitReached,
            "You've used 15/15 free publishes this month...",
        )
        .with_usage(UsageInfo {
            publishes: 15,
            limit: 15,
            period: "2026-04".into(),
        });
        assert_eq!(built, body);
        assert_eq!(serde_json::to_value(&body).unwrap(), parse_json(text));
    }

    #[test]
    fn error_envelope_omits_absent_optionals() {
        let body = ErrorBody::new(ErrorCode::NotFound, "Not found");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"error":{"code":"NOT_FOUND","message":"Not found"}})
        );
        let body = ErrorBody::new(ErrorCode::AccountRequired, "Log in").with_login_url(LOGIN_URL);
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"error":{"code":"ACCOUNT_REQUIRED","message":"Log in","login_url":"https://app.perryts.com/cli/authorize"}})
        );
    }

    #[test]
    fn error_code_statuses_match_table() {
        let table = [
            (ErrorCode::BadRequest, "BAD_REQUEST", 400),
            (ErrorCode::AuthRequired, "AUTH_REQUIRED", 401),
            (ErrorCode::AuthInvalid, "AUTH_INVALID", 401),
            (ErrorCode::LicenseInvalid, "LICENSE_INVALID", 401),
            (ErrorCode::Forbidden, "FORBIDDEN", 403),
            (ErrorCode::AccountRequired, "ACCOUNT_REQUIRED", 403),
            (ErrorCode::NotFound, "NOT_FOUND", 404),
            (ErrorCode::JobNotFound, "JOB_NOT_FOUND", 404),
            (ErrorCode::ArtifactNotFound, "ARTIFACT_NOT_FOUND", 404),
            (ErrorCode::MethodNotAllowed, "METHOD_NOT_ALLOWED", 405),
            (ErrorCode::JobNotRunning, "JOB_NOT_RUNNING", 409),
            (ErrorCode::Gone, "GONE", 410),
            (ErrorCode::UploadTooLarge, "UPLOAD_TOO_LARGE", 413),
            (ErrorCode::RangeNotSatisfiable, "RANGE_NOT_SATISFIABLE", 416),
            (ErrorCode::PublishLimitReached, "PUBLISH_LIMIT_REACHED", 429),
            (ErrorCode::RateLimited, "RATE_LIMITED", 429),
            (ErrorCode::InternalError, "INTERNAL_ERROR", 500),
            (ErrorCode::Unavailable, "UNAVAILABLE", 503),
        ];
        for (code, name, status) in table {
            assert_eq!(code.http_status(), status, "{name}");
            assert_eq!(code.as_str(), name);
            assert_eq!(code.to_string(), name);
            assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
            assert_eq!(
                serde_json::from_value::<ErrorCode>(json!(name)).unwrap(),
                code
            );
        }
    }

    #[test]
    fn ws_error_codes_serialize_as_documented() {
        for (code, name) in [
            (WsErrorCode::AuthFailed, "AUTH_FAILED"),
            (WsErrorCode::JobNotFound, "JOB_NOT_FOUND"),
            (WsErrorCode::InternalError, "INTERNAL_ERROR"),
            (WsErrorCode::VerifyFailed, "VERIFY_FAILED"),
        ] {
            assert_eq!(code.as_str(), name);
            assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
        }
    }

    // ----- §3 and §6 --------------------------------------------------------------------------

    #[test]
    fn tier_limits_match_section_6() {
        assert_eq!(Tier::Free.platforms(), vec!["macos"]);
        assert_eq!(
            Tier::Pro.platforms(),
            vec!["macos", "ios", "android", "windows", "linux"]
        );
        assert_eq!((Tier::Free.priority(), Tier::Pro.priority()), (1, 10));
        assert_eq!(
            (
                Tier::Free.monthly_publish_limit(),
                Tier::Pro.monthly_publish_limit()
            ),
            (15, 50)
        );
        assert_eq!(
            (
                Tier::Free.hourly_build_limit(),
                Tier::Pro.hourly_build_limit()
            ),
            (5, 30)
        );
        assert_eq!(
            (Tier::Free.verify_limit(), Tier::Pro.verify_limit()),
            (2, 20)
        );
        assert_eq!(Tier::Free.tarball_cap_bytes(), 52_428_800);
        assert_eq!(Tier::Pro.tarball_cap_bytes(), 209_715_200);
        assert_eq!(Tier::parse("free"), Some(Tier::Free));
        assert_eq!(Tier::parse("pro"), Some(Tier::Pro));
        assert_eq!(Tier::parse("enterprise"), None);
        assert_eq!(Tier::parse("PRO"), None);
        for t in [Tier::Free, Tier::Pro] {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
    }

    #[test]
    fn register_round_trip_and_redaction() {
        let req: RegisterRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(req, RegisterRequest::default());
        let req: RegisterRequest =
            serde_json::from_str(r#"{"github_username":"octo","extra":1}"#).unwrap();
        assert_eq!(req.github_username.as_deref(), Some("octo"));

        let text = r#"{"license_key":"FREE-1A2B-3C4D-5E6F","tier":"free","platforms":["macos"]}"#;
        let resp: RegisterResponse = serde_json::from_str(text).unwrap();
        assert_eq!(resp.tier, Tier::Free);
        assert_eq!(serde_json::to_value(&resp).unwrap(), parse_json(text));
        let debug = format!("{resp:?}");
        assert!(!debug.contains("1A2B"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn verify_bodies() {
        let req: VerifyRequest =
            serde_json::from_str(r#"{"license_key":"PRO-AAAA-BBBB-CCCC"}"#).unwrap();
        assert_eq!(req.license_key, "PRO-AAAA-BBBB-CCCC");
        assert!(!format!("{req:?}").contains("AAAA"));
        assert!(serde_json::from_str::<VerifyRequest>("{}").is_err());

        assert_eq!(
            serde_json::to_value(VerifyResponse::invalid()).unwrap(),
            json!({"valid":false,"tier":null,"platforms":null})
        );
        let valid = VerifyResponse {
            valid: true,
            tier: Some(Tier::Pro),
            platforms: Some(vec!["macos".into()]),
        };
        assert_eq!(
            serde_json::to_value(valid).unwrap(),
            json!({"valid":true,"tier":"pro","platforms":["macos"]})
        );
    }

    #[test]
    fn account_create_accepts_string_or_number_github_id() {
        for text in [
            r#"{"github_id":123,"github_username":"octo"}"#,
            r#"{"github_id":"123","github_username":"octo"}"#,
            r#"{"github_id":123.0,"github_username":"octo"}"#,
        ] {
            let req: AccountCreateRequest = serde_json::from_str(text).unwrap();
            assert_eq!(req.github_id, "123", "{text}");
            assert_eq!(req.github_username, "octo");
            assert_eq!(req.email, None);
        }
        let req: AccountCreateRequest = serde_json::from_str(
            r#"{"github_id":"9","github_username":"o","email":"o@example.com"}"#,
        )
        .unwrap();
        assert_eq!(req.email.as_deref(), Some("o@example.com"));
        for bad in [
            r#"{"github_username":"octo"}"#,
            r#"{"github_id":1.5,"github_username":"octo"}"#,
            r#"{"github_id":true,"github_username":"octo"}"#,
            r#"{"github_id":null,"github_username":"octo"}"#,
            r#"{"github_id":"1"}"#,
        ] {
            assert!(
                serde_json::from_str::<AccountCreateRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn account_create_response_redacts_token() {
        let resp = AccountCreateResponse {
            id: "a1".into(),
            api_token: "tok-secret-value".into(),
            github_username: "octo".into(),
            tier: Tier::Free,
            created: true,
        };
        let debug = format!("{resp:?}");
        assert!(!debug.contains("tok-secret-value"), "{debug}");
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({"id":"a1","api_token":"tok-secret-value","github_username":"octo","tier":"free","created":true})
        );
    }

    #[test]
    fn account_update_validates_tier_and_account_id() {
        let req: AccountUpdateRequest =
            serde_json::from_str(r#"{"account_id":"a1","tier":"pro","has_payment_method":true}"#)
                .unwrap();
        assert_eq!(req.tier, Some(Tier::Pro));
        assert_eq!(req.has_payment_method, Some(true));
        assert_eq!(req.polar_customer_id, None);
        assert!(serde_json::from_str::<AccountUpdateRequest>(r#"{"tier":"pro"}"#).is_err());
        assert!(serde_json::from_str::<AccountUpdateRequest>(
            r#"{"account_id":"a1","tier":"gold"}"#
        )
        .is_err());
    }

    #[test]
    fn account_response_shape() {
        let resp = AccountResponse {
            id: "a1".into(),
            github_username: "octo".into(),
            email: None,
            tier: Tier::Pro,
            has_payment_method: false,
            usage: AccountUsage {
                publishes: 3,
                publish_limit: 50,
                deep_verifies: 0,
                verify_limit: 20,
                period: "2026-04".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({"id":"a1","github_username":"octo","email":null,"tier":"pro","has_payment_method":false,
                   "usage":{"publishes":3,"publish_limit":50,"deep_verifies":0,"verify_limit":20,"period":"2026-04"}})
        );
    }

    #[test]
    fn build_and_admin_bodies() {
        let text = r#"{"job_id":"j1","ws_url":"/ws","position":1}"#;
        let resp: BuildResponse = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&resp).unwrap(), parse_json(text));

        let text = r#"{"token":"d1","download_url":"https://hub.example/api/v1/dl/d1","size":42}"#;
        let resp: ArtifactUploadResponse = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&resp).unwrap(), parse_json(text));

        let req: UpdatePerryRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(req.expected_version, None);
        let resp = UpdatePerryResponse {
            ok: true,
            workers_notified: 1,
            expected_version: "0.5.1182".into(),
            workers: vec![WorkerSummary {
                name: "linux-1".into(),
                perry_version: "unknown".into(),
                busy: false,
            }],
        };
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({"ok":true,"workers_notified":1,"expected_version":"0.5.1182",
                   "workers":[{"name":"linux-1","perry_version":"unknown","busy":false}]})
        );
        let resp = AdminWorkersResponse {
            expected_version: String::new(),
            workers: vec![AdminWorker {
                name: "linux-1".into(),
                perry_version: "0.5.1182".into(),
                capabilities: ",linux,android,".into(),
                busy: true,
            }],
        };
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({"expected_version":"","workers":[{"name":"linux-1","perry_version":"0.5.1182","capabilities":",linux,android,","busy":true}]})
        );
        assert_eq!(
            serde_json::to_value(OkResponse { ok: true }).unwrap(),
            json!({"ok":true})
        );
        let status = StatusResponse {
            status: "ok".into(),
            queue_length: 0,
            connected_workers: 2,
            perry_version: "0.1.0".into(),
            expected_perry_version: String::new(),
            supported_targets: vec!["linux".into()],
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({"status":"ok","queue_length":0,"connected_workers":2,"perry_version":"0.1.0",
                   "expected_perry_version":"","supported_targets":["linux"]})
        );
    }

    // ----- §4.2 -------------------------------------------------------------------------------

    const HELLO: &str = r#"{"type":"worker_hello","name":"linux-1","secret":"s3cret","perry_version":"0.5.1182","capabilities":["linux","android"],"max_concurrent":2}"#;
    const STAGE: &str =
        r#"{"type":"stage","job_id":"j1","stage":"compiling","message":"Compiling"}"#;
    const PROGRESS: &str =
        r#"{"type":"progress","job_id":"j1","stage":"compiling","percent":100,"message":null}"#;
    const LOG: &str =
        r#"{"type":"log","job_id":"j1","stage":"compiling","line":"warning: x","stream":"stderr"}"#;
    const PUBLISHED: &str = r#"{"type":"published","job_id":"j1","platform":"android","message":"Uploaded","url":null}"#;
    const ERROR: &str = r#"{"type":"error","job_id":"j1","code":"INTERNAL_ERROR","message":"Compilation failed","stage":"compiling"}"#;
    const COMPLETE: &str = r#"{"type":"complete","job_id":"j1","success":true,"duration_secs":12.4,"needs_finishing":null,"artifacts":[{"name":"app-j1.tar.gz","size":3500113,"sha256":"9f2c..."}]}"#;
    const UPDATE_RESULT: &str = r#"{"type":"update_result","success":true,"old_version":"0.5.1180","new_version":"0.5.1182"}"#;
    const BUILD_COMPLETE: &str =
        r#"{"type":"build_complete","job_id":"j1","has_distribution":false,"duration_secs":30.0}"#;

    fn worker_examples() -> Vec<(&'static str, Incoming)> {
        vec![
            (
                HELLO,
                Incoming::WorkerHello {
                    secret: Some("s3cret".into()),
                    capabilities: Some(vec!["linux".into(), "android".into()]),
                    name: Some("linux-1".into()),
                    max_concurrent: Some(2),
                    perry_version: Some("0.5.1182".into()),
                },
            ),
            (
                STAGE,
                Incoming::Stage {
                    job_id: "j1".into(),
                    stage: "compiling".into(),
                    message: "Compiling".into(),
                },
            ),
            (
                PROGRESS,
                Incoming::Progress {
                    job_id: "j1".into(),
                    stage: "compiling".into(),
                    percent: 100.0,
                    message: None,
                },
            ),
            (
                LOG,
                Incoming::Log {
                    job_id: "j1".into(),
                    stage: "compiling".into(),
                    line: "warning: x".into(),
                    stream: "stderr".into(),
                },
            ),
            (
                PUBLISHED,
                Incoming::Published {
                    job_id: "j1".into(),
                    platform: "android".into(),
                    message: "Uploaded".into(),
                    url: None,
                },
            ),
            (
                ERROR,
                Incoming::Error {
                    job_id: Some("j1".into()),
                    code: "INTERNAL_ERROR".into(),
                    message: "Compilation failed".into(),
                    stage: Some("compiling".into()),
                },
            ),
            (
                COMPLETE,
                Incoming::Complete {
                    job_id: "j1".into(),
                    success: true,
                    duration_secs: 12.4,
                    artifacts: vec![ArtifactInfo {
                        name: "app-j1.tar.gz".into(),
                        size: 3_500_113,
                        sha256: "9f2c...".into(),
                    }],
                    needs_finishing: None,
                    error: None,
                },
            ),
            (
                UPDATE_RESULT,
                Incoming::UpdateResult {
                    success: true,
                    old_version: "0.5.1180".into(),
                    new_version: "0.5.1182".into(),
                    error: None,
                },
            ),
            (
                BUILD_COMPLETE,
                Incoming::BuildComplete {
                    job_id: "j1".into(),
                    has_distribution: false,
                    duration_secs: 30.0,
                },
            ),
        ]
    }

    #[test]
    fn worker_examples_parse_and_round_trip() {
        for (text, expected) in worker_examples() {
            let frame = parse_incoming(text).unwrap();
            assert_eq!(frame, expected, "{text}");
            assert_eq!(frame.kind(), parse_json(text)["type"], "{text}");
            let again = parse_incoming(&serde_json::to_string(&frame).unwrap()).unwrap();
            assert_eq!(again, frame, "{text}");
            // Every field of the example survives serialization (nulls may be omitted).
            let out = serde_json::to_value(&frame).unwrap();
            for (k, v) in parse_json(text).as_object().unwrap() {
                match (out.get(k), v) {
                    (_, Value::Null) => {}
                    // `percent` is an f64, so `100` comes back as `100.0`.
                    (Some(Value::Number(a)), Value::Number(b)) => {
                        assert_eq!(a.as_f64(), b.as_f64(), "{text}: {k}");
                    }
                    (got, _) => assert_eq!(got, Some(v), "{text}: {k}"),
                }
            }
        }
    }

    #[test]
    fn cli_frames_parse() {
        assert_eq!(
            parse_incoming(r#"{"type":"subscribe","job_id":"j1"}"#).unwrap(),
            Incoming::Subscribe {
                job_id: "j1".into()
            }
        );
        let cancel = parse_incoming(r#"{"type":"cancel","job_id":"j1"}"#).unwrap();
        assert_eq!(
            cancel,
            Incoming::Cancel {
                job_id: "j1".into()
            }
        );
        assert_eq!(cancel.job_id(), Some("j1"));
        assert_invalid(r#"{"type":"subscribe"}"#, "subscribe", "`job_id`");
        assert_invalid(r#"{"type":"cancel","job_id":7}"#, "cancel", "`job_id`");
    }

    #[test]
    fn worker_hello_minimal_and_missing_secret_parse() {
        let frame = parse_incoming(r#"{"type":"worker_hello"}"#).unwrap();
        assert_eq!(
            frame,
            Incoming::WorkerHello {
                secret: None,
                capabilities: None,
                name: None,
                max_concurrent: None,
                perry_version: None,
            }
        );
        assert_invalid(
            r#"{"type":"worker_hello","capabilities":["linux",3]}"#,
            "worker_hello",
            "`capabilities`",
        );
        assert_invalid(
            r#"{"type":"worker_hello","max_concurrent":1.5}"#,
            "worker_hello",
            "`max_concurrent`",
        );
    }

    #[test]
    fn worker_hello_debug_hides_secret() {
        let frame = parse_incoming(HELLO).unwrap();
        let debug = format!("{frame:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("[redacted]"));
        let Incoming::WorkerHello {
            secret: Some(secret),
            ..
        } = &frame
        else {
            panic!("not a hello")
        };
        assert_eq!(secret.as_str(), "s3cret");
        assert_eq!(secret.expose(), "s3cret");
    }

    #[test]
    fn progress_accepts_int_and_float_and_checks_range() {
        for (percent, expected) in [("0", 0.0), ("42.5", 42.5), ("100", 100.0), ("1e2", 100.0)] {
            let text =
                format!(r#"{{"type":"progress","job_id":"j1","stage":"s","percent":{percent}}}"#);
            match parse_incoming(&text).unwrap() {
                Incoming::Progress { percent, .. } => assert_eq!(percent, expected),
                other => panic!("{other:?}"),
            }
        }
        for percent in ["-1", "100.5", "1000", "\"50\"", "null"] {
            let text =
                format!(r#"{{"type":"progress","job_id":"j1","stage":"s","percent":{percent}}}"#);
            assert_invalid(&text, "progress", "`percent`");
        }
    }

    #[test]
    fn log_stream_must_be_stdout_or_stderr() {
        let ok = LOG.replace("stderr", "stdout");
        assert!(parse_incoming(&ok).is_ok());
        assert_invalid(&LOG.replace("stderr", "stdlog"), "log", "`stream`");
    }

    #[test]
    fn artifact_ready_legacy_accepts_anything() {
        for text in [
            r#"{"type":"artifact_ready"}"#,
            r#"{"type":"artifact_ready","job_id":"j1","path":"/etc/passwd","size":"big","x":{"y":[1,null]}}"#,
            r#"{"type":"artifact_ready","job_id":null,"path":5}"#,
        ] {
            let frame = parse_incoming(text).unwrap();
            assert_eq!(frame.kind(), "artifact_ready");
            assert_eq!(Outgoing::from_worker_event(&frame), None);
            assert_eq!(frame.job_id(), None);
        }
        let frame = parse_incoming(r#"{"type":"artifact_ready","path":"/tmp/x"}"#).unwrap();
        let Incoming::ArtifactReady { rest } = frame else {
            panic!("not artifact_ready")
        };
        assert_eq!(rest.get("path"), Some(&json!("/tmp/x")));
        assert!(!rest.contains_key("type"));
    }

    #[test]
    fn queue_update_and_error_optionals() {
        let frame = parse_incoming(r#"{"type":"queue_update","job_id":"j1"}"#).unwrap();
        assert_eq!(
            frame,
            Incoming::QueueUpdate {
                job_id: "j1".into(),
                position: None,
                message: None,
                estimated_wait_secs: None,
            }
        );
        assert_invalid(
            r#"{"type":"queue_update","job_id":"j1","position":-1}"#,
            "queue_update",
            "`position`",
        );
        let frame =
            parse_incoming(r#"{"type":"error","code":"INTERNAL_ERROR","message":"m"}"#).unwrap();
        assert_eq!(frame.job_id(), None);
        assert_invalid(r#"{"type":"error","message":"m"}"#, "error", "`code`");
        assert_invalid(r#"{"type":"error","code":"X"}"#, "error", "`message`");
    }

    #[test]
    fn missing_required_fields_are_rejected_by_name() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                COMPLETE,
                "complete",
                &["job_id", "success", "duration_secs", "artifacts"],
            ),
            (STAGE, "stage", &["job_id", "stage", "message"]),
            (LOG, "log", &["job_id", "stage", "line", "stream"]),
            (PROGRESS, "progress", &["job_id", "stage", "percent"]),
            (PUBLISHED, "published", &["job_id", "platform", "message"]),
            (
                UPDATE_RESULT,
                "update_result",
                &["success", "old_version", "new_version"],
            ),
            (
                BUILD_COMPLETE,
                "build_complete",
                &["job_id", "has_distribution", "duration_secs"],
            ),
        ];
        for &(text, kind, fields) in cases {
            for field in fields {
                let needle = format!("missing field `{field}`");
                assert_invalid(&without(text, field), kind, &needle);
            }
        }
    }

    #[test]
    fn required_string_null_is_rejected_by_name() {
        let mut v = parse_json(STAGE);
        v["message"] = Value::Null;
        assert_invalid(&v.to_string(), "stage", "`message`");
        let mut v = parse_json(COMPLETE);
        v["success"] = json!("yes");
        assert_invalid(&v.to_string(), "complete", "`success`");
    }

    #[test]
    fn nested_artifact_fields_are_checked() {
        let mut v = parse_json(COMPLETE);
        v["artifacts"][0].as_object_mut().unwrap().remove("sha256");
        assert_invalid(&v.to_string(), "complete", "`sha256`");
        let mut v = parse_json(COMPLETE);
        v["artifacts"] = json!([]);
        assert!(parse_incoming(&v.to_string()).is_ok());
    }

    /// The field table and the serde types agree: dropping an optional field still parses.
    #[test]
    fn field_table_matches_serde_types() {
        for kind in INCOMING_TYPES {
            assert!(incoming_fields(kind).is_some(), "{kind}");
        }
        let examples = [
            HELLO,
            STAGE,
            PROGRESS,
            LOG,
            PUBLISHED,
            ERROR,
            COMPLETE,
            UPDATE_RESULT,
            BUILD_COMPLETE,
        ];
        for text in examples {
            let v = parse_json(text);
            let kind = v["type"].as_str().unwrap();
            let fields = incoming_fields(kind).unwrap();
            for &(name, _, required) in fields {
                let result = parse_incoming(&without(text, name));
                assert_eq!(result.is_err(), required, "{kind}.{name}: {result:?}");
            }
            // Unknown fields are ignored.
            let mut extra = v.clone();
            extra["unexpected"] = json!({"a":1});
            assert!(parse_incoming(&extra.to_string()).is_ok(), "{kind}");
        }
    }

    #[test]
    fn envelope_errors() {
        let e = parse_incoming(r#"{"type":"foo","job_id":"j1"}"#).unwrap_err();
        assert!(
            matches!(&e, FrameError::UnknownType(t) if t == "foo"),
            "{e:?}"
        );
        assert_eq!(e.code(), "UNKNOWN_TYPE");

        let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(500));
        match parse_incoming(&long).unwrap_err() {
            FrameError::UnknownType(t) => assert_eq!(t.len(), MAX_TYPE_ECHO),
            other => panic!("{other:?}"),
        }

        for text in [
            "not json",
            "",
            "{\"type\":\"stage\"",
            "\u{0}\u{1}\u{7f}\u{fffd}\u{fffd}PK\u{3}\u{4}",
        ] {
            let e = parse_incoming(text).unwrap_err();
            assert!(matches!(e, FrameError::NotJson(_)), "{text:?}: {e:?}");
            assert_eq!(e.code(), "NOT_JSON");
        }
        let garbage =
            String::from_utf8_lossy(&[0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x7b]).into_owned();
        assert!(matches!(
            parse_incoming(&garbage),
            Err(FrameError::NotJson(_))
        ));

        for text in ["[1,2]", "\"stage\"", "42", "null", "true"] {
            let e = parse_incoming(text).unwrap_err();
            assert!(matches!(e, FrameError::NotObject), "{text}: {e:?}");
            assert_eq!(e.code(), "NOT_OBJECT");
        }

        for text in [
            r#"{"type":5}"#,
            r#"{"job_id":"j1"}"#,
            r#"{"type":null}"#,
            "{}",
        ] {
            let e = parse_incoming(text).unwrap_err();
            assert!(matches!(e, FrameError::MissingType), "{text}: {e:?}");
            assert_eq!(e.code(), "MISSING_TYPE");
        }
        // Outgoing-only types are not accepted from peers.
        assert!(matches!(
            parse_incoming(r#"{"type":"job_assign","job_id":"j1"}"#),
            Err(FrameError::UnknownType(_))
        ));
    }

    // ----- §4.3 -------------------------------------------------------------------------------

    fn job_assign() -> Outgoing {
        Outgoing::JobAssign {
            job_id: "j1".into(),
            auth_token: "t1".into(),
            manifest: json!({"app_name":"app","bundle_id":"com.ex.app","version":"1.0.0","entry":"src/main.ts","targets":["linux"]}),
            credentials: json!({}).into(),
            tarball_url: "https://hub.example/api/v1/tarball/j1".into(),
            artifact_upload_url: "https://hub.example/api/v1/artifact/upload/j1".into(),
        }
    }

    fn assert_example(frame: &Outgoing, text: &str) {
        let expected = parse_json(text);
        assert_eq!(parse_json(&frame.to_json()), expected, "{text}");
        assert_eq!(frame.kind(), expected["type"], "{text}");
        let back: Outgoing = serde_json::from_str(text).unwrap();
        assert_eq!(&back, frame, "{text}");
    }

    #[test]
    fn hub_to_worker_examples() {
        let cases = [
            (
                job_assign(),
                r#"{"type":"job_assign","job_id":"j1","auth_token":"t1","manifest":{"app_name":"app","bundle_id":"com.ex.app","version":"1.0.0","entry":"src/main.ts","targets":["linux"]},"credentials":{},"tarball_url":"https://hub.example/api/v1/tarball/j1","artifact_upload_url":"https://hub.example/api/v1/artifact/upload/j1"}"#,
            ),
            (
                Outgoing::Cancel {
                    job_id: "j1".into(),
                },
                r#"{"type":"cancel","job_id":"j1"}"#,
            ),
            (Outgoing::UpdatePerry, r#"{"type":"update_perry"}"#),
            (
                Outgoing::ProceedDistribute {
                    job_id: "j1".into(),
                },
                r#"{"type":"proceed_distribute","job_id":"j1"}"#,
            ),
            (
                Outgoing::SkipDistribute {
                    job_id: "j1".into(),
                    reason: "Verification timed out".into(),
                },
                r#"{"type":"skip_distribute","job_id":"j1","reason":"Verification timed out"}"#,
            ),
            (
                Outgoing::ws_error(None, WsErrorCode::AuthFailed, "Invalid worker secret"),
                r#"{"type":"error","code":"AUTH_FAILED","message":"Invalid worker secret"}"#,
            ),
        ];
        for (frame, text) in &cases {
            assert_example(frame, text);
        }
        assert_eq!(
            Outgoing::UpdatePerry.to_json(),
            r#"{"type":"update_perry"}"#
        );
    }

    #[test]
    fn job_assign_debug_hides_token_and_credentials() {
        let frame = Outgoing::JobAssign {
            job_id: "j1".into(),
            auth_token: "tok-0123456789".into(),
            manifest: json!({"app_name":"app"}),
            credentials: json!({"apple_password":"hunter2-pass"}).into(),
            tarball_url: "https://hub.example/api/v1/tarball/j1".into(),
            artifact_upload_url: "https://hub.example/api/v1/artifact/upload/j1".into(),
        };
        let debug = format!("{frame:?}");
        assert!(!debug.contains("tok-0123456789"), "{debug}");
        assert!(!debug.contains("hunter2-pass"), "{debug}");
        assert!(debug.contains("j1"));
        let json = frame.to_json();
        assert!(json.contains("tok-0123456789") && json.contains("hunter2-pass"));
    }

    // ----- §4.5 -------------------------------------------------------------------------------

    #[test]
    fn hub_to_cli_examples() {
        let cases = [
            (
                Outgoing::JobCreated {
                    job_id: "j1".into(),
                    position: 2,
                    estimated_wait_secs: None,
                },
                r#"{"type":"job_created","job_id":"j1","position":2,"estimated_wait_secs":null}"#,
            ),
            (
                Outgoing::QueueUpdate {
                    job_id: "j1".into(),
                    position: 1,
                    message: "Builder disconnected, re-queued (attempt 2)".into(),
                    estimated_wait_secs: None,
                },
                r#"{"type":"queue_update","job_id":"j1","position":1,"message":"Builder disconnected, re-queued (attempt 2)"}"#,
            ),
            (
                Outgoing::Stage {
                    job_id: "j1".into(),
                    stage: "signing".into(),
                    message: "Routing to platform worker for signing and packaging...".into(),
                },
                r#"{"type":"stage","job_id":"j1","stage":"signing","message":"Routing to platform worker for signing and packaging..."}"#,
            ),
            (
                Outgoing::ArtifactReady {
                    job_id: "j1".into(),
                    target: "linux".into(),
                    artifact_name: "app-j1.tar.gz".into(),
                    artifact_size: 3_500_113,
                    sha256: "9f2c...".into(),
                    download_url: "https://hub.example/api/v1/dl/d1".into(),
                    expires_in_secs: 600,
                },
                r#"{"type":"artifact_ready","job_id":"j1","target":"linux","artifact_name":"app-j1.tar.gz","artifact_size":3500113,"sha256":"9f2c...","download_url":"https://hub.example/api/v1/dl/d1","expires_in_secs":600}"#,
            ),
            (
                Outgoing::Error {
                    job_id: None,
                    code: "INTERNAL_ERROR".into(),
                    message: "Build failed after 3 attempts (workers kept disconnecting)".into(),
                    stage: None,
                },
                r#"{"type":"error","code":"INTERNAL_ERROR","message":"Build failed after 3 attempts (workers kept disconnecting)"}"#,
            ),
            (
                Outgoing::Complete {
                    job_id: "j1".into(),
                    success: false,
                    duration_secs: 95.2,
                    artifacts: vec![],
                },
                r#"{"type":"complete","job_id":"j1","success":false,"duration_secs":95.2,"artifacts":[]}"#,
            ),
        ];
        for (frame, text) in &cases {
            assert_example(frame, text);
        }
    }

    #[test]
    fn job_created_serializes_null_wait() {
        let frame = Outgoing::JobCreated {
            job_id: "j1".into(),
            position: 0,
            estimated_wait_secs: None,
        };
        let v = parse_json(&frame.to_json());
        assert_eq!(v.get("estimated_wait_secs"), Some(&Value::Null));
    }

    #[test]
    fn artifact_ready_never_has_download_path() {
        let frame = Outgoing::ArtifactReady {
            job_id: "j1".into(),
            target: "linux".into(),
            artifact_name: "a".into(),
            artifact_size: 1,
            sha256: "00".into(),
            download_url: "https://hub.example/api/v1/dl/d1".into(),
            expires_in_secs: 600,
        };
        let json = frame.to_json();
        assert!(!json.contains("download_path"), "{json}");
        let v = parse_json(&json);
        assert!(v["artifact_size"].is_u64() && v["expires_in_secs"].is_u64());
    }

    #[test]
    fn nullable_outgoing_fields_are_sent_as_null() {
        let progress = Outgoing::Progress {
            job_id: "j1".into(),
            stage: "s".into(),
            percent: 5,
            message: None,
        };
        assert_eq!(
            parse_json(&progress.to_json()),
            json!({"type":"progress","job_id":"j1","stage":"s","percent":5,"message":null})
        );
        let published = Outgoing::Published {
            job_id: "j1".into(),
            platform: "android".into(),
            message: "Uploaded".into(),
            url: None,
        };
        assert_eq!(parse_json(&published.to_json()), parse_json(PUBLISHED));
    }

    #[test]
    fn complete_duration_is_always_numeric() {
        let frame = Outgoing::Complete {
            job_id: "j1".into(),
            success: false,
            duration_secs: f64::NAN,
            artifacts: vec![],
        };
        assert_eq!(parse_json(&frame.to_json())["duration_secs"], json!(0.0));
    }

    #[test]
    fn relays_worker_events() {
        let relayed = |text: &str| Outgoing::from_worker_event(&parse_incoming(text).unwrap());
        assert_eq!(
            relayed(PROGRESS),
            Some(Outgoing::Progress {
                job_id: "j1".into(),
                stage: "compiling".into(),
                percent: 100,
                message: None,
            })
        );
        assert_eq!(
            parse_json(&relayed(STAGE).unwrap().to_json()),
            parse_json(STAGE)
        );
        assert_eq!(
            parse_json(&relayed(LOG).unwrap().to_json()),
            parse_json(LOG)
        );
        assert_eq!(
            parse_json(&relayed(PUBLISHED).unwrap().to_json()),
            parse_json(PUBLISHED)
        );
        assert_eq!(
            parse_json(&relayed(ERROR).unwrap().to_json()),
            parse_json(ERROR)
        );
        assert_eq!(
            relayed(r#"{"type":"queue_update","job_id":"j1"}"#),
            Some(Outgoing::QueueUpdate {
                job_id: "j1".into(),
                position: 0,
                message: String::new(),
                estimated_wait_secs: None,
            })
        );
        for (percent, expected) in [("49.5", 50), ("0.4", 0), ("99.6", 100), ("12", 12)] {
            let text =
                format!(r#"{{"type":"progress","job_id":"j1","stage":"s","percent":{percent}}}"#);
            match relayed(&text) {
                Some(Outgoing::Progress { percent, .. }) => assert_eq!(percent, expected),
                other => panic!("{other:?}"),
            }
        }
        for text in [
            HELLO,
            COMPLETE,
            UPDATE_RESULT,
            BUILD_COMPLETE,
            r#"{"type":"subscribe","job_id":"j1"}"#,
            r#"{"type":"cancel","job_id":"j1"}"#,
        ] {
            assert_eq!(relayed(text), None, "{text}");
        }
    }

    #[test]
    fn percent_conversion_clamps() {
        assert_eq!(percent_to_u8(f64::NAN), 0);
        assert_eq!(percent_to_u8(-5.0), 0);
        assert_eq!(percent_to_u8(250.0), 100);
        assert_eq!(percent_to_u8(f64::INFINITY), 100);
    }

    #[test]
    fn outgoing_job_ids() {
        assert_eq!(job_assign().job_id(), Some("j1"));
        assert_eq!(Outgoing::UpdatePerry.job_id(), None);
        assert_eq!(
            Outgoing::ws_error(Some("j2".into()), WsErrorCode::JobNotFound, "Job not found")
                .job_id(),
            Some("j2")
        );
    }
}
