//! Settings and small helpers shared by the tests: logging, blob and service settings, bytes
//! into a store, SHA-256 as the protocol carries it.

use std::sync::Arc;

use blob::{BlobStore, PutOptions};
use shared::config::BlobConfig;

/// Log to the test output (filter from `RUST_LOG`, default `warn`); once per process.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Blob settings for a filesystem store in `dir`.
pub fn fs_blob_config(dir: &std::path::Path) -> BlobConfig {
    BlobConfig {
        backend: shared::config::BlobBackend::Fs,
        dir: dir.to_path_buf(),
        s3_bucket: String::new(),
        s3_endpoint: None,
        s3_region: "us-east-1".into(),
        s3_access_key_id: String::new(),
        s3_secret_access_key: shared::config::Secret::default(),
        s3_key_prefix: String::new(),
        s3_checksum_when_required: false,
        s3_presign_downloads: false,
    }
}

/// Ingest settings for tests.
pub fn ingest_settings() -> ingest::Settings {
    use clap::Parser;
    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        s: ingest::Settings,
    }
    P::parse_from(["test"]).s
}

/// Finisher settings for tests (fast sweeps).
pub fn finisher_settings() -> finisher::Settings {
    use clap::Parser;
    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        s: finisher::Settings,
    }
    P::parse_from(["test", "--sweep-secs", "1"]).s
}

/// Put bytes into a store.
pub async fn put_bytes(store: &Arc<dyn BlobStore>, key: &str, data: Vec<u8>) {
    store
        .put(
            key,
            blob::stream_from_bytes(data),
            PutOptions::new(u64::MAX),
        )
        .await
        .expect("put");
}

/// SHA-256 of `data`, lower-case hex (as `x-artifact-sha256` carries it).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}
