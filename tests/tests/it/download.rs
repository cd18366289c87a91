//! Download service scenarios: single-use artifact links (`/api/v1/dl`) and worker tarball
//! fetches (`/api/v1/tarball`) against real MariaDB and the S3 store (plus the filesystem
//! store where it differs). Artifacts and tokens are inserted directly, as ingest and the
//! dispatcher would, so these tests depend on nothing but the download service.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::{StreamExt, TryStreamExt};
use perry_hub_tests::{put_bytes, tempdir::TempDir, HubOptions, TestHub, WAIT};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::{auth, clock::now_ms, jobs};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const UA: &str = "perry-cli-test/1.0";
const OCTET: &str = "application/octet-stream";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A hub on the S3 store without the finisher, whose retention sweep would race tests that
/// insert expired rows on purpose.
async fn hub() -> TestHub {
    TestHub::start_with(HubOptions {
        no_finisher: true,
        ..HubOptions::default()
    })
    .await
}

/// The same on the filesystem store.
async fn fs_hub() -> TestHub {
    TestHub::start_with(HubOptions {
        no_finisher: true,
        fs_blobs: true,
        ..HubOptions::default()
    })
    .await
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
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

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(text: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("body is strict base64")
}

/// An artifact row and its bytes in the store.
struct Stored {
    id: String,
    job_id: String,
    data: Vec<u8>,
}

/// Insert an artifact row pointing at `blob_key` (the blob itself is up to the caller).
async fn insert_artifact_row(
    hub: &TestHub,
    name: &str,
    data: &[u8],
    blob_key: Option<&str>,
) -> (String, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let job_id = uuid::Uuid::new_v4().to_string();
    let key = blob_key.map_or_else(|| jobs::artifact_key(&id), str::to_owned);
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
async fn store_artifact(hub: &TestHub, name: &str, data: Vec<u8>) -> Stored {
    let (id, job_id) = insert_artifact_row(hub, name, &data, None).await;
    put_bytes(&hub.deps.blob, &jobs::artifact_key(&id), data.clone()).await;
    Stored { id, job_id, data }
}

/// A fresh download token for an artifact, as ingest and the dispatcher mint them.
async fn mint(hub: &TestHub, artifact_id: &str) -> String {
    let mut conn = hub.pool().acquire().await.expect("conn");
    jobs::mint_download_token(&mut conn, artifact_id, hub.deps.hub.artifact_ttl_secs)
        .await
        .expect("mint")
}

/// A token that expired a second ago.
async fn mint_expired(hub: &TestHub, artifact_id: &str) -> String {
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

async fn token_used(hub: &TestHub, token: &str) -> bool {
    let used: Option<i64> =
        sqlx::query_scalar("SELECT used_ms FROM download_tokens WHERE token_hash = ?")
            .bind(&auth::hash_token(token)[..])
            .fetch_one(hub.pool())
            .await
            .expect("token row");
    used.is_some()
}

fn dl(base: &str, token: &str) -> String {
    format!("{base}/api/v1/dl/{token}")
}

/// GET with our user agent and extra headers.
async fn get(
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
async fn refusal(resp: reqwest::Response) -> (StatusCode, Value) {
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

fn header_str<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("header {name} missing"))
}

/// Poll a condition written by a background task, until [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
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
async fn assigned_job(hub: &TestHub, tarball: &[u8]) -> (String, String) {
    let (_, license) = hub.insert_license("pro").await;
    let job_id = hub
        .insert_job(license, "linux", 10, tarball, json!({}))
        .await;
    let token = assign(hub, &job_id, 1).await;
    (job_id, token)
}

/// Move a job to `assigned` at `attempt` with a fresh job token (as the dispatcher does).
async fn assign(hub: &TestHub, job_id: &str, attempt: i32) -> String {
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

fn tarball_url(hub: &TestHub, job_id: &str) -> String {
    hub.url(&format!("/api/v1/tarball/{job_id}"))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A raw HTTP/1.1 GET of `target` exactly as written (no client-side path normalisation).
async fn raw_get(hub: &TestHub, target: &str, extra: &[(&str, &str)]) -> (u16, Value) {
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
async fn presigning_server(hub: &TestHub) -> (String, CancellationToken) {
    let mut deps = hub.deps.clone();
    let mut blob_config = (*deps.blob_config).clone();
    blob_config.s3_presign_downloads = true;
    deps.blob_config = Arc::new(blob_config);
    let app = shared::http::finish_router(download::router(download::AppState::new(&deps)));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(shared::http::serve(listener, app, async move {
        c.cancelled().await
    }));
    (base, cancel)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

// ---------------------------------------------------------------------------------------------
// Artifact links: bodies and headers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn artifact_link_serves_one_line_of_base64_text_with_the_legacy_headers() {
    let hub = hub().await;
    let art = store_artifact(&hub, "my app (1).tar.gz", bytes(100_003, 1)).await;
    let token = mint(&hub, &art.id).await;

    let resp = get(&hub, &dl(&hub.base_url, &token), &[(header::ACCEPT, "*/*")]).await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, "content-type"), "text/plain");
    assert_eq!(
        header_str(&resp, "content-disposition"),
        "attachment; filename=\"my_app__1_.tar.gz\""
    );
    assert_eq!(header_str(&resp, "x-artifact-sha256"), sha_hex(&art.data));
    let declared: usize = header_str(&resp, "content-length").parse().expect("length");
    let body = resp.bytes().await.expect("body");
    assert_eq!(declared, body.len());
    assert_eq!(
        &body[..],
        b64(&art.data).as_bytes(),
        "one clean line, padded, no newline"
    );
    assert!(
        body.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)),
        "the CLI's decode test passes"
    );
    assert_eq!(unb64(&body), art.data);
    hub.stop().await;
}

#[tokio::test]
async fn raw_download_sends_the_bytes_with_length_disposition_and_sha256() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.exe", bytes(70_000, 2)).await;
    let token = mint(&hub, &art.id).await;

    let resp = get(&hub, &dl(&hub.base_url, &token), &[(header::ACCEPT, OCTET)]).await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, "content-type"), OCTET);
    assert_eq!(header_str(&resp, "content-length"), "70000");
    assert_eq!(
        header_str(&resp, "content-disposition"),
        "attachment; filename=\"app.exe\""
    );
    assert_eq!(header_str(&resp, "x-artifact-sha256"), sha_hex(&art.data));
    assert_eq!(header_str(&resp, "accept-ranges"), "bytes");
    let body = resp.bytes().await.expect("body");
    assert_eq!(sha_hex(&body), sha_hex(&art.data));
    hub.stop().await;
}

