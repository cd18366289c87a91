//! Worker artifact uploads: stored, recorded and announced; every rejection in the order of
//! §3.9, keeping nothing.

use base64::Engine as _;
use futures_util::TryStreamExt;
use perry_hub_tests::TestHub;
use sha2::{Digest, Sha256};

use super::support::b64;

/// Upload with a job token (or none); (status, JSON body).
pub(super) async fn upload(
    hub: &TestHub,
    job_id: &str,
    auth: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut all: Vec<(&str, String)> = headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    if let Some(auth) = auth {
        all.push(("authorization", auth.to_owned()));
    }
    let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    hub.upload_artifact(job_id, content_type, body, &refs).await
}

/// What an upload could leave behind.
pub(super) async fn kept(hub: &TestHub) -> (i64, i64, i64, Vec<String>) {
    let db = hub.db();
    (
        db.count("artifacts", "").await,
        db.count("job_events", "kind = 'artifact_ready'").await,
        db.count("download_tokens", "").await,
        hub.deps.blob.list("artifacts/").await.expect("list"),
    )
}

#[tokio::test]
async fn a_worker_upload_is_stored_recorded_announced_and_downloadable() {
    let hub = TestHub::start().await;
    let (job_id, token, _worker) = hub.assigned_job().await;
    let mut cli = hub.cli(&job_id).await;
    cli.expect("job_created").await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let sha = hex::encode(Sha256::digest(&data));
    let headers = [
        ("x-artifact-name", "demo-linux.tar.gz"),
        ("x-artifact-sha256", sha.as_str()),
        ("x-artifact-target", "linux"),
    ];

    let (status, body) = upload(
        &hub,
        &job_id,
        Some(&format!("Bearer {token}")),
        "text/plain",
        format!("{}\n", b64(&data)).into_bytes(),
        &headers,
    )
    .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["size"], data.len());
    let dl_token = body["token"].as_str().expect("token");
    assert_eq!(
        body["download_url"],
        format!("{}/api/v1/dl/{dl_token}", hub.base_url)
    );
    type Row = (
        String,
        i32,
        String,
        String,
        i64,
        String,
        String,
        shared::db::Flag,
    );
    let row: Row = sqlx::query_as("SELECT id, attempt, name, target, size, sha256, blob_key, hidden FROM artifacts WHERE job_id = ?")
        .bind(&job_id)
        .fetch_one(hub.pool())
        .await
        .expect("artifact row");
    assert_eq!(
        (
            row.1,
            row.2.as_str(),
            row.3.as_str(),
            row.4,
            row.5.as_str(),
            bool::from(row.7)
        ),
        (
            1,
            "demo-linux.tar.gz",
            "linux",
            100_000,
            sha.as_str(),
            false
        )
    );
    assert_eq!(row.6, job::artifacts::artifact_key(&row.0));
    let object = hub.deps.blob.get(&row.6, None).await.expect("blob");
    let stored: Vec<bytes::Bytes> = object.body.try_collect().await.expect("read");
    assert_eq!(stored.concat(), data);
    assert_eq!(hub.job_state(&job_id).await, "running");
    let ready = cli.expect("artifact_ready").await;
    assert_eq!(ready["artifact_name"], "demo-linux.tar.gz");
    assert_eq!(ready["artifact_size"], 100_000);
    assert_eq!(ready["sha256"], sha.as_str());
    assert!(ready["download_url"]
        .as_str()
        .is_some_and(|u| u.contains("/api/v1/dl/")));

    let download = hub
        .http
        .get(body["download_url"].as_str().expect("url"))
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    let text = download.text().await.expect("body");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .expect("base64"),
        data
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_raw_upload_is_stored_as_sent() {
    let hub = TestHub::start().await;
    let (job_id, token, _worker) = hub.assigned_job().await;
    let data = b"QUJD but raw, not base64".to_vec();

    let (status, body) = upload(
        &hub,
        &job_id,
        Some(&format!("bearer {token}")),
        "application/octet-stream",
        data.clone(),
        &[("x-artifact-name", "app.AppImage")],
    )
    .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["size"], data.len());
    let sha: String = sqlx::query_scalar("SELECT sha256 FROM artifacts WHERE job_id = ?")
        .bind(&job_id)
        .fetch_one(hub.pool())
        .await
        .expect("row");
    assert_eq!(sha, hex::encode(Sha256::digest(&data)));
    hub.stop().await;
}

#[tokio::test]
async fn a_precompiled_bundle_is_kept_hidden_from_the_cli() {
    let hub = TestHub::start().await;
    let (job_id, token, _worker) = hub.assigned_job().await;

    let headers = [
        ("x-artifact-name", "bundle.tar.gz"),
        ("x-artifact-target", "windows-precompiled"),
    ];
    let (status, body) = upload(
        &hub,
        &job_id,
        Some(&format!("Bearer {token}")),
        "text/plain",
        b64(b"bundle").into_bytes(),
        &headers,
    )
    .await;

    assert_eq!(status, 200, "{body}");
    let db = hub.db();
    assert_eq!(
        db.count(
            "artifacts",
            "hidden = TRUE AND target = 'windows-precompiled'"
        )
        .await,
        1
    );
    assert_eq!(db.count("job_events", "kind = 'artifact_ready'").await, 0);
    let kept_for: i64 = sqlx::query_scalar("SELECT expires_ms - created_ms FROM artifacts")
        .fetch_one(hub.pool())
        .await
        .expect("row");
    assert_eq!(kept_for, 86_400_000);
    hub.stop().await;
}
