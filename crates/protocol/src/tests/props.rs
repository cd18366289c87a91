//! Property tests of frame parsing (issue 12 item 7): whatever a socket delivers, the parser
//! answers a frame or a stable error code and never panics; every frame the hub accepts
//! survives a round trip. Case counts: 3 × 2048.

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::{frame_job_id, parse_incoming, Incoming, ReportedArtifact, INCOMING_TYPES};

const CODES: &[&str] = &[
    "NOT_JSON",
    "NOT_OBJECT",
    "MISSING_TYPE",
    "UNKNOWN_TYPE",
    "INVALID_FRAME",
];

/// Field names of the frames, so generated objects often have the right ones.
const FIELDS: &[&str] = &[
    "job_id",
    "stage",
    "message",
    "percent",
    "line",
    "stream",
    "platform",
    "url",
    "position",
    "estimated_wait_secs",
    "code",
    "success",
    "duration_secs",
    "artifacts",
    "needs_finishing",
    "error",
    "old_version",
    "new_version",
    "has_distribution",
    "secret",
    "capabilities",
    "name",
    "max_concurrent",
    "perry_version",
    "size",
    "sha256",
];

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("stdout".to_owned()),
            Just("stderr".to_owned()),
            ".{0,12}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..4).prop_map(
                |fields| {
                    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }
            ),
        ]
    })
}

/// An object with a known (or nearly known) `type` and arbitrary known-named fields.
fn frame_object() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        8 => proptest::sample::select(INCOMING_TYPES).prop_map(str::to_owned),
        1 => ".{0,80}",
    ];
    let fields = proptest::collection::vec((proptest::sample::select(FIELDS), json()), 0..10);
    (kind, fields).prop_map(|(kind, fields)| {
        let mut obj: Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        obj.insert("type".to_owned(), Value::String(kind));
        Value::Object(obj)
    })
}

fn text() -> impl Strategy<Value = String> {
    ".{0,16}"
}

/// Floats that print and parse back exactly.
fn exact_f64(max: u32) -> impl Strategy<Value = f64> {
    (0..=max * 4).prop_map(|q| f64::from(q) / 4.0)
}

fn known_frame() -> impl Strategy<Value = Incoming> {
    let opt = |s: BoxedStrategy<String>| proptest::option::of(s);
    prop_oneof![
        (text(), text(), text()).prop_map(|(job_id, stage, message)| Incoming::Stage {
            job_id,
            stage,
            message
        }),
        (text(), text(), exact_f64(100), opt(text().boxed())).prop_map(
            |(job_id, stage, percent, message)| Incoming::Progress {
                job_id,
                stage,
                percent,
                message
            }
        ),
        (
            text(),
            text(),
            ".{0,200}",
            prop_oneof![Just("stdout"), Just("stderr")]
        )
            .prop_map(|(job_id, stage, line, stream)| Incoming::Log {
                job_id,
                stage,
                line,
                stream: stream.to_owned()
            }),
        (text(), text(), text(), opt(text().boxed())).prop_map(
            |(job_id, platform, message, url)| Incoming::Published {
                job_id,
                platform,
                message,
                url
            }
        ),
        (
            text(),
            proptest::option::of(any::<u64>()),
            opt(text().boxed()),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(job_id, position, message, estimated_wait_secs)| {
                Incoming::QueueUpdate {
                    job_id,
                    position,
                    message,
                    estimated_wait_secs,
                }
            }),
        (opt(text().boxed()), text(), text(), opt(text().boxed())).prop_map(
            |(job_id, code, message, stage)| Incoming::Error {
                job_id,
                code,
                message,
                stage
            }
        ),
        (
            text(),
            any::<bool>(),
            proptest::option::of(exact_f64(100_000)),
            proptest::collection::vec(
                (
                    opt(text().boxed()),
                    proptest::option::of(any::<u64>()),
                    opt(text().boxed())
                )
                    .prop_map(|(name, size, sha256)| ReportedArtifact {
                        name,
                        size,
                        sha256
                    }),
                0..3
            ),
            opt(text().boxed()),
            opt(text().boxed()),
        )
            .prop_map(
                |(job_id, success, duration_secs, artifacts, needs_finishing, error)| {
                    Incoming::Complete {
                        job_id,
                        success,
                        duration_secs,
                        artifacts,
                        needs_finishing,
                        error,
                    }
                }
            ),
        (any::<bool>(), text(), text(), opt(text().boxed())).prop_map(
            |(success, old_version, new_version, error)| Incoming::UpdateResult {
                success,
                old_version,
                new_version,
                error
            }
        ),
        (text(), any::<bool>(), exact_f64(100_000)).prop_map(
            |(job_id, has_distribution, duration_secs)| Incoming::BuildComplete {
                job_id,
                has_distribution,
                duration_secs
            }
        ),
        (
            opt(text().boxed()),
            proptest::option::of(proptest::collection::vec(text(), 0..3)),
            opt(text().boxed()),
            proptest::option::of(any::<i64>()),
            opt(text().boxed()),
        )
            .prop_map(
                |(secret, capabilities, name, max_concurrent, perry_version)| {
                    Incoming::WorkerHello {
                        secret: secret.map(Into::into),
                        capabilities,
                        name,
                        max_concurrent,
                        perry_version,
                    }
                }
            ),
        text().prop_map(|job_id| Incoming::Subscribe { job_id }),
        text().prop_map(|job_id| Incoming::Cancel { job_id }),
    ]
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let _ = frame_job_id(text);
    match parse_incoming(text) {
        Ok(frame) => {
            let again = serde_json::to_string(&frame).expect("serialise");
            let reparsed = parse_incoming(&again);
            prop_assert!(reparsed.is_ok(), "{} → {} → {:?}", text, again, reparsed);
        }
        Err(e) => prop_assert!(CODES.contains(&e.code()), "{}", e.code()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any text: a frame or a stable code, never a panic.
    #[test]
    fn arbitrary_text_is_a_frame_or_a_stable_error(text in any::<String>()) {
        check(&text)?;
    }

    /// Objects with known types and fields of every JSON shape: the same, and an accepted
    /// frame serialises to text that is accepted again.
    #[test]
    fn frame_shaped_json_is_a_frame_or_a_stable_error(value in frame_object()) {
        check(&value.to_string())?;
    }

    /// Every well-formed frame round-trips exactly.
    #[test]
    fn known_frames_round_trip(frame in known_frame()) {
        let text = serde_json::to_string(&frame).expect("serialise");
        let parsed = parse_incoming(&text);
        prop_assert!(parsed.is_ok(), "{}: {:?}", text, parsed);
        prop_assert_eq!(parsed.ok(), Some(frame));
    }
}
