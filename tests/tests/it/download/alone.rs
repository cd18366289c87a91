//! The download service run on its own.

use super::support::*;
use perry_hub_tests::{tempdir::TempDir, WAIT};
use reqwest::StatusCode;
use shared::clock::now_ms;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
            shutdown_grace_secs: 5,
            check: false,
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
    let token = job::artifacts::mint_download_token(&mut conn, "solo", 600)
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