#[tokio::test]
async fn a_range_on_a_raw_download_is_served_as_206_and_consumes_the_token() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(10_000, 3)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);

    let resp = get(
        &hub,
        &url,
        &[(header::ACCEPT, OCTET), (header::RANGE, "bytes=100-199")],
    )
    .await;

    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_str(&resp, "content-range"), "bytes 100-199/10000");
    assert_eq!(header_str(&resp, "content-length"), "100");
    assert_eq!(&resp.bytes().await.expect("body")[..], &art.data[100..200]);
    let (status, body) = refusal(get(&hub, &url, &[(header::ACCEPT, OCTET)]).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "ARTIFACT_NOT_FOUND");
    hub.stop().await;
}

#[tokio::test]
async fn an_unsatisfiable_range_is_416_with_the_envelope_and_keeps_the_token() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(1_000, 4)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);

    let resp = get(
        &hub,
        &url,
        &[(header::ACCEPT, OCTET), (header::RANGE, "bytes=5000-")],
    )
    .await;

    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header_str(&resp, "content-range"), "bytes */1000");
    let (_, body) = refusal(resp).await;
    assert_eq!(body["error"]["code"], "RANGE_NOT_SATISFIABLE");
    assert!(!token_used(&hub, &token).await);
    let resp = get(&hub, &url, &[(header::ACCEPT, OCTET)]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.expect("body").to_vec(), art.data);
    hub.stop().await;
}

#[tokio::test]
async fn a_range_header_on_a_base64_download_is_ignored() {
    let hub = hub().await;
    let art = store_artifact(&hub, "a.zip", bytes(3_000, 5)).await;
    let token = mint(&hub, &art.id).await;

    let resp = get(
        &hub,
        &dl(&hub.base_url, &token),
        &[(header::RANGE, "bytes=0-9")],
    )
    .await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("content-range").is_none());
    assert_eq!(unb64(&resp.bytes().await.expect("body")), art.data);
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Artifact links: single use, expiry, unknown tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ten_concurrent_requests_with_one_token_give_exactly_one_download() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(300_000, 6)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);

    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (http, url) = (hub.http.clone(), url.clone());
            tokio::spawn(async move {
                let resp = http.get(&url).send().await.expect("request");
                let status = resp.status();
                (status, resp.bytes().await.expect("body"))
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }

    let ok: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert_eq!(
        ok.len(),
        1,
        "statuses: {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert_eq!(unb64(&ok[0].1), art.data);
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::NOT_FOUND);
        let v: Value = serde_json::from_slice(body).expect("envelope");
        assert_eq!(v["error"]["code"], "ARTIFACT_NOT_FOUND");
    }
    assert!(token_used(&hub, &token).await);
    assert_eq!(hub.db().count("downloads", "kind = 'artifact'").await, 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_used_token_is_404_artifact_not_found() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(1_000, 7)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);
    assert_eq!(
        get(&hub, &url, &[])
            .await
            .bytes()
            .await
            .expect("first download")
            .len(),
        1_336
    );

    let (status, body) = refusal(get(&hub, &url, &[]).await).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "ARTIFACT_NOT_FOUND");
    hub.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_410_gone_with_the_envelope() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(1_000, 8)).await;
    let token = mint_expired(&hub, &art.id).await;

    let (status, body) = refusal(get(&hub, &dl(&hub.base_url, &token), &[]).await).await;

    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["error"]["code"], "GONE");
    assert_eq!(body["error"]["message"], "Download link expired");
    assert!(!token_used(&hub, &token).await);
    assert_eq!(hub.db().count("downloads", "").await, 0);
    hub.stop().await;
}

