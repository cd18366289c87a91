//! Helpers of the ingest scenarios: hand-built multipart bodies (so tests control part order
//! and can send malformed ones), the CLI's calls, and snapshots of everything a request could
//! leave behind.

use base64::Engine as _;
use perry_hub_tests::{FakeWorker, HubOptions, TestHub};
use serde_json::{json, Value};

/// Boundary of the multipart bodies built here.
pub const BOUNDARY: &str = "----perry-test-boundary-7d1f";

/// A manifest as the CLI sends it.
pub fn manifest(target: &str, bundle_id: &str) -> Value {
    json!({
        "app_name": "Demo App",
        "bundle_id": bundle_id,
        "version": "1.0.0",
        "short_version": null,
        "entry": "src/main.ts",
        "icon": null,
        "targets": [target],
        "category": null,
        "minimum_os_version": null,
        "entitlements": null
    })
}

/// Standard base64.
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A multipart body of text parts (no filename, no content type), in the given order.
pub fn multipart(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The CLI's form: manifest, credentials, tarball_b64, license_key.
pub fn cli_form(
    manifest: &Value,
    credentials: &Value,
    tarball: &[u8],
    license_key: &str,
) -> Vec<u8> {
    multipart(&[
        ("manifest", manifest.to_string().as_bytes()),
        ("credentials", credentials.to_string().as_bytes()),
        ("tarball_b64", b64(tarball).as_bytes()),
        ("license_key", license_key.as_bytes()),
    ])
}

/// `POST /api/v1/build` with a multipart body and extra headers; (status, JSON body).
pub async fn post_build(hub: &TestHub, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Value) {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    post(hub, "/api/v1/build", &content_type, body, headers).await
}

/// A POST with any body; (status, JSON body or `null`).
pub async fn post(
    hub: &TestHub,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = hub
        .http
        .post(hub.url(path))
        .header("content-type", content_type)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A GET with extra headers; (status, JSON body).
pub async fn get(hub: &TestHub, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = hub.http.get(hub.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A JSON POST; (status, JSON body).
pub async fn post_json(
    hub: &TestHub,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    post(
        hub,
        path,
        "application/json",
        body.to_string().into_bytes(),
        headers,
    )
    .await
}

/// Assert an error envelope with `status` and `code`.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "status of {}", got.1);
    assert_eq!(got.1["error"]["code"], code, "code of {}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message of {}",
        got.1
    );
}

/// Register a free licence through the API.
pub async fn register(hub: &TestHub) -> String {
    let (status, body) = post_json(hub, "/api/v1/license/register", &json!({}), &[]).await;
    assert_eq!(status, 200, "{body}");
    body["license_key"]
        .as_str()
        .expect("license_key")
        .to_owned()
}

/// Create an account through the admin API; (account id, API token).
pub async fn create_account(hub: &TestHub, github_id: u64) -> (String, String) {
    let admin = format!("Bearer {}", hub.admin_secret());
    let body = json!({"github_id": github_id, "github_username": format!("user{github_id}"), "email": "dev@example.com"});
    let (status, body) = post_json(
        hub,
        "/api/v1/account/create",
        &body,
        &[("authorization", &admin)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["api_token"].as_str().expect("api_token").to_owned(),
    )
}

/// Submit a linux build with a fresh licence and assign it to a new worker: (job id, job
/// token, worker).
pub async fn assigned_job(hub: &TestHub) -> (String, String, FakeWorker) {
    let key = register(hub).await;
    let (status, body) = post_build(
        hub,
        cli_form(
            &manifest("linux", "com.example.demo"),
            &json!({}),
            b"tarball",
            &key,
        ),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let job_id = body["job_id"].as_str().expect("job_id").to_owned();
    let mut worker = hub.worker("linux-1", &["linux"], 1).await;
    let assign = worker.assignment().await;
    assert_eq!(assign["job_id"], job_id.as_str());
    (
        job_id,
        assign["auth_token"]
            .as_str()
            .expect("auth_token")
            .to_owned(),
        worker,
    )
}

/// A hub with adjusted ingest settings.
pub async fn hub_with(adjust: impl FnOnce(&mut ingest::Settings)) -> TestHub {
    let mut settings = perry_hub_tests::ingest_settings();
    adjust(&mut settings);
    TestHub::start_with(HubOptions {
        ingest: Some(settings),
        ..HubOptions::default()
    })
    .await
}

/// Everything a request could leave behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftovers {
    pub jobs: i64,
    pub outbox: i64,
    pub artifacts: i64,
    pub events: i64,
    pub rate_events: i64,
    pub download_tokens: i64,
    pub bound: i64,
    pub blobs: Vec<String>,
}

/// Snapshot of [`Leftovers`].
pub async fn leftovers(hub: &TestHub) -> Leftovers {
    let db = hub.db();
    Leftovers {
        jobs: db.count("jobs", "").await,
        outbox: db.count("outbox", "").await,
        artifacts: db.count("artifacts", "").await,
        events: db.count("job_events", "").await,
        rate_events: db.count("rate_events", "bucket LIKE 'build:%'").await,
        download_tokens: db.count("download_tokens", "").await,
        bound: db.count("licenses", "bound_project IS NOT NULL").await,
        blobs: hub.deps.blob.list("").await.expect("list blobs"),
    }
}
