//! Property test of WebSocket input through the real dispatcher (issue 12 item 7): before a
//! connection identifies itself, any frames the parser rejects (arbitrary text, frame-shaped
//! JSON with wrong fields, binary) are ignored, and the same connection then subscribes as
//! usual. 64 connections of 1–6 frames each.

use perry_hub_tests::{TestHub, WsClient};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const CASES: u32 = 64;

const FIELDS: &[&str] = &[
    "job_id",
    "stage",
    "line",
    "stream",
    "percent",
    "success",
    "secret",
    "name",
    "artifacts",
];

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
        proptest::collection::vec(any::<i64>(), 0..3).prop_map(|v| json!(v)),
    ]
}

/// One frame the parser rejects.
fn rejected_frame() -> impl Strategy<Value = WsMessage> {
    let object = (
        proptest::sample::select(protocol::INCOMING_TYPES),
        proptest::collection::vec((proptest::sample::select(FIELDS), value()), 0..5),
    )
        .prop_map(|(kind, fields)| {
            let mut obj: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            obj.insert("type".to_owned(), Value::from(kind));
            Value::Object(obj).to_string()
        });
    let text = prop_oneof![any::<String>(), object]
        .prop_filter("a frame the parser rejects", |t| {
            protocol::parse_incoming(t).is_err()
        })
        .prop_map(|t| WsMessage::Text(t.into()));
    prop_oneof![
        4 => text,
        1 => proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| WsMessage::Binary(b.into())),
    ]
}

#[test]
fn rejected_frames_before_identification_are_ignored() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let hub = rt.block_on(TestHub::start());
    let job = rt.block_on(async {
        let (_, license) = hub.insert_license("pro").await;
        hub.insert_job(license, "linux", 10, b"t", json!({})).await
    });
    let url = hub.ws_url();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let frames = proptest::collection::vec(rejected_frame(), 1..7);
    let result = runner.run(&frames, |frames| {
        let first = rt.block_on(async {
            let mut ws = WsClient::connect(&url).await;
            for frame in frames.clone() {
                ws.send_raw(frame).await;
            }
            ws.send(json!({"type": "subscribe", "job_id": job})).await;
            let first = ws.recv().await;
            ws.close().await;
            first
        });
        let first = first.unwrap_or(Value::Null);
        prop_assert!(
            first["type"].is_string() && first["type"] != "error",
            "{} after {:?}",
            first,
            frames
        );
        Ok(())
    });
    rt.block_on(hub.stop());
    if let Err(e) = result {
        panic!("{e}");
    }
}
