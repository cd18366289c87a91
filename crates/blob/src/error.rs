//! The error type of the blob store.

use std::io;

/// Everything that can go wrong in the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The body exceeded [`PutOptions::max_bytes`](crate::PutOptions::max_bytes) (HTTP 413).
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: u64,
    },
    /// The body does not hash to
    /// [`PutOptions::expected_sha256`](crate::PutOptions::expected_sha256) (HTTP 400).
    #[error("body does not match the declared SHA-256")]
    ShaMismatch,
    /// No object under that key (HTTP 404).
    #[error("blob not found")]
    NotFound,
    /// The key (or list prefix) is not an acceptable storage key; a bug in the caller.
    #[error("invalid blob key: {0}")]
    InvalidKey(String),
    /// The input stream of a put failed: the client went away, or the body was malformed (see
    /// [`crate::b64::is_decode_error`] to tell a client error from a transport one).
    #[error("reading the body failed: {0}")]
    Source(#[source] io::Error),
    /// Local I/O failed (filesystem store).
    #[error("blob storage I/O error: {0}")]
    Io(#[from] io::Error),
    /// The S3 backend failed or answered unexpectedly.
    #[error("blob storage backend error: {0}")]
    Backend(String),
    /// The backend does not implement an operation (an S3-compatible server without
    /// `ListMultipartUploads`, for instance).
    #[error("not supported by the blob storage backend: {0}")]
    Unsupported(&'static str),
    /// The requested range selects no byte of the object (HTTP 416).
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable,
}

/// Result alias of this crate.
pub type Result<T, E = BlobError> = std::result::Result<T, E>;
