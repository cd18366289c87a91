//! Blob store scenarios: the filesystem store on a temporary directory and the S3 store against
//! the s3s-fs test server (`PERRY_TEST_S3_ENDPOINT`), plus the body helpers both share.

mod fs;
mod s3;
mod s3_links;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use blob::{BlobError, BlobStore, ByteRange, ByteStream, Result};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use sha2::{Digest, Sha256};

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `data` in chunks of irregular sizes (up to `max_chunk`).
fn chunked(data: &[u8], max_chunk: usize) -> ByteStream {
    let mut chunks = Vec::new();
    let mut pos = 0;
    let mut i = 0usize;
    while pos < data.len() {
        i += 1;
        let len = ((i * 7919) % max_chunk + 1).min(data.len() - pos);
        chunks.push(Ok(Bytes::copy_from_slice(&data[pos..pos + len])));
        pos += len;
    }
    Box::pin(stream::iter(chunks))
}

/// An endless stream of `chunk`-byte chunks that counts how many were pulled.
fn endless(chunk: usize, pulled: Arc<AtomicUsize>) -> ByteStream {
    let data = Bytes::from(vec![7u8; chunk]);
    Box::pin(stream::repeat_with(move || {
        pulled.fetch_add(1, Ordering::SeqCst);
        Ok(data.clone())
    }))
}

/// `len` bytes, then an input error.
fn failing_after(len: usize) -> ByteStream {
    let data = random_bytes(len, 5);
    let ok = chunked(&data, 100_000);
    let err = stream::iter(vec![Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "client went away",
    ))]);
    Box::pin(ok.chain(err))
}

/// `len` bytes, then nothing ever again.
fn stalling_after(len: usize) -> ByteStream {
    let data = random_bytes(len, 6);
    Box::pin(chunked(&data, 100_000).chain(stream::pending()))
}

async fn read_all(mut body: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.expect("body chunk"));
    }
    out
}

async fn get_all(
    store: &dyn BlobStore,
    key: &str,
    range: Option<ByteRange>,
) -> Result<(u64, Option<(u64, u64)>, Vec<u8>)> {
    let obj = store.get(key, range).await?;
    let (size, served, expected_len) = (obj.size, obj.range, obj.content_length());
    let data = read_all(obj.body).await;
    assert_eq!(
        data.len() as u64,
        expected_len,
        "content_length matches the body"
    );
    Ok((size, served, data))
}

/// Checks every range flavour against `data` stored under `key`.
async fn check_ranges(store: &dyn BlobStore, key: &str, data: &[u8]) {
    let n = data.len() as u64;
    let cases = [
        (
            ByteRange::From {
                start: 0,
                end: Some(0),
            },
            (0, 0),
        ),
        (
            ByteRange::From {
                start: 10,
                end: Some(19),
            },
            (10, 19),
        ),
        (
            ByteRange::From {
                start: 5,
                end: None,
            },
            (5, n - 1),
        ),
        (
            ByteRange::From {
                start: 3,
                end: Some(n + 100),
            },
            (3, n - 1),
        ),
        (ByteRange::Suffix(7), (n - 7, n - 1)),
        (ByteRange::Suffix(n + 50), (0, n - 1)),
    ];
    for (range, (first, last)) in cases {
        let (size, served, body) = get_all(store, key, Some(range)).await.expect("range get");
        assert_eq!(size, n, "{range:?}");
        assert_eq!(served, Some((first, last)), "{range:?}");
        assert_eq!(body, &data[first as usize..=last as usize], "{range:?}");
    }
    for range in [
        ByteRange::From {
            start: n,
            end: None,
        },
        ByteRange::From {
            start: n + 10,
            end: Some(n + 20),
        },
        ByteRange::Suffix(0),
    ] {
        let err = store
            .get(key, Some(range))
            .await
            .expect_err("unsatisfiable");
        assert!(
            matches!(err, BlobError::RangeNotSatisfiable),
            "{range:?}: {err:?}"
        );
    }
    let (size, served, body) = get_all(store, key, None).await.expect("full get");
    assert_eq!((size, served), (n, None));
    assert_eq!(body, data);
}
