//! The errors ingest answers with, each a [`shared::http::ApiError`] with a stable code of
//! PROTOCOL.md §2.2, plus the mapping of blob-store and multipart failures to 4xx answers.

use blob::BlobError;
use protocol::{Tier, UsageInfo, LOGIN_URL};
use shared::http::{ApiError, ErrorCode};

/// 401 `LICENSE_INVALID`: unknown licence key.
pub fn license_invalid() -> ApiError {
    ApiError::new(ErrorCode::LicenseInvalid, "Invalid license key")
}

/// 401 `AUTH_INVALID`: unknown or revoked API token, or a deleted account.
pub fn auth_invalid() -> ApiError {
    ApiError::new(ErrorCode::AuthInvalid, "Invalid API token")
}

/// 401 `AUTH_REQUIRED`: no Bearer token.
pub fn auth_required() -> ApiError {
    ApiError::new(ErrorCode::AuthRequired, "Authorization header required")
}

/// 403 `FORBIDDEN` for the admin endpoints.
pub fn admin_forbidden() -> ApiError {
    ApiError::forbidden("Admin authentication required")
}

/// 403 `FORBIDDEN`: the job token is missing, wrong, or of an earlier attempt.
pub fn invalid_job_token() -> ApiError {
    ApiError::forbidden("Invalid job token")
}

/// 404 `JOB_NOT_FOUND`.
pub fn job_not_found() -> ApiError {
    ApiError::new(ErrorCode::JobNotFound, "Job not found")
}

/// 409 `JOB_NOT_RUNNING`.
pub fn job_not_running() -> ApiError {
    ApiError::new(ErrorCode::JobNotRunning, "Job is not in running state")
}

/// 403 `ACCOUNT_REQUIRED` with the login URL (device licence on a second project).
pub fn account_required() -> ApiError {
    let mut e = ApiError::new(
        ErrorCode::AccountRequired,
        "Free device licenses support one project. Run 'perry login' to create an account and publish multiple projects.",
    );
    e.login_url = Some(LOGIN_URL.to_owned());
    e
}

/// 429 `RATE_LIMITED`.
pub fn rate_limited(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::RateLimited, message)
}

/// 429 `RATE_LIMITED` for the hourly build limit, with the seed's message.
pub fn hourly_limit(limit: u32) -> ApiError {
    rate_limited(format!("Hourly build limit reached ({limit} per hour)"))
}

/// 429 `PUBLISH_LIMIT_REACHED` with `usage`. `publishes` are the counted ones; `in_flight`
/// builds count toward the limit too (D21) and are mentioned in the message.
pub fn publish_limit(
    tier: Tier,
    publishes: u32,
    in_flight: u32,
    limit: u32,
    period: &str,
) -> ApiError {
    let used = publishes.saturating_add(in_flight);
    let pending = match in_flight {
        0 => String::new(),
        1 => " (including 1 build in progress)".to_owned(),
        n => format!(" (including {n} builds in progress)"),
    };
    let message = match tier {
        Tier::Free => format!(
            "You've used {used}/{limit} free publishes this month{pending}. Resets on the 1st. \
             Run 'perry login' to upgrade to Pro ($19/mo, 50 publishes)."
        ),
        Tier::Pro => format!(
            "You've used {used}/{limit} Pro publishes this month{pending}. Resets on the 1st. \
             Run 'perry login' to link an account: Pro accounts continue with billed overage."
        ),
    };
    let mut e = ApiError::new(ErrorCode::PublishLimitReached, message);
    e.usage = Some(UsageInfo {
        publishes,
        limit,
        period: period.to_owned(),
    });
    e
}

/// 413 `UPLOAD_TOO_LARGE` naming what was too large.
pub fn too_large(what: &str, limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::UploadTooLarge,
        format!("{what} exceeds the size limit of {limit} bytes"),
    )
}

/// 408 `REQUEST_TIMEOUT`: the body stopped arriving (DEC-22).
pub fn body_idle() -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        "Request timed out: the request body stopped arriving",
    )
}

/// 429 `RATE_LIMITED` / 503 `UNAVAILABLE`: too many uploads without an API token in flight,
/// from this address or in all (DEC-22).
pub fn uploads_in_flight(per_address: bool, limit: u32) -> ApiError {
    if per_address {
        rate_limited(format!(
            "Too many uploads in flight from your address ({limit}); wait for one to finish, or sign in with `perry login`"
        ))
    } else {
        ApiError::unavailable("The hub is busy receiving uploads; try again in a moment")
    }
}

/// A marker carried inside an `io::Error` when a request body goes over its byte limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    /// The limit that was exceeded.
    pub limit: u64,
}

/// Why a streamed upload into the blob store failed.
#[derive(Debug)]
pub enum UploadError {
    /// The decoded bytes went over the cap given to the put.
    OverCap(u64),
    /// The whole request body went over its limit.
    BodyTooLarge(u64),
    /// Anything else, already an answer.
    Api(ApiError),
}

impl UploadError {
    /// The answer, naming `what` was uploaded.
    pub fn into_api(self, what: &str) -> ApiError {
        match self {
            Self::OverCap(limit) => too_large(what, limit),
            Self::BodyTooLarge(limit) => too_large("Request body", limit),
            Self::Api(e) => e,
        }
    }
}

