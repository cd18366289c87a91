//! §4.2, §4.4: every documented frame parses to the expected [`Incoming`].

use serde_json::{json, Value};

use super::{
    assert_invalid, parse_json, BUILD_COMPLETE, COMPLETE, ERROR, HELLO, LOG, PROGRESS, PUBLISHED,
    STAGE, UPDATE_RESULT,
};
use crate::{parse_incoming, Incoming, Outgoing, ReportedArtifact};

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
                duration_secs: Some(12.4),
                artifacts: vec![ReportedArtifact {
                    name: Some("app-j1.tar.gz".into()),
                    size: Some(3_500_113),
                    sha256: Some("9f2c...".into()),
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
