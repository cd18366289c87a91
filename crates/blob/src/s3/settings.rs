//! [`S3Settings`] for building an [`S3BlobStore`](super::S3BlobStore).

use std::fmt;

/// Connection settings of [`S3BlobStore`](super::S3BlobStore).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Custom endpoint (`http://127.0.0.1:8014`, MinIO, Garage, …); enables path-style
    /// addressing. `None` means AWS itself.
    pub endpoint: Option<String>,
    /// Region, e.g. `us-east-1` (any value for most self-hosted stores).
    pub region: String,
    /// Static access key id.
    pub access_key_id: String,
    /// Static secret access key. Never logged.
    pub secret_access_key: String,
    /// Prepended to every key (a `/` is added if missing; leading `/` removed). Empty: none.
    pub key_prefix: String,
    /// Only send/validate checksums when an operation requires them, for stores that reject or
    /// corrupt aws-chunked uploads (Garage, s3rver).
    pub checksum_when_required: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("key_prefix", &self.key_prefix)
            .field("checksum_when_required", &self.checksum_when_required)
            .finish()
    }
}
