//! Storage key rules, checked on every operation of both stores.

use crate::{BlobError, Result};

/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// Checks a storage key: 1 to [`MAX_KEY_LEN`] bytes of `[A-Za-z0-9._/-]`, `/`-separated
/// segments that are non-empty and do not start with `.` (so no leading or trailing `/`, no
/// `//`, no `.` or `..` segment, and nothing that could reach the filesystem store's `.tmp`).
pub fn validate_key(key: &str) -> Result<()> {
    let invalid = |why: &str| Err(BlobError::InvalidKey(format!("{why}: {key:?}")));
    if key.is_empty() {
        return invalid("empty key");
    }
    if key.len() > MAX_KEY_LEN {
        return Err(BlobError::InvalidKey(format!(
            "key longer than {MAX_KEY_LEN} bytes"
        )));
    }
    if !key.bytes().all(is_key_byte) {
        return invalid("key has a character outside [A-Za-z0-9._/-]");
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg.starts_with('.'))
    {
        return invalid("key has an empty segment or one starting with '.'");
    }
    Ok(())
}

/// Checks a list prefix: like [`validate_key`], except that it may be empty and its last
/// (partial) segment may be empty.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let invalid = || Err(BlobError::InvalidKey(format!("invalid prefix: {prefix:?}")));
    if prefix.len() > MAX_KEY_LEN || !prefix.bytes().all(is_key_byte) {
        return invalid();
    }
    if let Some((dirs, _partial)) = prefix.rsplit_once('/') {
        if dirs
            .split('/')
            .any(|seg| seg.is_empty() || seg.starts_with('.'))
        {
            return invalid();
        }
    }
    Ok(())
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/')
}

#[cfg(test)]
mod tests;
