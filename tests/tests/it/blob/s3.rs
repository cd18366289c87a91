//! [`blob::S3BlobStore`] on a fresh bucket of the s3s-fs test server per test. The uploads a
//! store started come from its `started_uploads()` (the `blob/testing` feature).

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blob::{
    stream_from_bytes, BlobError, BlobStore, ByteRange, PutOptions, PutResult, S3BlobStore,
    S3Settings, S3_PART_SIZE,
};
use bytes::Bytes;

use super::{
    check_ranges, chunked, endless, failing_after, get_all, random_bytes, sha, stalling_after,
};

pub(super) fn s3_endpoint() -> String {
    std::env::var("PERRY_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8014".into())
}

fn s3_data_dir() -> PathBuf {
    std::env::var("PERRY_TEST_S3_DATA_DIR")
        .unwrap_or_else(|_| "/tmp/perry-hub-s3".into())
        .into()
}

/// A store on a fresh bucket of the test S3 server.
pub(super) async fn s3_store(key_prefix: &str) -> S3BlobStore {
    let store = S3BlobStore::new(S3Settings {
        bucket: format!("perry-test-{}", uuid::Uuid::new_v4().simple()),
        endpoint: Some(s3_endpoint()),
        region: "us-east-1".into(),
        access_key_id: std::env::var("PERRY_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| "perry".into()),
        secret_access_key: std::env::var("PERRY_TEST_S3_SECRET_KEY")
            .unwrap_or_else(|_| "perrysecret".into()),
        key_prefix: key_prefix.into(),
        checksum_when_required: false,
    })
    .expect("s3 store");
    store.ensure_bucket().await.unwrap_or_else(|e| {
        panic!(
            "test S3 server at {} not usable (start s3s-fs): {e}",
            s3_endpoint()
        )
    });
    store
        .ensure_bucket()
        .await
        .expect("ensure_bucket is idempotent");
    store.check().await.expect("check");
    store
}

pub(super) async fn drop_bucket(store: &S3BlobStore) {
    for key in store.list("").await.unwrap_or_default() {
        let _ = store.delete(&key).await;
    }
    let _ = store
        .client()
        .delete_bucket()
        .bucket(store.bucket())
        .send()
        .await;
}

/// True when the multipart upload `id` no longer exists on the server.
async fn upload_is_gone(store: &S3BlobStore, key: &str, id: &str) -> bool {
    let dir = s3_data_dir();
    if dir.is_dir() {
        let info = dir.join(format!(".upload-{id}.json"));
        let part_prefix = format!(".upload_id-{id}");
        let parts_left = std::fs::read_dir(&dir)
            .expect("read data dir")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&part_prefix));
        if info.exists() || parts_left {
            return false;
        }
    }
    // Aborting again must fail: the server no longer knows the upload.
    store
        .client()
        .abort_multipart_upload()
        .bucket(store.bucket())
        .key(format!("{}{key}", store.key_prefix()))
        .upload_id(id)
        .send()
        .await
        .is_err()
}

#[tokio::test]
async fn s3_pending_upload_detection_is_meaningful() {
    // Sanity check of the helper the "nothing left behind" tests rely on.
    let store = s3_store("").await;
    let created = store
        .client()
        .create_multipart_upload()
        .bucket(store.bucket())
        .key("artifacts/live")
        .send()
        .await
        .expect("create upload");
    let id = created.upload_id().expect("id").to_owned();
    let dir = s3_data_dir();
    if dir.is_dir() {
        assert!(dir.join(format!(".upload-{id}.json")).exists());
    }
    assert!(!upload_is_gone(&store, "artifacts/live", &id).await || !dir.is_dir());
    // (upload_is_gone aborted it through the API when the data dir was not visible.)
    // Abort it as the store does on a failed put; the outcome is what the helper must see.
    let _ = store
        .client()
        .abort_multipart_upload()
        .bucket(store.bucket())
        .key("artifacts/live")
        .upload_id(&id)
        .send()
        .await;
    assert!(upload_is_gone(&store, "artifacts/live", &id).await);
    drop_bucket(&store).await;
}

async fn assert_nothing_left(store: &S3BlobStore, key: &str) {
    assert!(
        store.list("").await.expect("list").is_empty(),
        "no object may be left"
    );
    assert_eq!(store.size(key).await.expect("size"), None);
    for id in store.started_uploads() {
        assert!(
            upload_is_gone(store, key, &id).await,
            "multipart upload {id} still pending"
        );
    }
}

