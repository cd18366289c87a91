use sha2::{Digest, Sha256};

use super::*;
use crate::{BlobStore, PutResult};

#[test]
fn put_result_hex_and_debug_without_secrets() {
    let r = PutResult {
        size: 0,
        sha256: Sha256::digest(b"").into(),
    };
    assert_eq!(
        r.sha256_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let settings = S3Settings {
        bucket: "b".into(),
        endpoint: Some("http://127.0.0.1:1".into()),
        region: "us-east-1".into(),
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "super-secret-value".into(),
        key_prefix: "hub".into(),
        checksum_when_required: true,
    };
    assert!(!format!("{settings:?}").contains("super-secret-value"));
    let store = S3BlobStore::new(settings).expect("store");
    let dbg = format!("{store:?}");
    assert!(!dbg.contains("super-secret-value"), "{dbg}");
    assert!(dbg.contains("hub/"), "{dbg}");
    assert_eq!(store.backend(), "s3");
}
