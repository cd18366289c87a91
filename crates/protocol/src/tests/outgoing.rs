//! §4.3, §4.5: frames sent by the hub match the documented examples.

use serde_json::{json, Value};

use super::{parse_json, PUBLISHED};
use crate::{Outgoing, WsErrorCode};

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
fn outgoing_job_ids() {
    assert_eq!(job_assign().job_id(), Some("j1"));
    assert_eq!(Outgoing::UpdatePerry.job_id(), None);
    assert_eq!(
        Outgoing::ws_error(Some("j2".into()), WsErrorCode::JobNotFound, "Job not found").job_id(),
        Some("j2")
    );
}