#[tokio::test]
async fn unknown_malformed_and_used_tokens_get_the_same_404() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(500, 9)).await;
    let used = mint(&hub, &art.id).await;
    // Read the body: only a completed read consumes a token.
    let first = get(&hub, &dl(&hub.base_url, &used), &[]).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(unb64(&first.bytes().await.expect("body")).len(), 500);
    let valid = mint(&hub, &art.id).await;
    let long = "a".repeat(4_000);
    let candidates = [
        uuid::Uuid::new_v4().to_string(),
        used.clone(),
        valid.to_uppercase(),
        format!("{valid}0"),
        valid.replace('-', ""),
        "abc".to_owned(),
        "..%2F..%2Fetc%2Fpasswd".to_owned(),
        "%2e%2e".to_owned(),
        "%ff%fe".to_owned(),
        long,
    ];

    let mut bodies = Vec::new();
    for token in &candidates {
        let (status, body) = raw_get(&hub, &format!("/api/v1/dl/{token}"), &[]).await;
        assert_eq!(status, 404, "{token}");
        bodies.push(body);
    }

    assert_eq!(bodies[0]["error"]["code"], "ARTIFACT_NOT_FOUND");
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert!(
        !token_used(&hub, &valid).await,
        "near-misses never consume the real token"
    );
    assert_eq!(
        get(&hub, &dl(&hub.base_url, &valid), &[]).await.status(),
        StatusCode::OK
    );
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Artifact links: failures keep the token (D29)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_artifact_blob_is_410_and_leaves_the_token_usable() {
    let hub = hub().await;
    let data = bytes(2_000, 10);
    let (id, _) = insert_artifact_row(&hub, "app.tar.gz", &data, None).await;
    let token = mint(&hub, &id).await;
    let url = dl(&hub.base_url, &token);

    for accept in ["text/plain", OCTET] {
        let (status, body) = refusal(get(&hub, &url, &[(header::ACCEPT, accept)]).await).await;
        assert_eq!(status, StatusCode::GONE);
        assert_eq!(body["error"]["code"], "GONE");
    }
    assert!(!token_used(&hub, &token).await);
    assert_eq!(hub.db().count("downloads", "").await, 0);

    put_bytes(&hub.deps.blob, &jobs::artifact_key(&id), data.clone()).await;
    let resp = get(&hub, &url, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(unb64(&resp.bytes().await.expect("body")), data);
    hub.stop().await;
}

#[tokio::test]
async fn a_deleted_artifact_row_is_410_not_a_server_error() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(100, 11)).await;
    let token = mint(&hub, &art.id).await;
    sqlx::query("DELETE FROM artifacts WHERE id = ?")
        .bind(&art.id)
        .execute(hub.pool())
        .await
        .expect("delete");

    let (status, body) = refusal(get(&hub, &dl(&hub.base_url, &token), &[]).await).await;

    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["error"]["code"], "GONE");
    hub.stop().await;
}

#[tokio::test]
async fn a_store_read_failure_is_500_and_the_token_stays_valid() {
    let hub = hub().await;
    let data = bytes(4_000, 12);
    // A key the store refuses to open (a bug or a corrupted row): a read failure, not a 404.
    let (id, _) = insert_artifact_row(&hub, "app.tar.gz", &data, Some("../../etc/passwd")).await;
    put_bytes(&hub.deps.blob, &jobs::artifact_key(&id), data.clone()).await;
    let token = mint(&hub, &id).await;
    let url = dl(&hub.base_url, &token);

    let (status, body) = refusal(get(&hub, &url, &[]).await).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "INTERNAL_ERROR");
    assert!(
        !body.to_string().contains("passwd"),
        "the cause is not sent: {body}"
    );
    assert!(!token_used(&hub, &token).await);
    sqlx::query("UPDATE artifacts SET blob_key = ? WHERE id = ?")
        .bind(jobs::artifact_key(&id))
        .bind(&id)
        .execute(hub.pool())
        .await
        .expect("repair");
    let resp = get(&hub, &url, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(unb64(&resp.bytes().await.expect("body")), data);
    hub.stop().await;
}

