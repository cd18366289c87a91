//! [`blob::FsBlobStore`] on a fresh temporary directory per test.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use blob::{
    stream_from_bytes, BlobError, BlobStore, ByteRange, FsBlobStore, PutOptions, PutResult,
};
use bytes::Bytes;
use futures_util::stream;

use super::{
    check_ranges, chunked, endless, failing_after, get_all, random_bytes, sha, stalling_after,
};

/// The store's directory for in-flight uploads, under its root.
const FS_TMP_DIR: &str = ".tmp";

struct FsFixture {
    dir: PathBuf,
    store: FsBlobStore,
}

impl FsFixture {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("perry-blob-test-{}", uuid::Uuid::new_v4().simple()));
        let store = FsBlobStore::new(dir.clone()).expect("fs store");
        Self { dir, store }
    }

    /// Everything under the root except the (empty) temp dir.
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    if path != self.dir.join(FS_TMP_DIR) {
                        found.push(path.display().to_string());
                    }
                    pending.push(path);
                } else {
                    found.push(path.display().to_string());
                }
            }
        }
        found
    }

    fn temp_files(&self) -> usize {
        std::fs::read_dir(self.dir.join(FS_TMP_DIR))
            .expect("tmp dir")
            .count()
    }
}

impl Drop for FsFixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn fs_round_trip_with_sha() {
    let fx = FsFixture::new();
    let data = random_bytes(300_001, 1);
    let put = fx
        .store
        .put(
            "tarballs/abc",
            chunked(&data, 70_000),
            PutOptions::new(1 << 20).with_sha256(sha(&data)),
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
    assert_eq!(put.sha256_hex(), hex::encode(sha(&data)));
    let (size, range, body) = get_all(&fx.store, "tarballs/abc", None).await.expect("get");
    assert_eq!((size, range), (data.len() as u64, None));
    assert_eq!(body, data);
    assert_eq!(
        fx.store.size("tarballs/abc").await.expect("size"),
        Some(data.len() as u64)
    );
    assert_eq!(fx.store.size("tarballs/none").await.expect("size"), None);
    assert_eq!(fx.temp_files(), 0);

    // Overwrite replaces the object; empty objects work; exactly-at-limit is fine.
    let put = fx
        .store
        .put(
            "tarballs/abc",
            stream_from_bytes(&b"new"[..]),
            PutOptions::new(3),
        )
        .await
        .expect("put");
    assert_eq!(put.size, 3);
    assert_eq!(
        get_all(&fx.store, "tarballs/abc", None)
            .await
            .expect("get")
            .2,
        b"new"
    );
    let put = fx
        .store
        .put(
            "artifacts/empty",
            stream_from_bytes(Bytes::new()),
            PutOptions::new(0),
        )
        .await
        .expect("put");
    assert_eq!(
        put,
        PutResult {
            size: 0,
            sha256: sha(b"")
        }
    );
    assert_eq!(
        get_all(&fx.store, "artifacts/empty", None)
            .await
            .expect("get")
            .2,
        b""
    );
    let err = fx
        .store
        .get("artifacts/empty", Some(ByteRange::Suffix(1)))
        .await
        .expect_err("416");
    assert!(matches!(err, BlobError::RangeNotSatisfiable));

    assert_eq!(
        fx.store.list("").await.expect("list"),
        vec!["artifacts/empty", "tarballs/abc"]
    );
    assert_eq!(
        fx.store.list("tarballs/").await.expect("list"),
        vec!["tarballs/abc"]
    );
    assert_eq!(
        fx.store.list("tarb").await.expect("list"),
        vec!["tarballs/abc"]
    );
    assert_eq!(
        fx.store.list("tarballs/ab").await.expect("list"),
        vec!["tarballs/abc"]
    );
    assert!(fx.store.list("tarballs/x").await.expect("list").is_empty());
    assert!(fx.store.list("nothing/").await.expect("list").is_empty());
    assert_eq!(
        fx.store
            .presign_get("tarballs/abc", Duration::from_secs(60), "a")
            .await
            .expect("presign"),
        None
    );
    fx.store.check().await.expect("check");
    assert_eq!(fx.store.backend(), "fs");
    assert_eq!(fx.temp_files(), 0);
}

#[tokio::test]
async fn fs_too_large_stops_reading_and_leaves_nothing() {
    let fx = FsFixture::new();
    let pulled = Arc::new(AtomicUsize::new(0));
    let err = fx
        .store
        .put(
            "tarballs/big",
            endless(512, pulled.clone()),
            PutOptions::new(1000),
        )
        .await
        .expect_err("too large");
    assert!(
        matches!(err, BlobError::TooLarge { limit: 1000 }),
        "{err:?}"
    );
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        2,
        "stops at the first chunk over the limit"
    );
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert_eq!(fx.temp_files(), 0);
    assert_eq!(fx.store.size("tarballs/big").await.expect("size"), None);
}

#[tokio::test]
async fn fs_sha_mismatch_leaves_nothing() {
    let fx = FsFixture::new();
    let data = random_bytes(100_000, 2);
    let err = fx
        .store
        .put(
            "tarballs/sha",
            chunked(&data, 10_000),
            PutOptions::new(1 << 20).with_sha256(sha(b"other")),
        )
        .await
        .expect_err("mismatch");
    assert!(matches!(err, BlobError::ShaMismatch), "{err:?}");
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert_eq!(fx.temp_files(), 0);
}

