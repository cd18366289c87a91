//! Accounting for the bytes of one put: counted against the limit, hashed, checked at the end.

use sha2::{Digest, Sha256};

use crate::{BlobError, PutResult, Result};

/// Counts, limits and hashes the bytes of one put.
pub(crate) struct Meter {
    hasher: Sha256,
    size: u64,
    max: u64,
}

impl Meter {
    pub(crate) fn new(max: u64) -> Self {
        Self {
            hasher: Sha256::new(),
            size: 0,
            max,
        }
    }

    /// Accounts for one chunk; fails as soon as the total exceeds the limit.
    pub(crate) fn add(&mut self, chunk: &[u8]) -> Result<()> {
        self.size = self.size.saturating_add(chunk.len() as u64);
        if self.size > self.max {
            return Err(BlobError::TooLarge { limit: self.max });
        }
        self.hasher.update(chunk);
        Ok(())
    }

    /// The final size and digest, checked against the declared digest.
    pub(crate) fn finish(&self, expected: Option<[u8; 32]>) -> Result<PutResult> {
        let sha256: [u8; 32] = self.hasher.clone().finalize().into();
        if expected.is_some_and(|e| e != sha256) {
            return Err(BlobError::ShaMismatch);
        }
        Ok(PutResult {
            size: self.size,
            sha256,
        })
    }
}
