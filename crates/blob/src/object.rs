//! What goes into a put, what comes out of it, and what a get returns.

use std::fmt;

use crate::ByteStream;

/// Limits and expectations for one [`BlobStore::put`](crate::BlobStore::put).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOptions {
    /// The put fails with [`BlobError::TooLarge`](crate::BlobError::TooLarge) as soon as more
    /// than this many bytes arrive.
    pub max_bytes: u64,
    /// When set, the put fails with [`BlobError::ShaMismatch`](crate::BlobError::ShaMismatch)
    /// unless the body hashes to this.
    pub expected_sha256: Option<[u8; 32]>,
}

impl PutOptions {
    /// A size limit and no declared digest.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            expected_sha256: None,
        }
    }

    /// The same options with a declared SHA-256 digest.
    pub fn with_sha256(self, sha256: [u8; 32]) -> Self {
        Self {
            expected_sha256: Some(sha256),
            ..self
        }
    }
}

/// What a successful [`BlobStore::put`](crate::BlobStore::put) stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutResult {
    /// Number of bytes stored.
    pub size: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: [u8; 32],
}

impl PutResult {
    /// The SHA-256 digest as 64 lowercase hex characters.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// An object being read from the store.
pub struct BlobObject {
    /// Total size of the stored object (not of the served range).
    pub size: u64,
    /// The inclusive range served, when a range was requested and applied; `None` when `body`
    /// is the whole object. HTTP: `206` with `Content-Range: bytes {first}-{last}/{size}`.
    pub range: Option<(u64, u64)>,
    /// The bytes: the whole object, or only the served range.
    pub body: ByteStream,
}

impl BlobObject {
    /// Number of bytes `body` yields (for `Content-Length`).
    pub fn content_length(&self) -> u64 {
        match self.range {
            Some((first, last)) => last.saturating_sub(first).saturating_add(1),
            None => self.size,
        }
    }
}

impl fmt::Debug for BlobObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobObject")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}
