//! §2.2: error codes and the HTTP error envelope.

use serde_json::json;

use super::parse_json;
use crate::{ErrorBody, ErrorCode, UsageInfo, WsErrorCode, LOGIN_URL};

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
        (ErrorCode::Conflict, "CONFLICT", 409),
        (ErrorCode::Gone, "GONE", 410),
        (ErrorCode::UploadTooLarge, "UPLOAD_TOO_LARGE", 413),
        (ErrorCode::RangeNotSatisfiable, "RANGE_NOT_SATISFIABLE", 416),
        (ErrorCode::RequestTimeout, "REQUEST_TIMEOUT", 408),
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
