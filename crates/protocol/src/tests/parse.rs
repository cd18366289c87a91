//! §4.2, §4.4: rejected frames, each with a stable code and a reason naming what is wrong.

use serde_json::{json, Value};

use super::{
    assert_invalid, parse_json, without, BUILD_COMPLETE, COMPLETE, ERROR, HELLO, LOG, PROGRESS,
    PUBLISHED, STAGE, UPDATE_RESULT,
};
use crate::parse::{incoming_fields, MAX_TYPE_ECHO};
use crate::{frame_job_id, parse_incoming, FrameError, Incoming, ReportedArtifact, INCOMING_TYPES};

#[test]
fn missing_required_fields_are_rejected_by_name() {
    let cases: &[(&str, &str, &[&str])] = &[
        (COMPLETE, "complete", &["job_id", "success"]),
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
fn complete_is_read_leniently_where_real_workers_differ() {
    let mut v = parse_json(COMPLETE);
    v["artifacts"][0].as_object_mut().unwrap().remove("sha256");
    v["duration_secs"] = Value::Null;
    let Ok(Incoming::Complete {
        duration_secs,
        artifacts,
        success,
        ..
    }) = parse_incoming(&v.to_string())
    else {
        panic!("{v}");
    };
    assert!(success);
    assert_eq!(duration_secs, None);
    assert_eq!(artifacts[0].name.as_deref(), Some("app-j1.tar.gz"));
    assert_eq!(artifacts[0].sha256, None);
    // Entries of any shape are kept (empty when unreadable); the hub never reads them.
    v["artifacts"] = json!([{"name": 5, "size": "big"}, "app.zip", null]);
    let Ok(Incoming::Complete { artifacts, .. }) = parse_incoming(&v.to_string()) else {
        panic!("{v}");
    };
    assert_eq!(artifacts, vec![ReportedArtifact::default(); 3]);
    for field in ["duration_secs", "artifacts"] {
        assert!(parse_incoming(&without(COMPLETE, field)).is_ok(), "{field}");
    }
}

#[test]
fn an_unreadable_complete_still_names_its_job() {
    let mut v = parse_json(COMPLETE);
    v["success"] = json!("yes");
    assert_invalid(&v.to_string(), "complete", "`success`");
    assert_eq!(frame_job_id(&v.to_string()).as_deref(), Some("j1"));
    assert_eq!(frame_job_id(&without(COMPLETE, "job_id")), None);
    assert_eq!(frame_job_id(r#"{"type":"complete","job_id":7}"#), None);
    assert_eq!(frame_job_id("not json"), None);
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
    let garbage = String::from_utf8_lossy(&[0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x7b]).into_owned();
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
