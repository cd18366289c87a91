//! Property test of the multipart path of `POST /api/v1/build` through the real handler (issue
//! 12 item 7): forms built like the CLI's and then damaged, or arbitrary bytes, with arbitrary
//! boundaries, content types and credentials, never get a 5xx. 256 cases.

use perry_hub_tests::{api::manifest, HubOptions, TestHub};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use serde_json::Value;

/// Cases of the property (each one HTTP request against MariaDB, RabbitMQ and S3).
const CASES: u32 = 256;

#[derive(Debug, Clone)]
struct Case {
    content_type: String,
    body: Vec<u8>,
    authorization: Option<String>,
}

#[derive(Debug, Clone)]
struct Part {
    name: String,
    filename: Option<String>,
    value: Vec<u8>,
}

fn part_value(key: String) -> impl Strategy<Value = (String, Vec<u8>)> {
    let manifest = manifest("linux", "com.example.props")
        .to_string()
        .into_bytes();
    let tarball = perry_hub_tests::api::b64(b"a small tarball").into_bytes();
    prop_oneof![
        Just(("manifest".to_owned(), manifest)),
        Just(("credentials".to_owned(), b"{}".to_vec())),
        Just(("tarball_b64".to_owned(), tarball)),
        Just(("license_key".to_owned(), key.into_bytes())),
        (
            prop_oneof![
                Just("manifest".to_owned()),
                Just("credentials".to_owned()),
                Just("tarball_b64".to_owned()),
                Just("tarball".to_owned()),
                Just("license_key".to_owned()),
                "[a-z_\"\\\\ ]{0,12}",
            ],
            proptest::collection::vec(any::<u8>(), 0..256),
        ),
    ]
}

/// The CLI's four parts.
fn cli_parts(key: &str) -> Vec<Part> {
    let part = |name: &str, value: Vec<u8>| Part {
        name: name.to_owned(),
        filename: None,
        value,
    };
    vec![
        part(
            "manifest",
            manifest("linux", "com.example.props")
                .to_string()
                .into_bytes(),
        ),
        part("credentials", b"{}".to_vec()),
        part(
            "tarball_b64",
            perry_hub_tests::api::b64(b"a small tarball").into_bytes(),
        ),
        part("license_key", key.as_bytes().to_vec()),
    ]
}

fn form(boundary: String, key: String) -> impl Strategy<Value = Vec<u8>> {
    let part = (part_value(key.clone()), proptest::option::of("[ -~]{0,16}")).prop_map(
        |((name, value), filename)| Part {
            name,
            filename,
            value,
        },
    );
    (
        any::<bool>(),
        prop_oneof![
            2 => Just(Vec::new()),
            1 => proptest::collection::vec((any::<usize>(), part), 1..4),
        ],
        prop_oneof![9 => Just(true), 1 => Just(false)],
        prop_oneof![
            3 => Just(Vec::new()),
            1 => proptest::collection::vec((any::<usize>(), any::<u8>()), 1..3),
        ],
        prop_oneof![3 => Just(None), 1 => any::<usize>().prop_map(Some)],
    )
        .prop_map(move |(from_cli, extra, closed, flips, cut)| {
            let mut parts = if from_cli {
                cli_parts(&key)
            } else {
                Vec::new()
            };
            for (at, p) in extra {
                parts.insert(at % (parts.len() + 1), p);
            }
            let mut body = Vec::new();
            for p in &parts {
                body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                let mut disposition =
                    format!("Content-Disposition: form-data; name=\"{}\"", p.name);
                if let Some(f) = &p.filename {
                    disposition.push_str(&format!("; filename=\"{f}\""));
                }
                body.extend_from_slice(disposition.as_bytes());
                body.extend_from_slice(b"\r\n\r\n");
                body.extend_from_slice(&p.value);
                body.extend_from_slice(b"\r\n");
            }
            if closed {
                body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            }
            if !body.is_empty() {
                let len = body.len();
                for (at, byte) in flips {
                    body[at % len] = byte;
                }
                if let Some(cut) = cut {
                    body.truncate(cut % (len + 1));
                }
            }
            body
        })
}

fn case(key: String) -> impl Strategy<Value = Case> {
    let boundary = prop_oneof![
        8 => Just("perry-props-boundary".to_owned()),
        1 => "[ -~]{0,72}",
    ];
    let authorization = prop_oneof![3 => Just(None), 1 => prop_oneof![
        Just("Bearer ".to_owned()),
        "Bearer [ -~]{0,40}",
        "[ -~]{0,40}",
    ].prop_map(Some)];
    let declared = prop_oneof![5 => Just(true), 1 => Just(false)];
    (boundary, declared, authorization, any::<u8>())
        .prop_flat_map(move |(boundary, declared, authorization, kind)| {
            let content_type = if declared {
                format!("multipart/form-data; boundary={boundary}")
            } else {
                format!("multipart/form-data; boundary=\"{boundary}x\"")
            };
            let body = if kind < 32 {
                proptest::collection::vec(any::<u8>(), 0..512).boxed()
            } else {
                form("perry-props-boundary".to_owned(), key.clone()).boxed()
            };
            let content_type = if kind % 17 == 0 {
                Just("multipart/form-data".to_owned()).boxed()
            } else if kind % 19 == 0 {
                "[ -~]{0,40}".boxed()
            } else {
                Just(content_type).boxed()
            };
            (content_type, body, Just(authorization))
        })
        .prop_map(|(content_type, body, authorization)| Case {
            content_type,
            body,
            authorization,
        })
}

async fn send(hub: &TestHub, case: &Case) -> (u16, Value) {
    let mut req = hub
        .http
        .post(format!("{}/api/v1/build", hub.base_url))
        .header("content-type", &case.content_type)
        .body(case.body.clone());
    if let Some(auth) = &case.authorization {
        req = req.header("authorization", auth);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[test]
fn arbitrary_build_forms_never_get_a_server_error() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Self-hosted: no hourly limit, so well-formed cases go all the way to a stored tarball.
    let hub = rt.block_on(TestHub::start_with(HubOptions {
        hub: Some(Box::new(|h| h.self_hosted = true)),
        ..HubOptions::default()
    }));
    let key = rt.block_on(hub.registered_license());
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = runner.run(&case(key), |case| {
        let (status, body) = rt.block_on(send(&hub, &case));
        *statuses.lock().expect("lock").entry(status).or_default() += 1;
        prop_assert!(status < 500, "{} {}: {:?}", status, body, case);
        if status >= 400 {
            prop_assert!(body["error"]["code"].is_string(), "no envelope: {}", body);
        }
        Ok(())
    });
    let statuses = statuses.into_inner().expect("lock");
    eprintln!("build form cases by status: {statuses:?}");
    rt.block_on(hub.stop());
    if let Err(e) = result {
        panic!("{e}");
    }
    // Both accepted and refused forms were tried.
    assert!(statuses.contains_key(&200), "{statuses:?}");
    assert!(statuses.keys().any(|s| *s >= 400), "{statuses:?}");
}
