//! Byte ranges: the HTTP `Range` a client asks for and the `Content-Range` S3 answers with.

use crate::{BlobError, Result};

/// A byte range requested from [`BlobStore::get`](crate::BlobStore::get), as in an HTTP
/// `Range: bytes=…` header.
///
/// Resolution against the object size follows RFC 9110: an `end` beyond the object is clamped to
/// its last byte, a suffix longer than the object selects the whole object, and a range that
/// selects no byte at all (start at or past the end, suffix of zero, any range of an empty
/// object) is [`BlobError::RangeNotSatisfiable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=start-end` (both inclusive), or `bytes=start-` when `end` is `None`.
    From {
        /// First byte offset.
        start: u64,
        /// Last byte offset, inclusive; `None` means "to the end".
        end: Option<u64>,
    },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses an HTTP `Range` header value holding one byte range (`bytes=0-99`, `bytes=100-`,
    /// `bytes=-500`). Returns `None` for anything else (other units, several ranges, syntax
    /// errors, `end < start`); per RFC 9110 a server then ignores the header and serves the whole
    /// object.
    pub fn parse(header: &str) -> Option<Self> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        if first.is_empty() {
            return number(last).map(Self::Suffix);
        }
        let start = number(first)?;
        if last.is_empty() {
            return Some(Self::From { start, end: None });
        }
        let end = number(last)?;
        (end >= start).then_some(Self::From {
            start,
            end: Some(end),
        })
    }

    /// The inclusive `(first, last)` byte offsets this range selects in an object of `size`
    /// bytes, or [`BlobError::RangeNotSatisfiable`].
    pub fn resolve(self, size: u64) -> Result<(u64, u64)> {
        if size == 0 {
            return Err(BlobError::RangeNotSatisfiable);
        }
        let last = size - 1;
        match self {
            Self::From { start, end } => {
                let end = end.unwrap_or(last).min(last);
                if start > end {
                    return Err(BlobError::RangeNotSatisfiable);
                }
                Ok((start, end))
            }
            Self::Suffix(0) => Err(BlobError::RangeNotSatisfiable),
            Self::Suffix(n) => Ok((size.saturating_sub(n), last)),
        }
    }

    /// The HTTP `Range` header value for this range (`bytes=…`).
    pub fn to_header(self) -> String {
        match self {
            Self::From { start, end: None } => format!("bytes={start}-"),
            Self::From {
                start,
                end: Some(end),
            } => format!("bytes={start}-{end}"),
            Self::Suffix(n) => format!("bytes=-{n}"),
        }
    }
}

/// Parses `Content-Range: bytes first-last/size` into `(size, (first, last))`.
pub(crate) fn parse_content_range(value: &str) -> Option<(u64, (u64, u64))> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, size) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let size: u64 = size.trim().parse().ok()?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    (first <= last && last < size).then_some((size, (first, last)))
}

#[cfg(test)]
mod tests;