/// Classify a failed put. `what` names the upload in messages ("tarball_b64", "Artifact").
pub fn classify_put_error(error: BlobError, what: &str) -> UploadError {
    match error {
        BlobError::TooLarge { limit } => UploadError::OverCap(limit),
        BlobError::ShaMismatch => UploadError::Api(ApiError::bad_request(format!(
            "SHA-256 of the received {what} does not match the declared one"
        ))),
        BlobError::Source(source) => {
            if shared::serve::body::is_body_idle(&source) {
                return UploadError::Api(body_idle());
            }
            if blob::b64::is_decode_error(&source) {
                return UploadError::Api(ApiError::bad_request(format!(
                    "Invalid base64 in {what}: {source}"
                )));
            }
            let inner = source.get_ref();
            if let Some(limit) = inner
                .and_then(|i| i.downcast_ref::<BodyTooLarge>())
                .map(|b| b.limit)
            {
                return UploadError::BodyTooLarge(limit);
            }
            if let Some(m) = inner.and_then(|i| i.downcast_ref::<multer::Error>()) {
                return multipart_error(m);
            }
            UploadError::Api(ApiError::bad_request(format!(
                "The request body could not be read: {source}"
            )))
        }
        other => UploadError::Api(ApiError::internal(&other)),
    }
}

/// Classify a multipart parse failure.
pub fn multipart_error(error: &multer::Error) -> UploadError {
    match error {
        multer::Error::StreamSizeExceeded { limit } => UploadError::BodyTooLarge(*limit),
        multer::Error::FieldSizeExceeded { limit, .. } => UploadError::OverCap(*limit),
        multer::Error::StreamReadFailed(source)
            if shared::serve::body::is_body_idle(source.as_ref()) =>
        {
            UploadError::Api(body_idle())
        }
        multer::Error::StreamReadFailed(source) if overhead(source.as_ref()).is_some() => {
            let limit = overhead(source.as_ref()).map_or(0, |o| o.limit);
            UploadError::Api(too_large("The multipart preamble and part headers", limit))
        }
        other => UploadError::Api(ApiError::bad_request(format!(
            "Malformed multipart body: {other}"
        ))),
    }
}

/// The framing guard's error, if that is what failed the body stream.
fn overhead<'a>(
    source: &'a (dyn std::error::Error + Send + Sync + 'static),
) -> Option<&'a crate::builds::framing::OverheadTooLarge> {
    source
        .downcast_ref::<std::io::Error>()
        .and_then(|e| e.get_ref())
        .and_then(|e| e.downcast_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_limit_message_shows_usage_reset_and_login_hint() {
        let e = publish_limit(Tier::Free, 15, 0, 15, "2026-04");
        assert_eq!(e.code, ErrorCode::PublishLimitReached);
        assert_eq!(e.status().as_u16(), 429);
        assert!(
            e.message
                .starts_with("You've used 15/15 free publishes this month."),
            "{}",
            e.message
        );
        assert!(e.message.contains("Resets on the 1st"));
        assert!(e.message.contains("perry login"));
        assert!(e.message.contains("$19/mo, 50 publishes"));
        let usage = e
            .usage
            .as_ref()
            .map(|u| (u.publishes, u.limit, u.period.as_str()));
        assert_eq!(usage, Some((15, 15, "2026-04")));
    }

    #[test]
    fn publish_limit_counts_builds_in_progress() {
        let e = publish_limit(Tier::Free, 13, 2, 15, "2026-04");
        assert!(e.message.contains("15/15"), "{}", e.message);
        assert!(e.message.contains("2 builds in progress"));
        assert_eq!(e.usage.map(|u| u.publishes), Some(13));
    }

    #[test]
    fn hourly_limit_uses_the_seed_message() {
        let e = hourly_limit(5);
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.message, "Hourly build limit reached (5 per hour)");
    }

    #[test]
    fn account_required_carries_the_login_url() {
        let e = account_required();
        assert_eq!(e.status().as_u16(), 403);
        assert_eq!(e.login_url.as_deref(), Some(LOGIN_URL));
    }

    #[test]
    fn put_errors_map_to_client_errors() {
        let too_big =
            classify_put_error(BlobError::TooLarge { limit: 10 }, "tarball").into_api("Tarball");
        assert_eq!(too_big.code, ErrorCode::UploadTooLarge);
        let sha = classify_put_error(BlobError::ShaMismatch, "artifact").into_api("Artifact");
        assert_eq!(sha.code, ErrorCode::BadRequest);
        let body = std::io::Error::other(BodyTooLarge { limit: 7 });
        let e = classify_put_error(BlobError::Source(body), "x").into_api("x");
        assert_eq!(e.code, ErrorCode::UploadTooLarge);
        assert!(e.message.contains("Request body"));
        let gone = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            classify_put_error(BlobError::Source(gone), "x")
                .into_api("x")
                .code,
            ErrorCode::BadRequest
        );
        let backend = classify_put_error(BlobError::Backend("down".into()), "x").into_api("x");
        assert_eq!(backend.code, ErrorCode::InternalError);
    }
}
