//! Streaming base64 for the legacy text bodies.
//!
//! The old `perry` CLI and the builder workers send and expect bodies that are one line of
//! standard base64 (alphabet `A–Z a–z 0–9 + /`, `=` padding, no line breaks). Tarballs and
//! artifacts can be large, so both directions work on streams of [`Bytes`](bytes::Bytes) chunks
//! and keep only a constant amount of state between chunks: memory never grows with the body
//! size.
//!
//! - [`decode_stream`]: strict decoder. Leading and trailing ASCII whitespace of the *whole* body
//!   is ignored (clients often append a newline); anything else that is not base64 — a foreign
//!   byte, whitespace between data, misplaced padding, non-canonical trailing bits, data after
//!   the padding, or a final incomplete quantum — fails the stream with an
//!   [`io::Error`](std::io::Error) of kind [`InvalidData`](std::io::ErrorKind::InvalidData)
//!   whose message reads `invalid base64 at byte N: …` (`N` is the zero-based offset in the
//!   whole body). [`is_decode_error`] recognises such errors so callers can answer HTTP 400
//!   instead of 500.
//! - [`encode_stream`]: one clean line, `=` padded, no trailing newline.
//! - [`encoded_len`]: the exact length of the encoding of `n` bytes (for `Content-Length`).
//!
//! Both stream adapters take any `Unpin` stream; a non-`Unpin` stream can be passed after
//! `Box::pin(stream)`. Errors of the input stream are passed through unchanged, and each adapter
//! ends after the first error it yields.
//!
//! The decoder lives in `decode`, the encoder in `encode`.

mod decode;
mod encode;

pub use decode::{decode_stream, is_decode_error, DecodeError};
pub use encode::encode_stream;

/// The length of the base64 encoding of `n` bytes, padding included (saturating at `u64::MAX`).
pub fn encoded_len(n: u64) -> u64 {
    n.div_ceil(3).saturating_mul(4)
}

#[cfg(test)]
mod tests;