#[tokio::test]
async fn s3_multipart_round_trip_20_mib() {
    let store = s3_store("hub").await;
    let data = random_bytes(20 * 1024 * 1024 + 12_345, 11);
    let key = "tarballs/big";
    let put = store
        .put(
            key,
            chunked(&data, 300_000),
            PutOptions::new(32 << 20).with_sha256(sha(&data)),
        )
        .await
        .expect("put");
    assert_eq!(
        put,
        PutResult {
            size: data.len() as u64,
            sha256: sha(&data)
        }
    );
    let ids = store.started_uploads();
    assert_eq!(ids.len(), 1, "a 20 MiB put is a multipart upload");
    assert!(
        upload_is_gone(&store, key, &ids[0]).await,
        "completed upload is no longer pending"
    );

    let (size, range, body) = get_all(&store, key, None).await.expect("get");
    assert_eq!((size, range), (data.len() as u64, None));
    assert!(body == data, "round trip");
    assert_eq!(
        store.size(key).await.expect("size"),
        Some(data.len() as u64)
    );
    assert_eq!(store.list("").await.expect("list"), vec![key.to_string()]);
    assert_eq!(
        store.list("tarballs/").await.expect("list"),
        vec![key.to_string()]
    );
    // The prefix is applied in the bucket and stripped from listings.
    let raw = store
        .client()
        .list_objects_v2()
        .bucket(store.bucket())
        .send()
        .await
        .expect("raw list");
    let raw_keys: Vec<_> = raw.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(raw_keys, vec!["hub/tarballs/big"]);

    // A range across the first part boundary.
    let b = S3_PART_SIZE as u64;
    let (_, served, part) = get_all(
        &store,
        key,
        Some(ByteRange::From {
            start: b - 10,
            end: Some(b + 9),
        }),
    )
    .await
    .expect("range");
    assert_eq!(served, Some((b - 10, b + 9)));
    assert_eq!(part, &data[(b - 10) as usize..(b + 10) as usize]);

    // An object of exactly one part goes through PutObject.
    let exact = random_bytes(S3_PART_SIZE, 12);
    store
        .put(
            "tarballs/exact",
            chunked(&exact, 1 << 20),
            PutOptions::new(1 << 30),
        )
        .await
        .expect("put exact");
    assert_eq!(
        store.started_uploads().len(),
        1,
        "exactly one part: no multipart"
    );
    assert!(
        get_all(&store, "tarballs/exact", None)
            .await
            .expect("get")
            .2
            == exact
    );
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_single_part_round_trip_and_ranges() {
    let store = s3_store("").await;
    let data = random_bytes(100_000, 13);
    let put = store
        .put(
            "artifacts/a",
            chunked(&data, 9_000),
            PutOptions::new(100_000),
        )
        .await
        .expect("put");
    assert_eq!(put.size, 100_000);
    assert!(store.started_uploads().is_empty());
    check_ranges(&store, "artifacts/a", &data).await;
    let put = store
        .put(
            "artifacts/empty",
            stream_from_bytes(Bytes::new()),
            PutOptions::new(0),
        )
        .await
        .expect("put");
    assert_eq!(put.sha256, sha(b""));
    assert_eq!(
        get_all(&store, "artifacts/empty", None)
            .await
            .expect("get")
            .2,
        b""
    );
    assert_eq!(
        store.list("artifacts/").await.expect("list"),
        vec!["artifacts/a", "artifacts/empty"]
    );
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_oversize_put_leaves_nothing() {
    let store = s3_store("").await;
    // Small limit: fails while filling the first part, nothing is ever sent.
    let pulled = Arc::new(AtomicUsize::new(0));
    let err = store
        .put(
            "tarballs/a",
            endless(512, pulled.clone()),
            PutOptions::new(1000),
        )
        .await
        .expect_err("too large");
    assert!(
        matches!(err, BlobError::TooLarge { limit: 1000 }),
        "{err:?}"
    );
    assert_eq!(pulled.load(Ordering::SeqCst), 2);
    assert_nothing_left(&store, "tarballs/a").await;

    // Larger limit: parts have been uploaded when the limit is crossed.
    let pulled = Arc::new(AtomicUsize::new(0));
    let limit = (S3_PART_SIZE + S3_PART_SIZE / 2) as u64;
    let err = store
        .put(
            "tarballs/b",
            endless(1 << 20, pulled.clone()),
            PutOptions::new(limit),
        )
        .await
        .expect_err("too large");
    assert!(
        matches!(err, BlobError::TooLarge { limit: l } if l == limit),
        "{err:?}"
    );
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        13,
        "stops at the first chunk over the limit"
    );
    assert_eq!(
        store.started_uploads().len(),
        1,
        "the multipart upload had started"
    );
    assert_nothing_left(&store, "tarballs/b").await;
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_sha_mismatch_leaves_nothing() {
    let store = s3_store("").await;
    let small = random_bytes(1000, 14);
    let err = store
        .put(
            "artifacts/s",
            chunked(&small, 100),
            PutOptions::new(1 << 20).with_sha256(sha(b"x")),
        )
        .await
        .expect_err("mismatch");
    assert!(matches!(err, BlobError::ShaMismatch), "{err:?}");
    assert_nothing_left(&store, "artifacts/s").await;

    let big = random_bytes(S3_PART_SIZE + 1000, 15);
    let err = store
        .put(
            "artifacts/m",
            chunked(&big, 500_000),
            PutOptions::new(1 << 30).with_sha256(sha(b"x")),
        )
        .await
        .expect_err("mismatch");
    assert!(matches!(err, BlobError::ShaMismatch), "{err:?}");
    assert_eq!(store.started_uploads().len(), 1);
    assert_nothing_left(&store, "artifacts/m").await;
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_source_error_and_cancellation_leave_nothing() {
    let store = s3_store("").await;
    let err = store
        .put(
            "artifacts/e",
            failing_after(S3_PART_SIZE + 5000),
            PutOptions::new(1 << 30),
        )
        .await
        .expect_err("source");
    assert!(
        matches!(err, BlobError::Source(ref e) if e.kind() == io::ErrorKind::ConnectionReset),
        "{err:?}"
    );
    assert_eq!(store.started_uploads().len(), 1);
    assert_nothing_left(&store, "artifacts/e").await;

    // Dropping the put future after a part went up aborts the upload in the background.
    let put = store.put(
        "artifacts/c",
        stalling_after(S3_PART_SIZE + 5000),
        PutOptions::new(1 << 30),
    );
    assert!(tokio::time::timeout(Duration::from_secs(5), put)
        .await
        .is_err());
    let ids = store.started_uploads();
    assert_eq!(ids.len(), 2);
    let mut gone = false;
    for _ in 0..50 {
        if upload_is_gone(&store, "artifacts/c", &ids[1]).await {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "cancelled multipart upload was not aborted");
    assert_nothing_left(&store, "artifacts/c").await;
    drop_bucket(&store).await;
}