#[tokio::test]
async fn an_interrupted_raw_download_releases_the_token_and_resumes_with_a_range() {
    let hub = hub().await;
    // Larger than the loopback socket buffers, so the server is still sending when we hang up.
    let art = store_artifact(&hub, "big.bin", bytes(32 << 20, 13)).await;
    let token = mint(&hub, &art.id).await;
    let url = dl(&hub.base_url, &token);

    let mut resp = get(&hub, &url, &[(header::ACCEPT, OCTET)]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut head = Vec::new();
    while head.len() < 100_000 {
        head.extend_from_slice(&resp.chunk().await.expect("chunk").expect("more data"));
    }
    drop(resp);
    eventually("the interrupted download to release its token", || async {
        !token_used(&hub, &token).await
    })
    .await;

    let resume = format!("bytes={}-", head.len());
    let resp = get(
        &hub,
        &url,
        &[(header::ACCEPT, OCTET), (header::RANGE, resume.as_str())],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    head.extend_from_slice(&resp.bytes().await.expect("rest"));

    assert_eq!(sha_hex(&head), sha_hex(&art.data));
    assert!(
        token_used(&hub, &token).await,
        "the completed read consumed the token"
    );
    let interrupted: i64 = sqlx::query_scalar("SELECT bytes FROM downloads ORDER BY id LIMIT 1")
        .fetch_one(hub.pool())
        .await
        .expect("audit row");
    assert!(
        interrupted < (32 << 20),
        "the audit row records what was really sent: {interrupted}"
    );
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Artifact links: large objects, presigned redirects, the filesystem store, audit
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_64_mib_artifact_round_trips_as_base64_and_raw_with_matching_sha256() {
    let hub = hub().await;
    let art = store_artifact(&hub, "large.tar.gz", bytes(64 << 20, 14)).await;
    let expected = sha_hex(&art.data);

    // base64, decoded while it streams in, as the CLI would (but without buffering it)
    let token = mint(&hub, &art.id).await;
    let resp = get(&hub, &dl(&hub.base_url, &token), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header_str(&resp, "content-length"),
        blob::b64::encoded_len(64 << 20).to_string()
    );
    let body = resp.bytes_stream().map_err(std::io::Error::other);
    let mut decoded = blob::b64::decode_stream(Box::pin(body));
    let (mut hasher, mut n) = (Sha256::new(), 0usize);
    while let Some(chunk) = decoded.next().await {
        let chunk = chunk.expect("valid base64 stream");
        n += chunk.len();
        hasher.update(&chunk);
    }
    assert_eq!(n, 64 << 20);
    assert_eq!(hex::encode(hasher.finalize()), expected);

    // raw
    let token = mint(&hub, &art.id).await;
    let resp = get(&hub, &dl(&hub.base_url, &token), &[(header::ACCEPT, OCTET)]).await;
    assert_eq!(header_str(&resp, "x-artifact-sha256"), expected);
    let mut stream = resp.bytes_stream();
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(chunk.expect("chunk"));
    }
    assert_eq!(hex::encode(hasher.finalize()), expected);
    hub.stop().await;
}

#[tokio::test]
async fn with_presigning_a_raw_download_redirects_to_s3_and_base64_is_still_proxied() {
    let hub = hub().await;
    let (base, cancel) = presigning_server(&hub).await;
    let art = store_artifact(&hub, "signed app.msi", bytes(50_000, 15)).await;
    let client = no_redirects();
    let token = mint(&hub, &art.id).await;
    let url = dl(&base, &token);

    let resp = client
        .get(&url)
        .header(header::ACCEPT, OCTET)
        .header(header::USER_AGENT, UA)
        .send()
        .await
        .expect("request");

    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header_str(&resp, "x-artifact-sha256"), sha_hex(&art.data));
    let location = header_str(&resp, "location").to_owned();
    assert!(
        location.starts_with(hub.blob_config.s3_endpoint.as_deref().expect("endpoint")),
        "{location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let from_s3 = client.get(&location).send().await.expect("GET presigned");
    assert_eq!(from_s3.status(), StatusCode::OK);
    assert_eq!(from_s3.bytes().await.expect("body").to_vec(), art.data);
    let (status, _) = refusal(
        client
            .get(&url)
            .header(header::ACCEPT, OCTET)
            .send()
            .await
            .expect("again"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the redirect consumed the token"
    );
    assert_eq!(
        hub.db()
            .count(
                "downloads",
                &format!(
                    "kind = 'presigned' AND artifact_id = '{}' AND bytes = 50000",
                    art.id
                )
            )
            .await,
        1
    );

    // Old clients (base64) never see a redirect: success is always 200 for them.
    let token = mint(&hub, &art.id).await;
    let resp = client.get(dl(&base, &token)).send().await.expect("base64");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(unb64(&resp.bytes().await.expect("body")), art.data);
    cancel.cancel();
    hub.stop().await;
}

#[tokio::test]
async fn with_presigning_a_missing_blob_is_410_before_the_token_is_spent() {
    let hub = hub().await;
    let (base, cancel) = presigning_server(&hub).await;
    let data = bytes(1_000, 16);
    let (id, _) = insert_artifact_row(&hub, "a.bin", &data, None).await;
    let token = mint(&hub, &id).await;
    let client = no_redirects();

    let (status, body) = refusal(
        client
            .get(dl(&base, &token))
            .header(header::ACCEPT, OCTET)
            .send()
            .await
            .expect("get"),
    )
    .await;

    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["error"]["code"], "GONE");
    assert!(!token_used(&hub, &token).await);
    put_bytes(&hub.deps.blob, &jobs::artifact_key(&id), data).await;
    let resp = client
        .get(dl(&base, &token))
        .header(header::ACCEPT, OCTET)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    cancel.cancel();
    hub.stop().await;
}

#[tokio::test]
async fn the_filesystem_store_serves_base64_raw_and_ranges_and_never_redirects() {
    let hub = fs_hub().await;
    let (presigning, cancel) = presigning_server(&hub).await;
    let art = store_artifact(&hub, "fs app.tar.gz", bytes(20_000, 17)).await;

    let t1 = mint(&hub, &art.id).await;
    let resp = get(&hub, &dl(&hub.base_url, &t1), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header_str(&resp, "content-disposition"),
        "attachment; filename=\"fs_app.tar.gz\""
    );
    assert_eq!(unb64(&resp.bytes().await.expect("body")), art.data);

    let t2 = mint(&hub, &art.id).await;
    let resp = get(
        &hub,
        &dl(&hub.base_url, &t2),
        &[(header::ACCEPT, OCTET), (header::RANGE, "bytes=-100")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header_str(&resp, "content-range"),
        "bytes 19900-19999/20000"
    );
    assert_eq!(&resp.bytes().await.expect("body")[..], &art.data[19_900..]);

    // Presigning is an S3 feature; the filesystem store streams through the hub instead.
    let t3 = mint(&hub, &art.id).await;
    let resp = no_redirects()
        .get(dl(&presigning, &t3))
        .header(header::ACCEPT, OCTET)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.expect("body").to_vec(), art.data);

    let (missing_id, _) = insert_artifact_row(&hub, "gone.bin", b"x", None).await;
    let t4 = mint(&hub, &missing_id).await;
    let (status, _) = refusal(get(&hub, &dl(&hub.base_url, &t4), &[]).await).await;
    assert_eq!(
        status,
        StatusCode::GONE,
        "a missing file is a clear 410, not a 5xx"
    );
    assert!(!token_used(&hub, &t4).await);
    cancel.cancel();
    hub.stop().await;
}

/// One `downloads` row.
#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    kind: String,
    job_id: String,
    artifact_id: Option<String>,
    attempt: Option<i32>,
    client_addr: Option<String>,
    user_agent: Option<String>,
    bytes: i64,
    at_ms: i64,
}

#[tokio::test]
async fn every_download_is_recorded_with_client_artifact_time_and_bytes() {
    let hub = hub().await;
    let art = store_artifact(&hub, "app.tar.gz", bytes(3_000, 18)).await;
    let before = now_ms();
    let token = mint(&hub, &art.id).await;
    let body = get(&hub, &dl(&hub.base_url, &token), &[])
        .await
        .bytes()
        .await
        .expect("body");
    let token = mint(&hub, &art.id).await;
    let raw = get(&hub, &dl(&hub.base_url, &token), &[(header::ACCEPT, OCTET)])
        .await
        .bytes()
        .await
        .expect("raw");

    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT kind, job_id, artifact_id, attempt, client_addr, user_agent, bytes, at_ms \
         FROM downloads ORDER BY id",
    )
    .fetch_all(hub.pool())
    .await
    .expect("audit rows");

    assert_eq!(rows.len(), 2);
    for (row, len) in rows.iter().zip([body.len(), raw.len()]) {
        assert_eq!(row.kind, "artifact");
        assert_eq!(row.job_id, art.job_id);
        assert_eq!(row.artifact_id.as_deref(), Some(art.id.as_str()));
        assert_eq!(row.attempt, Some(1));
        assert_eq!(row.client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(row.user_agent.as_deref(), Some(UA));
        assert_eq!(row.bytes, i64::try_from(len).expect("len"));
        assert!(row.at_ms >= before && row.at_ms <= now_ms());
    }
    let metrics = hub
        .http
        .get(hub.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("perry_hub_bytes_out_total{kind=\"artifact\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("perry_hub_downloads_total{kind=\"artifact\",outcome=\"completed\"}"),
        "{metrics}"
    );
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Worker tarball fetches
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_worker_fetches_its_tarball_with_the_job_assign_token_and_the_job_starts_running() {
    let hub = hub().await;
    let tarball = bytes(123_457, 20);
    let (_, license) = hub.insert_license("pro").await;
    let mut worker = hub.worker("linux-dl-1", &["linux"], 1).await;
    let job_id = hub
        .insert_job(license, "linux", 10, &tarball, json!({}))
        .await;
    let assign = worker.assignment().await;
    assert_eq!(assign["job_id"], job_id.as_str());
    let url = assign["tarball_url"].as_str().expect("tarball_url");
    let token = assign["auth_token"].as_str().expect("auth_token");
    assert_eq!(hub.job_state(&job_id).await, "assigned");

    let resp = get(&hub, url, &[(header::AUTHORIZATION, &bearer(token))]).await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, "content-type"), "text/plain");
    assert_eq!(header_str(&resp, "x-tarball-sha256"), sha_hex(&tarball));
    assert_eq!(unb64(&resp.bytes().await.expect("body")), tarball);
    assert_eq!(hub.job_state(&job_id).await, "running");
    let started: Option<i64> = sqlx::query_scalar("SELECT started_ms FROM jobs WHERE id = ?")
        .bind(&job_id)
        .fetch_one(hub.pool())
        .await
        .expect("job");
    assert!(started.is_some());
    let audit = format!("kind = 'tarball' AND job_id = '{job_id}' AND attempt = 1 AND client_addr = '127.0.0.1' AND user_agent = '{UA}'");
    assert_eq!(hub.db().count("downloads", &audit).await, 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_raw_tarball_fetch_serves_bytes_and_ranges() {
    let hub = hub().await;
    let tarball = bytes(5_000, 21);
    let (job_id, token) = assigned_job(&hub, &tarball).await;
    let auth = bearer(&token);
    let url = tarball_url(&hub, &job_id);

    let resp = get(
        &hub,
        &url,
        &[(header::AUTHORIZATION, &auth), (header::ACCEPT, OCTET)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, "content-type"), OCTET);
    assert_eq!(resp.bytes().await.expect("body").to_vec(), tarball);

    let resp = get(
        &hub,
        &url,
        &[
            (header::AUTHORIZATION, &auth),
            (header::ACCEPT, OCTET),
            (header::RANGE, "bytes=10-19"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_str(&resp, "content-range"), "bytes 10-19/5000");
    assert_eq!(&resp.bytes().await.expect("body")[..], &tarball[10..20]);

    let resp = get(
        &hub,
        &url,
        &[
            (header::AUTHORIZATION, &auth),
            (header::ACCEPT, OCTET),
            (header::RANGE, "bytes=9000-"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header_str(&resp, "content-range"), "bytes */5000");
    assert_eq!(hub.job_state(&job_id).await, "running");
    hub.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_job_token_is_403_invalid_job_token() {
    let hub = hub().await;
    let (job_id, token) = assigned_job(&hub, b"tarball").await;
    let (other_job, other_token) = assigned_job(&hub, b"other").await;
    let url = tarball_url(&hub, &job_id);
    let wrong = [
        None,
        Some(bearer(&uuid::Uuid::new_v4().to_string())),
        Some(bearer(&other_token)),
        Some(format!("Basic {token}")),
        Some(token.clone()),
        Some(bearer(&format!("{token}x"))),
        Some(format!("Bearer junk{token}")),
        Some(bearer(&token.to_uppercase())),
    ];

    for auth in &wrong {
        let headers: Vec<_> = auth
            .iter()
            .map(|a| (header::AUTHORIZATION, a.as_str()))
            .collect();
        let (status, body) = refusal(get(&hub, &url, &headers).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{auth:?}");
        assert_eq!(body["error"]["code"], "FORBIDDEN");
        assert_eq!(body["error"]["message"], "Invalid job token");
    }

    assert_eq!(
        hub.job_state(&job_id).await,
        "assigned",
        "no refused fetch starts the job"
    );
    assert_eq!(hub.db().count("downloads", "").await, 0);
    assert_eq!(
        get(
            &hub,
            &tarball_url(&hub, &other_job),
            &[(header::AUTHORIZATION, &bearer(&other_token))]
        )
        .await
        .status(),
        StatusCode::OK
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_token_of_a_previous_attempt_is_403() {
    let hub = hub().await;
    let (job_id, old_token) = assigned_job(&hub, b"tarball bytes").await;
    let new_token = assign(&hub, &job_id, 2).await;
    let url = tarball_url(&hub, &job_id);

    let (status, body) =
        refusal(get(&hub, &url, &[(header::AUTHORIZATION, &bearer(&old_token))]).await).await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let resp = get(&hub, &url, &[(header::AUTHORIZATION, &bearer(&new_token))]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(unb64(&resp.bytes().await.expect("body")), b"tarball bytes");
    assert_eq!(
        hub.db()
            .count("downloads", &format!("job_id = '{job_id}' AND attempt = 2"))
            .await,
        1
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_job_that_is_not_assigned_or_running_refuses_its_token() {
    let hub = hub().await;
    let (job_id, token) = assigned_job(&hub, b"tarball").await;
    let auth = bearer(&token);
    let url = tarball_url(&hub, &job_id);

    for state in ["queued", "finishing", "completed", "failed", "cancelled"] {
        // Keep the token hash on purpose: the state alone must refuse the fetch.
        sqlx::query("UPDATE jobs SET state = ? WHERE id = ?")
            .bind(state)
            .bind(&job_id)
            .execute(hub.pool())
            .await
            .expect("state");
        let (status, _) = refusal(get(&hub, &url, &[(header::AUTHORIZATION, &auth)]).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{state}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn path_tricks_in_the_job_id_are_404_and_never_reach_the_store() {
    let hub = fs_hub().await;
    let (job_id, token) = assigned_job(&hub, b"tarball").await;
    let auth = bearer(&token);
    let upper = job_id.to_uppercase();
    let overlong = format!("{job_id}{}", "0".repeat(5_000));
    let targets = [
        "..%2F..%2F..%2Fetc%2Fpasswd".to_owned(),
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_owned(),
        format!("{job_id}%2F..%2F..%2Fartifacts"),
        format!("..%2Ftarballs%2F{job_id}"),
        format!("tarballs%2F{job_id}"),
        format!("{job_id}%00"),
        "%ff%fe".to_owned(),
        "..".to_owned(),
        upper,
        overlong,
        "a".repeat(10_000),
    ];

    for target in &targets {
        let (status, body) = raw_get(
            &hub,
            &format!("/api/v1/tarball/{target}"),
            &[("Authorization", &auth)],
        )
        .await;
        assert_eq!(status, 404, "{target}");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{target}");
    }
    for target in [
        format!("{job_id}/.."),
        format!("{job_id}/../../x"),
        format!("x/{job_id}"),
    ] {
        let (status, body) = raw_get(
            &hub,
            &format!("/api/v1/tarball/{target}"),
            &[("Authorization", &auth)],
        )
        .await;
        assert_eq!(status, 404, "{target}");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{target}");
    }

    assert_eq!(hub.job_state(&job_id).await, "assigned");
    assert_eq!(hub.db().count("downloads", "").await, 0);
    let (status, _) = raw_get(
        &hub,
        &format!("/api/v1/tarball/{}", uuid::Uuid::new_v4()),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 403, "an unknown job is answered like a wrong token");
    hub.stop().await;
}

#[tokio::test]
async fn a_missing_tarball_blob_is_404_not_found_and_the_job_does_not_start() {
    let hub = hub().await;
    let (job_id, token) = assigned_job(&hub, b"tarball").await;
    hub.deps
        .blob
        .delete(&jobs::tarball_key(&job_id))
        .await
        .expect("delete blob");
    let auth = bearer(&token);

    for accept in ["text/plain", OCTET] {
        let (status, body) = refusal(
            get(
                &hub,
                &tarball_url(&hub, &job_id),
                &[(header::AUTHORIZATION, &auth), (header::ACCEPT, accept)],
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "NOT_FOUND");
        assert_eq!(body["error"]["message"], "Tarball not found");
    }

    sqlx::query("UPDATE jobs SET input_key = NULL WHERE id = ?")
        .bind(&job_id)
        .execute(hub.pool())
        .await
        .expect("no input");
    let (status, _) = refusal(
        get(
            &hub,
            &tarball_url(&hub, &job_id),
            &[(header::AUTHORIZATION, &auth)],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(hub.job_state(&job_id).await, "assigned");
    hub.stop().await;
}

#[tokio::test]
async fn a_windows_sign_job_fetches_the_stage_one_precompiled_bundle() {
    let hub = hub().await;
    let (job_id, _) = assigned_job(&hub, b"the original source tarball").await;
    // What the finisher does at the hand-off: the stage-1 bundle becomes the job's input.
    let bundle = bytes(40_000, 22);
    let bundle_id = uuid::Uuid::new_v4().to_string();
    let bundle_key = jobs::artifact_key(&bundle_id);
    put_bytes(&hub.deps.blob, &bundle_key, bundle.clone()).await;
    sqlx::query(
        "UPDATE jobs SET stage = 2, target = 'windows-sign', input_key = ?, input_size = ?, input_sha256 = ? WHERE id = ?",
    )
    .bind(&bundle_key)
    .bind(40_000_i64)
    .bind(sha_hex(&bundle))
    .bind(&job_id)
    .execute(hub.pool())
    .await
    .expect("stage 2");
    let token = assign(&hub, &job_id, 2).await;

    let resp = get(
        &hub,
        &tarball_url(&hub, &job_id),
        &[(header::AUTHORIZATION, &bearer(&token))],
    )
    .await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, "x-tarball-sha256"), sha_hex(&bundle));
    assert_eq!(unb64(&resp.bytes().await.expect("body")), bundle);
    assert_eq!(hub.job_state(&job_id).await, "running");
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The service on its own
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_download_service_runs_alone_without_rabbitmq_audits_the_proxied_client_and_stops() {
    let db = shared::testing::TestDb::new().await;
    let dir = TempDir::new("perry-download");
    let mut amqp = shared::testing::amqp_config();
    // Nothing listens here: the download service must not need the broker.
    amqp.url = shared::config::Secret::new("amqp://guest:guest@127.0.0.1:1/%2f");
    let config = download::Config {
        port: 0,
        trust_forwarded_for: true,
        common: shared::config::ServiceArgs {
            bind: "127.0.0.1".into(),
            hub: shared::testing::hub_config("http://127.0.0.1"),
            db: db.config.clone(),
            amqp,
            blob: perry_hub_tests::fs_blob_config(&dir.0),
        },
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let cancel = CancellationToken::new();
    let server = tokio::spawn(download::run(config, listener, cancel.clone()));
    let http = reqwest::Client::new();

    let ready = http
        .get(format!("{base}/readyz"))
        .timeout(WAIT)
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let store = blob::FsBlobStore::new(dir.0.clone()).expect("store");
    let data = bytes(1_234, 23);
    blob::BlobStore::put(
        &store,
        "artifacts/solo",
        blob::stream_from_bytes(data.clone()),
        blob::PutOptions::new(1 << 20),
    )
    .await
    .expect("put");
    let now = now_ms();
    sqlx::query(
        "INSERT INTO artifacts (id, job_id, attempt, name, target, size, sha256, blob_key, created_ms, expires_ms) \
         VALUES ('solo', 'job', 1, 'solo.bin', 'linux', 1234, ?, 'artifacts/solo', ?, ?)",
    )
    .bind(sha_hex(&data))
    .bind(now)
    .bind(now + 60_000)
    .execute(&db.pool)
    .await
    .expect("artifact");
    let mut conn = db.pool.acquire().await.expect("conn");
    let token = jobs::mint_download_token(&mut conn, "solo", 600)
        .await
        .expect("mint");
    drop(conn);
    let resp = http
        .get(dl(&base, &token))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(unb64(&resp.bytes().await.expect("body")), data);
    let audited: Option<String> = sqlx::query_scalar("SELECT client_addr FROM downloads")
        .fetch_one(&db.pool)
        .await
        .expect("audit row");
    assert_eq!(
        audited.as_deref(),
        Some("203.0.113.9"),
        "behind a trusted proxy"
    );
    let (status, body) = refusal(
        http.get(format!("{base}/api/v1/nope"))
            .send()
            .await
            .expect("unknown route"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );

    cancel.cancel();
    tokio::time::timeout(WAIT, server)
        .await
        .expect("stops")
        .expect("task")
        .expect("run");
    db.drop_db().await;
}
