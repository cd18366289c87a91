//! Streaming blob stores with a bounded memory footprint.

use std::sync::{Arc, Mutex};

use blob::{BlobStore, ByteStream, PutOptions};
use futures_util::StreamExt;
use perry_hub_tests::WAIT;
use sha2::{Digest, Sha256};
use shared::testing::{self};

/// A deterministic pseudo-random stream of `total` bytes in 64 KiB chunks, hashed as produced.
fn generated(total: u64, hasher: Arc<Mutex<Sha256>>) -> ByteStream {
    const CHUNK: u64 = 64 * 1024;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let chunks = total.div_ceil(CHUNK);
    Box::pin(futures_util::stream::iter(0..chunks).map(move |i| {
        let len = usize::try_from(CHUNK.min(total - i * CHUNK)).unwrap();
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            buf.extend_from_slice(&state.to_le_bytes());
        }
        buf.truncate(len);
        hasher.lock().unwrap().update(&buf);
        Ok(bytes::Bytes::from(buf))
    }))
}

/// Peak resident memory since the last reset, in KiB (Linux).
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reset the peak-RSS watermark to the current RSS.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn stream_512_mib_each_way(store: Arc<dyn BlobStore>, label: &str) {
    const SIZE: u64 = 512 * 1024 * 1024;
    let key = format!("bench/{}", uuid::Uuid::new_v4());
    reset_peak_rss();
    let base = peak_rss_kib();
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let put = store
        .put(&key, generated(SIZE, hasher.clone()), PutOptions::new(SIZE))
        .await
        .unwrap();
    let produced: [u8; 32] = hasher.lock().unwrap().clone().finalize().into();
    assert_eq!(put.size, SIZE);
    assert_eq!(
        put.sha256, produced,
        "hash computed while streaming matches"
    );
    let mut obj = store.get(&key, None).await.unwrap();
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = obj.body.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!(n, SIZE);
    assert_eq!(<[u8; 32]>::from(h.finalize()), produced);
    let grew_mib = peak_rss_kib().saturating_sub(base) / 1024;
    println!("{label}: streamed 512 MiB each way; peak RSS grew by {grew_mib} MiB");
    // One 8 MiB part buffer (S3) plus I/O buffers: far below the object size.
    assert!(
        grew_mib < 64,
        "{label}: peak RSS grew by {grew_mib} MiB while streaming 512 MiB"
    );
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn filesystem_store_streams_512_mib_each_way_in_bounded_memory() {
    let dir = perry_hub_tests::tempdir::TempDir::new("perry-fs-stream");
    let store: Arc<dyn BlobStore> = Arc::new(blob::FsBlobStore::new(dir.0.clone()).unwrap());
    stream_512_mib_each_way(store, "fs").await;
}

#[tokio::test]
async fn s3_store_streams_512_mib_each_way_in_bounded_memory() {
    let (store, _) = testing::s3_store().await;
    stream_512_mib_each_way(store, "s3").await;
}

#[tokio::test]
async fn oversized_put_fails_and_leaves_no_object_in_s3() {
    let (store, _) = testing::s3_store().await;
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let err = store
        .put(
            "tarballs/too-big",
            generated(20 * 1024 * 1024, hasher),
            PutOptions::new(10 * 1024 * 1024),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, blob::BlobError::TooLarge { limit } if limit == 10 * 1024 * 1024));
    assert!(
        store.list("").await.unwrap().is_empty(),
        "nothing is left behind"
    );
    let _ = WAIT;
}
