//! Unit tests of the wire types, grouped by production module and checked against the examples
//! of `docs/PROTOCOL.md`. This module holds the helpers and the §4.2 worker frames they share.

use serde_json::Value;

use crate::{parse_incoming, FrameError};

mod bodies;
mod errors;
mod incoming;
mod licensing;
mod outgoing;
mod parse;
mod props;
mod relay;

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

// §4.2 examples, also relayed or echoed by the hub in §4.5.

const HELLO: &str = r#"{"type":"worker_hello","name":"linux-1","secret":"s3cret","perry_version":"0.5.1182","capabilities":["linux","android"],"max_concurrent":2}"#;
const STAGE: &str = r#"{"type":"stage","job_id":"j1","stage":"compiling","message":"Compiling"}"#;
const PROGRESS: &str =
    r#"{"type":"progress","job_id":"j1","stage":"compiling","percent":100,"message":null}"#;
const LOG: &str =
    r#"{"type":"log","job_id":"j1","stage":"compiling","line":"warning: x","stream":"stderr"}"#;
const PUBLISHED: &str =
    r#"{"type":"published","job_id":"j1","platform":"android","message":"Uploaded","url":null}"#;
const ERROR: &str = r#"{"type":"error","job_id":"j1","code":"INTERNAL_ERROR","message":"Compilation failed","stage":"compiling"}"#;
const COMPLETE: &str = r#"{"type":"complete","job_id":"j1","success":true,"duration_secs":12.4,"needs_finishing":null,"artifacts":[{"name":"app-j1.tar.gz","size":3500113,"sha256":"9f2c..."}]}"#;
const UPDATE_RESULT: &str =
    r#"{"type":"update_result","success":true,"old_version":"0.5.1180","new_version":"0.5.1182"}"#;
const BUILD_COMPLETE: &str =
    r#"{"type":"build_complete","job_id":"j1","has_distribution":false,"duration_secs":30.0}"#;
