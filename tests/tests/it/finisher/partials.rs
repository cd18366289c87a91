//! Partial blobs of interrupted uploads are removed promptly (issue 12 item 3, DEC-31): a hub
//! process killed with SIGKILL mid-upload runs no cleanup; the retention sweep removes what it
//! left once abandoned for `PERRY_FINISHER_PARTIAL_UPLOAD_AGE_SECS`, and nothing else.

use std::{path::PathBuf, time::Duration};

use finisher::retention;
use futures_util::StreamExt;
use perry_hub_tests::{api::manifest, HubOptions, HubProcess, TestHub, WAIT};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::support::*;

async fn blob_bytes(hub: &TestHub, key: &str) -> Vec<u8> {
    let object = hub.deps.blob.get(key, None).await.expect("blob");
    let mut body = object.body;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.expect("read blob"));
    }
    out
}

/// A second client on the hub's S3 bucket, to act as a process that was killed mid-upload.
fn s3_store(hub: &TestHub) -> blob::S3BlobStore {
    let c = &hub.blob_config;
    blob::S3BlobStore::new(blob::S3Settings {
        bucket: c.s3_bucket.clone(),
        endpoint: c.s3_endpoint.clone(),
        region: c.s3_region.clone(),
        access_key_id: c.s3_access_key_id.clone(),
        secret_access_key: c.s3_secret_access_key.expose().to_owned(),
        key_prefix: c.s3_key_prefix.clone(),
        checksum_when_required: c.s3_checksum_when_required,
    })
    .expect("S3 store")
}

/// A complete raw build through `hub`: the job id and its tarball.
async fn complete_build(hub: &TestHub, key: &str) -> (String, Vec<u8>) {
    let tarball = b"a complete tarball of another job".to_vec();
    let m64 =
        perry_hub_tests::api::b64(manifest("linux", "com.example.done").to_string().as_bytes());
    let headers = [
        ("x-perry-manifest", m64.as_str()),
        ("x-perry-license-key", key),
    ];
    let (status, body) = hub.submit_raw_build(tarball.clone(), &headers).await;
    assert_eq!(status, 200, "{body}");
    (body["job_id"].as_str().expect("job id").to_owned(), tarball)
}

/// Start a raw build on `base_url` whose body sends `sent` bytes and then stalls for ever; the
/// request's outcome, once the connection ends.
fn stalled_upload(
    base_url: &str,
    key: &str,
    sent: usize,
) -> tokio::task::JoinHandle<Result<(u16, Value), String>> {
    let m64 =
        perry_hub_tests::api::b64(manifest("linux", "com.example.done").to_string().as_bytes());
    let chunks = (0..sent / (1 << 20)).map(|i| Ok::<_, std::io::Error>(vec![i as u8; 1 << 20]));
    let body = futures_util::stream::iter(chunks).chain(futures_util::stream::pending());
    let req = reqwest::Client::new()
        .post(format!("{base_url}/api/v1/build"))
        .header("content-type", "application/octet-stream")
        .header("x-perry-manifest", m64)
        .header("x-perry-license-key", key)
        .body(reqwest::Body::wrap_stream(body));
    tokio::spawn(async move {
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    })
}

/// The temporary files of a filesystem store, with their sizes.
fn temp_files(root: &std::path::Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(root.join(".tmp"))
        .expect("temp dir")
        .flatten()
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect()
}

fn sweep_settings(age_secs: u64) -> finisher::Settings {
    settings(&flags(&[
        "--partial-upload-age-secs",
        &age_secs.to_string(),
    ]))
}

