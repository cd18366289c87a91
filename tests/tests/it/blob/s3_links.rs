//! The S3 store's presigned links, missing keys and idempotent deletes, and the
//! checksum-when-required mode, on a fresh bucket of the s3s-fs test server per test.

use std::time::Duration;

use blob::{
    stream_from_bytes, BlobError, BlobStore, ByteRange, PutOptions, S3BlobStore, S3Settings,
    S3_PART_SIZE,
};
use tokio::io::AsyncWriteExt;

use super::s3::{drop_bucket, s3_endpoint, s3_store};
use super::{chunked, get_all, random_bytes};

/// A raw HTTP/1.1 GET (no HTTP client crate): status, headers (lowercased names), body.
async fn http_get(url: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::AsyncReadExt as _;
    let rest = url.strip_prefix("http://").expect("http URL");
    let slash = rest.find('/').expect("path");
    let (authority, target) = rest.split_at(slash);
    let mut tcp = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    let req = format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size line");
            let size_hex = String::from_utf8_lossy(&rest[..eol]).to_string();
            let size = usize::from_str_radix(size_hex.split(';').next().unwrap_or("").trim(), 16)
                .expect("size");
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    (status, headers, body)
}

#[tokio::test]
async fn s3_presigned_url_works_and_tampering_is_rejected() {
    let store = s3_store("hub").await;
    let data = b"presigned bytes \x00\x01\x02".to_vec();
    store
        .put(
            "artifacts/p",
            stream_from_bytes(data.clone()),
            PutOptions::new(1000),
        )
        .await
        .expect("put");
    let url = store
        .presign_get("artifacts/p", Duration::from_secs(300), "my app.tar.gz")
        .await
        .expect("presign")
        .expect("s3 presigns");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(url.contains("response-content-disposition="), "{url}");
    let (status, _headers, body) = http_get(&url).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, data);

    // Flip the last hex digit of the signature.
    let mut tampered = url.clone();
    let sig = tampered.find("X-Amz-Signature=").expect("sig") + "X-Amz-Signature=".len();
    let end = tampered[sig..]
        .find('&')
        .map_or(tampered.len(), |i| sig + i);
    let last = tampered.as_bytes()[end - 1];
    let flipped = if last == b'0' { "1" } else { "0" };
    tampered.replace_range(end - 1..end, flipped);
    let (status, _, _) = http_get(&tampered).await;
    assert_eq!(status, 403);

    // Tampering with a signed parameter (the disposition) is rejected too.
    let (status, _, _) = http_get(&url.replacen("my%20app", "other", 1)).await;
    assert_eq!(status, 403);

    // An expired URL is rejected.
    let short = store
        .presign_get("artifacts/p", Duration::from_secs(1), "p")
        .await
        .expect("presign")
        .expect("url");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, _) = http_get(&short).await;
    assert_eq!(status, 403);
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_not_found_and_delete_idempotent() {
    let store = s3_store("").await;
    assert!(matches!(
        store.get("artifacts/none", None).await,
        Err(BlobError::NotFound)
    ));
    assert!(matches!(
        store
            .get(
                "artifacts/none",
                Some(ByteRange::From {
                    start: 0,
                    end: Some(1)
                })
            )
            .await,
        Err(BlobError::NotFound)
    ));
    assert!(matches!(
        store
            .get("artifacts/none", Some(ByteRange::Suffix(0)))
            .await,
        Err(BlobError::NotFound)
    ));
    assert_eq!(store.size("artifacts/none").await.expect("size"), None);
    store
        .delete("artifacts/none")
        .await
        .expect("delete missing");
    store
        .put(
            "artifacts/x",
            stream_from_bytes(&b"x"[..]),
            PutOptions::new(1),
        )
        .await
        .expect("put");
    store.delete("artifacts/x").await.expect("delete");
    store.delete("artifacts/x").await.expect("delete again");
    assert!(matches!(
        store.get("artifacts/x", None).await,
        Err(BlobError::NotFound)
    ));
    assert!(store.list("").await.expect("list").is_empty());
    assert!(matches!(
        store.get("../x", None).await,
        Err(BlobError::InvalidKey(_))
    ));
    assert!(matches!(
        store
            .put("a//b", stream_from_bytes(&b"x"[..]), PutOptions::new(1))
            .await,
        Err(BlobError::InvalidKey(_))
    ));
    drop_bucket(&store).await;

    // A missing bucket fails the readiness probe.
    let missing = S3BlobStore::new(S3Settings {
        bucket: format!("perry-test-missing-{}", uuid::Uuid::new_v4().simple()),
        endpoint: Some(s3_endpoint()),
        region: "us-east-1".into(),
        access_key_id: "perry".into(),
        secret_access_key: "perrysecret".into(),
        key_prefix: String::new(),
        checksum_when_required: true,
    })
    .expect("store");
    assert!(missing.check().await.is_err());
}

#[tokio::test]
async fn s3_checksum_when_required_mode_round_trips() {
    let mut store = s3_store("").await;
    let settings = S3Settings {
        bucket: store.bucket().to_owned(),
        endpoint: Some(s3_endpoint()),
        region: "us-east-1".into(),
        access_key_id: "perry".into(),
        secret_access_key: "perrysecret".into(),
        key_prefix: String::new(),
        checksum_when_required: true,
    };
    store = S3BlobStore::new(settings).expect("store");
    let data = random_bytes(S3_PART_SIZE + 77, 16);
    store
        .put(
            "tarballs/w",
            chunked(&data, 1 << 20),
            PutOptions::new(1 << 30),
        )
        .await
        .expect("put");
    assert!(get_all(&store, "tarballs/w", None).await.expect("get").2 == data);
    drop_bucket(&store).await;
}
