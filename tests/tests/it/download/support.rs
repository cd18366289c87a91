//! Helpers shared by the scenarios of this folder.

use std::{future::Future, sync::Arc, time::Duration};

use perry_hub_tests::{put_bytes, HubOptions, TestHub, WAIT};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::{auth, clock::now_ms};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(super) const UA: &str = "perry-cli-test/1.0";
pub(super) const OCTET: &str = "application/octet-stream";

/// A hub on the S3 store without the finisher, whose retention sweep would race tests that
/// insert expired rows on purpose.
pub(super) async fn hub() -> TestHub {
    TestHub::start_with(HubOptions {
        no_finisher: true,
        ..HubOptions::default()
    })
    .await
}

/// The same on the filesystem store.
pub(super) async fn fs_hub() -> TestHub {
    TestHub::start_with(HubOptions {
        no_finisher: true,
        fs_blobs: true,
        ..HubOptions::default()
    })
    .await
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub(super) fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

pub(super) fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(super) fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub(super) fn unb64(text: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("body is strict base64")
}

/// An artifact row and its bytes in the store.
pub(super) struct Stored {
    pub(super) id: String,
    pub(super) job_id: String,
    pub(super) data: Vec<u8>,
}

/// Insert an artifact row pointing at `blob_key` (the blob itself is up to the caller).
pub(super) async fn insert_artifact_row(
    hub: &TestHub,
    name: &str,
    data: &[u8],
    blob_key: Option<&str>,
) -> (String, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let job_id = uuid::Uuid::new_v4().to_string();
    let key = blob_key.map_or_else(|| job::artifacts::artifact_key(&id), str::to_owned);
    let now = now_ms();
    sqlx::query(
        "INSERT INTO artifacts (id, job_id, attempt, name, target, size, sha256, blob_key, hidden, created_ms, expires_ms) \
         VALUES (?, ?, 1, ?, 'linux', ?, ?, ?, FALSE, ?, ?)",
    )
    .bind(&id)
    .bind(&job_id)
    .bind(name)
    .bind(i64::try_from(data.len()).expect("size"))
    .bind(sha_hex(data))
    .bind(&key)
    .bind(now)
    .bind(now + 3_600_000)
    .execute(hub.pool())
    .await
    .expect("insert artifact");
    (id, job_id)
}

/// Store `data` as an artifact named `name`.
pub(super) async fn store_artifact(hub: &TestHub, name: &str, data: Vec<u8>) -> Stored {
    let (id, job_id) = insert_artifact_row(hub, name, &data, None).await;
    put_bytes(
        &hub.deps.blob,
        &job::artifacts::artifact_key(&id),
        data.clone(),
    )
    .await;
    Stored { id, job_id, data }
}

/// A fresh download token for an artifact, as ingest and the dispatcher mint them.
pub(super) async fn mint(hub: &TestHub, artifact_id: &str) -> String {
    let mut conn = hub.pool().acquire().await.expect("conn");
    job::artifacts::mint_download_token(&mut conn, artifact_id, hub.deps.hub.artifact_ttl_secs)
        .await
        .expect("mint")
}

/// A token that expired a second ago.
pub(super) async fn mint_expired(hub: &TestHub, artifact_id: &str) -> String {
    let (token, hash) = auth::new_token();
    let now = now_ms();
    sqlx::query("INSERT INTO download_tokens (token_hash, artifact_id, created_ms, expires_ms) VALUES (?, ?, ?, ?)")
        .bind(&hash[..])
        .bind(artifact_id)
        .bind(now - 601_000)
        .bind(now - 1_000)
        .execute(hub.pool())
        .await
        .expect("insert token");
    token
}

pub(super) async fn token_used(hub: &TestHub, token: &str) -> bool {
    let used: Option<i64> =
        sqlx::query_scalar("SELECT used_ms FROM download_tokens WHERE token_hash = ?")
            .bind(&auth::hash_token(token)[..])
            .fetch_one(hub.pool())
            .await
            .expect("token row");
    used.is_some()
}

pub(super) fn dl(base: &str, token: &str) -> String {
    format!("{base}/api/v1/dl/{token}")
}

/// GET with our user agent and extra headers.
pub(super) async fn get(
    hub: &TestHub,
    url: &str,
    headers: &[(header::HeaderName, &str)],
) -> reqwest::Response {
    let mut req = hub.http.get(url).header(header::USER_AGENT, UA);
    for (name, value) in headers {
        req = req.header(name.clone(), *value);
    }
    req.send().await.expect("request")
}

/// Status and JSON error envelope of a refused request.
pub(super) async fn refusal(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "error responses use the JSON envelope"
    );
    (status, resp.json().await.expect("envelope"))
}

pub(super) fn header_str<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("header {name} missing"))
}

/// Poll a condition written by a background task, until [`WAIT`].
pub(super) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A job assigned to a pretend worker (attempt 1); returns (job id, job token).
pub(super) async fn assigned_job(hub: &TestHub, tarball: &[u8]) -> (String, String) {
    let (_, license) = hub.insert_license("pro").await;
    let job_id = hub
        .insert_job(license, "linux", 10, tarball, json!({}))
        .await;
    let token = assign(hub, &job_id, 1).await;
    (job_id, token)
}

/// Move a job to `assigned` at `attempt` with a fresh job token (as the dispatcher does).
pub(super) async fn assign(hub: &TestHub, job_id: &str, attempt: i32) -> String {
    let (token, hash) = auth::new_token();
    sqlx::query("UPDATE jobs SET state = 'assigned', attempt = ?, token_hash = ?, assigned_ms = ? WHERE id = ?")
        .bind(attempt)
        .bind(&hash[..])
        .bind(now_ms())
        .bind(job_id)
        .execute(hub.pool())
        .await
        .expect("assign");
    token
}

pub(super) fn tarball_url(hub: &TestHub, job_id: &str) -> String {
    hub.url(&format!("/api/v1/tarball/{job_id}"))
}

pub(super) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A raw HTTP/1.1 GET of `target` exactly as written (no client-side path normalisation).
pub(super) async fn raw_get(hub: &TestHub, target: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = hub.base_url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = serde_json::from_slice(&raw[split + 4..]).unwrap_or(Value::Null);
    (status, body)
}

/// Serve the download router alone on its own port with presigned redirects switched on.
pub(super) async fn presigning_server(hub: &TestHub) -> (String, CancellationToken) {
    let mut deps = hub.deps.clone();
    let mut blob_config = (*deps.blob_config).clone();
    blob_config.s3_presign_downloads = true;
    deps.blob_config = Arc::new(blob_config);
    let app = shared::http::finish_router(download::router(download::AppState::new(&deps)));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let limits = hub.deps.hub.http.clone();
    tokio::spawn(
        async move { shared::http::serve(listener, app, &limits, c.cancelled_owned()).await },
    );
    (base, cancel)
}

pub(super) fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}