#[tokio::test]
async fn an_upload_killed_mid_body_leaves_a_partial_file_that_the_retention_sweep_removes() {
    let hub = TestHub::start_with(HubOptions {
        no_finisher: true,
        fs_blobs: true,
        ..HubOptions::default()
    })
    .await;
    let root = hub.blob_config.dir.clone();
    let key = hub.registered_license().await;
    let (done, tarball) = complete_build(&hub, &key).await;
    let process = HubProcess::start(&hub, env!("CARGO_BIN_EXE_perry-hub-process")).await;

    let upload = stalled_upload(&process.base_url, &key, 20 << 20);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !temp_files(&root).iter().any(|(_, len)| *len >= 10 << 20) {
        assert!(
            tokio::time::Instant::now() < deadline && !upload.is_finished(),
            "no partial upload: {:?}",
            temp_files(&root)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill();
    let outcome = upload.await.expect("upload task");
    assert!(
        outcome.as_ref().is_err() || outcome.as_ref().is_ok_and(|(s, _)| *s >= 500),
        "{outcome:?}"
    );
    // A killed process cleans nothing up: the partial file stays, and no job was created.
    let partial = temp_files(&root);
    assert_eq!(partial.len(), 1, "{partial:?}");
    assert_eq!(hub.db().count("jobs", "").await, 1);

    let ctx = finisher::AppState::new(&hub.deps, sweep_settings(3));
    // Not yet abandoned for the age: kept (it could be a live upload).
    assert_eq!(retention::sweep(&ctx).await.unwrap().partial_uploads, 0);
    assert_eq!(temp_files(&root).len(), 1);
    let written = std::fs::metadata(&partial[0].0)
        .and_then(|m| m.modified())
        .expect("mtime");
    let idle = written.elapsed().unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(idle) + Duration::from_millis(200))
        .await;

    let report = retention::sweep(&ctx).await.unwrap();
    assert_eq!(report.partial_uploads, 1);
    assert!(temp_files(&root).is_empty(), "the partial is gone");
    let stored = blob_bytes(&hub, &job::artifacts::tarball_key(&done)).await;
    assert_eq!(Sha256::digest(&stored), Sha256::digest(&tarball));
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "17-upload-killed",
        fault: "Hub process SIGKILLed during a 20 MiB upload (filesystem store)",
        outcome: "No job was created; the partial file stayed through a sweep run too early and was removed by the retention sweep once idle for PERRY_FINISHER_PARTIAL_UPLOAD_AGE_SECS (900 by default); another job's complete tarball was untouched (DEC-31).".to_owned(),
        test: "finisher::partials::an_upload_killed_mid_body_leaves_a_partial_file_that_the_retention_sweep_removes",
    });
    hub.stop().await;
}

#[tokio::test]
async fn an_abandoned_s3_multipart_upload_is_aborted_and_a_live_one_and_complete_blobs_are_kept() {
    let hub = TestHub::start_with(HubOptions {
        no_finisher: true,
        ..HubOptions::default()
    })
    .await;
    let key = hub.registered_license().await;
    let (done, tarball) = complete_build(&hub, &key).await;
    let store = s3_store(&hub);
    let client = store.client();
    // What a process killed mid-upload leaves: an upload with a part, never completed.
    let full_key = format!(
        "{}{}",
        store.key_prefix(),
        job::artifacts::tarball_key(&uuid::Uuid::new_v4().to_string())
    );
    let started = shared::clock::now_ms() / 1_000;
    let created = client
        .create_multipart_upload()
        .bucket(store.bucket())
        .key(&full_key)
        .send()
        .await
        .expect("create upload");
    let upload_id = created.upload_id().expect("upload id").to_owned();
    let part = |n: i32| {
        client
            .upload_part()
            .bucket(store.bucket())
            .key(&full_key)
            .upload_id(&upload_id)
            .part_number(n)
            .body(vec![7u8; 5 << 20].into())
            .send()
    };
    part(1).await.expect("part 1");

    // The retention sweep runs whole against a server that cannot list uploads (s3s-fs has
    // no ListMultipartUploads) and reports nothing removed.
    let ctx = finisher::AppState::new(&hub.deps, sweep_settings(1));
    assert_eq!(retention::sweep(&ctx).await.unwrap().partial_uploads, 0);

    // The step that judges one listed upload: recent (started or written within the age)
    // is kept and still takes parts, abandoned is aborted.
    let age = Duration::from_secs(2);
    assert!(!store
        .abort_if_stale(&full_key, &upload_id, Some(started), age)
        .await
        .expect("judge"));
    part(2).await.expect("a kept upload takes parts");
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert!(store
        .abort_if_stale(&full_key, &upload_id, Some(started), age)
        .await
        .expect("abort"));
    assert!(part(3).await.is_err(), "the upload was aborted");
    let stored = blob_bytes(&hub, &job::artifacts::tarball_key(&done)).await;
    assert_eq!(Sha256::digest(&stored), Sha256::digest(&tarball));
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "18-upload-abandoned-s3",
        fault: "An S3 multipart upload left incomplete by a killed process",
        outcome: "A recent upload was kept and still took parts; once stale it was aborted and further parts failed; complete blobs were untouched. s3s-fs cannot list multipart uploads, so there the sweep warns and a bucket lifecycle rule must remove them (DEC-31).".to_owned(),
        test: "finisher::partials::an_abandoned_s3_multipart_upload_is_aborted_and_a_live_one_and_complete_blobs_are_kept",
    });
    hub.stop().await;
}