#[tokio::test]
async fn fs_source_error_leaves_nothing() {
    let fx = FsFixture::new();
    let err = fx
        .store
        .put(
            "tarballs/src",
            failing_after(50_000),
            PutOptions::new(1 << 20),
        )
        .await
        .expect_err("source");
    match err {
        BlobError::Source(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected Source, got {other:?}"),
    }
    // A base64 body that turns out malformed mid-stream.
    let text = Box::pin(stream::iter(vec![
        Ok(Bytes::from_static(b"QUJD")),
        Ok(Bytes::from_static(b"Q*==")),
    ]));
    let err = fx
        .store
        .put(
            "tarballs/b64",
            Box::pin(blob::b64::decode_stream(text)),
            PutOptions::new(1 << 20),
        )
        .await
        .expect_err("bad base64");
    assert!(
        matches!(&err, BlobError::Source(e) if blob::b64::is_decode_error(e)),
        "{err:?}"
    );
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert_eq!(fx.temp_files(), 0);
}

#[tokio::test]
async fn fs_cancelled_put_leaves_no_temp_file() {
    let fx = FsFixture::new();
    let put = fx.store.put(
        "tarballs/slow",
        stalling_after(300_000),
        PutOptions::new(1 << 20),
    );
    let res = tokio::time::timeout(Duration::from_millis(300), put).await;
    assert!(res.is_err(), "the put must still be waiting for data");
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert_eq!(fx.temp_files(), 0);
}

#[tokio::test]
async fn fs_range_get() {
    let fx = FsFixture::new();
    let data = random_bytes(200_000, 3);
    fx.store
        .put(
            "artifacts/r",
            chunked(&data, 65_536),
            PutOptions::new(1 << 20),
        )
        .await
        .expect("put");
    check_ranges(&fx.store, "artifacts/r", &data).await;
    let err = fx
        .store
        .get("artifacts/missing", Some(ByteRange::Suffix(1)))
        .await
        .expect_err("missing");
    assert!(matches!(err, BlobError::NotFound));
}

#[tokio::test]
async fn fs_delete_is_idempotent_and_not_found_maps() {
    let fx = FsFixture::new();
    fx.store
        .put(
            "artifacts/d",
            stream_from_bytes(&b"x"[..]),
            PutOptions::new(10),
        )
        .await
        .expect("put");
    fx.store.delete("artifacts/d").await.expect("delete");
    fx.store.delete("artifacts/d").await.expect("delete again");
    fx.store
        .delete("never/existed")
        .await
        .expect("delete missing");
    assert!(matches!(
        fx.store.get("artifacts/d", None).await,
        Err(BlobError::NotFound)
    ));
    assert_eq!(fx.store.size("artifacts/d").await.expect("size"), None);
    // A directory is not an object.
    assert!(matches!(
        fx.store.get("artifacts", None).await,
        Err(BlobError::NotFound)
    ));
    assert_eq!(fx.store.size("artifacts").await.expect("size"), None);
}

#[tokio::test]
async fn fs_invalid_keys_are_rejected() {
    let fx = FsFixture::new();
    for key in ["../escape", "/etc/passwd", ".tmp/x", "a//b", "a/", ""] {
        let put = fx
            .store
            .put(key, stream_from_bytes(&b"x"[..]), PutOptions::new(10))
            .await;
        assert!(matches!(put, Err(BlobError::InvalidKey(_))), "put {key:?}");
        assert!(
            matches!(fx.store.get(key, None).await, Err(BlobError::InvalidKey(_))),
            "get {key:?}"
        );
        assert!(
            matches!(fx.store.size(key).await, Err(BlobError::InvalidKey(_))),
            "size {key:?}"
        );
        assert!(
            matches!(fx.store.delete(key).await, Err(BlobError::InvalidKey(_))),
            "delete {key:?}"
        );
    }
    assert!(matches!(
        fx.store.list("../").await,
        Err(BlobError::InvalidKey(_))
    ));
    assert!(fx.leftovers().is_empty());
    assert!(!std::env::temp_dir().join("escape").exists());
}

#[tokio::test]
async fn fs_sweeps_stale_temp_files_on_open() {
    let fx = FsFixture::new();
    let stale = fx.dir.join(FS_TMP_DIR).join("old.part");
    let fresh = fx.dir.join(FS_TMP_DIR).join("fresh.part");
    std::fs::write(&stale, b"x").expect("write");
    std::fs::write(&fresh, b"x").expect("write");
    // Idle a minute past the partial-upload age (DEC-31), and a minute short of it.
    let minute = Duration::from_secs(60);
    for (path, idle) in [
        (&stale, blob::PARTIAL_UPLOAD_AGE + minute),
        (&fresh, blob::PARTIAL_UPLOAD_AGE - minute),
    ] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(SystemTime::now() - idle))
            .expect("set mtime");
    }
    let _again = FsBlobStore::new(fx.dir.clone()).expect("reopen");
    assert!(!stale.exists());
    assert!(
        fresh.exists(),
        "an in-flight upload of another process is kept"
    );
}
