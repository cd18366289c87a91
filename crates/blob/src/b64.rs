//! Streaming base64 for the legacy text bodies.
//!
//! The old `perry` CLI and the builder workers send and expect bodies that are one line of
//! standard base64 (alphabet `A–Z a–z 0–9 + /`, `=` padding, no line breaks). Tarballs and
//! artifacts can be large, so both directions work on streams of [`Bytes`] chunks and keep only
//! a constant amount of state between chunks: memory never grows with the body size.
//!
//! - [`decode_stream`]: strict decoder. Leading and trailing ASCII whitespace of the *whole* body
//!   is ignored (clients often append a newline); anything else that is not base64 — a foreign
//!   byte, whitespace between data, misplaced padding, non-canonical trailing bits, data after
//!   the padding, or a final incomplete quantum — fails the stream with an [`io::Error`] of kind
//!   [`io::ErrorKind::InvalidData`] whose message reads `invalid base64 at byte N: …` (`N` is the
//!   zero-based offset in the whole body). [`is_decode_error`] recognises such errors so callers
//!   can answer HTTP 400 instead of 500.
//! - [`encode_stream`]: one clean line, `=` padded, no trailing newline.
//! - [`encoded_len`]: the exact length of the encoding of `n` bytes (for `Content-Length`).
//!
//! Both stream adapters take any `Unpin` stream; a non-`Unpin` stream can be passed after
//! `Box::pin(stream)`. Errors of the input stream are passed through unchanged, and each adapter
//! ends after the first error it yields.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::Stream;

/// The error carried inside the [`io::Error`] produced by [`decode_stream`] for malformed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    offset: u64,
    reason: &'static str,
}

impl DecodeError {
    /// Zero-based offset, in the whole encoded body, of the first offending byte (for a truncated
    /// body: the offset just past the last base64 character).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// A short, stable description of what is wrong (e.g. `"unexpected whitespace"`).
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid base64 at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// True when `err` was produced by [`decode_stream`] because the body is not valid base64 (a
/// client error), as opposed to an error of the underlying input stream.
pub fn is_decode_error(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::InvalidData
        && err.get_ref().is_some_and(|inner| inner.is::<DecodeError>())
}

/// The length of the base64 encoding of `n` bytes, padding included (saturating at `u64::MAX`).
pub fn encoded_len(n: u64) -> u64 {
    n.div_ceil(3).saturating_mul(4)
}

/// Decodes a stream of base64 text chunks into the raw bytes it encodes.
///
/// Chunk boundaries may fall anywhere. At most three base64 characters are carried from one
/// chunk to the next, and trailing whitespace is tracked by position only, so memory is bounded
/// by the size of the current chunk. See the [module documentation](self) for the accepted
/// syntax. Empty output chunks are never yielded; an empty (or all-whitespace) body decodes to an
/// empty stream.
pub fn decode_stream<S>(input: S) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin
where
    S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
{
    DecodeStream {
        input,
        state: Decoder::default(),
        done: false,
    }
}

/// Encodes a stream of raw bytes as one line of standard, padded base64 (no newline).
///
/// Chunk boundaries may fall anywhere; at most two input bytes are carried between chunks.
/// Empty output chunks are never yielded; empty input gives an empty stream.
pub fn encode_stream<S>(input: S) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin
where
    S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
{
    EncodeStream {
        input,
        carry: [0; 2],
        carry_len: 0,
        done: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Incremental decoder state; independent of any stream so it can be tested directly.
#[derive(Debug, Default)]
struct Decoder {
    /// Offset in the whole body of the next byte to be fed.
    pos: u64,
    /// A non-whitespace byte has been seen (leading whitespace is over).
    started: bool,
    /// Offset of the first byte of a whitespace run that followed data. If more data follows,
    /// that whitespace was interior: an error.
    pending_ws: Option<u64>,
    /// Base64 characters of an incomplete quantum (at most 3).
    carry: [u8; 4],
    carry_len: usize,
    /// Number of `=` seen in the current (last) quantum.
    pad: u8,
    /// A padded quantum has been completed: only whitespace may follow.
    finished: bool,
}

fn is_b64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

impl Decoder {
    fn error(offset: u64, reason: &'static str) -> io::Error {
        DecodeError { offset, reason }.into_io()
    }

    /// Feeds one chunk and returns the bytes decoded from every quantum it completes.
    fn feed(&mut self, chunk: &[u8]) -> io::Result<Vec<u8>> {
        let base = self.pos;
        self.pos += chunk.len() as u64;

        // Split the chunk into [whitespace][data][whitespace]; anything else is an error.
        let mut i = 0;
        if !self.started || self.pending_ws.is_some() {
            while i < chunk.len() && chunk[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        let data_start = i;
        if data_start < chunk.len() {
            if let Some(ws) = self.pending_ws {
                return Err(Self::error(ws, "unexpected whitespace"));
            }
            self.started = true;
        }
        while i < chunk.len() && !chunk[i].is_ascii_whitespace() {
            i += 1;
        }
        let data = &chunk[data_start..i];
        if i < chunk.len() {
            // A whitespace run after data: fine if nothing but whitespace follows, ever.
            let ws_start = i;
            while i < chunk.len() && chunk[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < chunk.len() {
                return Err(Self::error(base + ws_start as u64, "unexpected whitespace"));
            }
            self.pending_ws = Some(base + ws_start as u64);
        }

        // Validate characters and padding placement byte by byte.
        let data_base = base + data_start as u64;
        let mut quantum_pos = self.carry_len;
        for (k, &b) in data.iter().enumerate() {
            let at = data_base + k as u64;
            if self.finished {
                return Err(Self::error(at, "data after padding"));
            }
            if b == b'=' {
                if quantum_pos < 2 {
                    return Err(Self::error(at, "misplaced padding"));
                }
                self.pad += 1;
            } else if !is_b64_char(b) {
                return Err(Self::error(at, "invalid character"));
            } else if self.pad > 0 {
                return Err(Self::error(at, "data after padding"));
            }
            quantum_pos += 1;
            if quantum_pos == 4 {
                quantum_pos = 0;
                if self.pad > 0 {
                    self.finished = true;
                }
            }
        }

        // Decode the complete quanta: first the one that finishes the carry, then the rest.
        let mut out = Vec::with_capacity((self.carry_len + data.len()) / 4 * 3);
        let mut rest = data;
        let carry_base = data_base - self.carry_len as u64;
        if self.carry_len > 0 {
            let take = (4 - self.carry_len).min(rest.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&rest[..take]);
            self.carry_len += take;
            rest = &rest[take..];
            if self.carry_len < 4 {
                return Ok(out);
            }
            let quantum = self.carry;
            self.carry_len = 0;
            decode_into(&quantum, carry_base, &mut out)?;
        }
        let full = rest.len() / 4 * 4;
        let rest_base = data_base + (data.len() - rest.len()) as u64;
        decode_into(&rest[..full], rest_base, &mut out)?;
        let tail = &rest[full..];
        self.carry[..tail.len()].copy_from_slice(tail);
        self.carry_len = tail.len();
        Ok(out)
    }

    /// Called at the end of the input: an incomplete final quantum is an error.
    fn finish(&self) -> io::Result<()> {
        if self.carry_len > 0 {
            let end = self.pending_ws.unwrap_or(self.pos);
            return Err(Self::error(
                end,
                "truncated input (incomplete final quantum)",
            ));
        }
        Ok(())
    }
}

/// Decodes whole quanta (`input.len() % 4 == 0`, characters and padding already validated)
/// and appends the bytes to `out`. `base` is the body offset of `input[0]`.
fn decode_into(input: &[u8], base: u64, out: &mut Vec<u8>) -> io::Result<()> {
    if input.is_empty() {
        return Ok(());
    }
    let start = out.len();
    out.resize(start + input.len() / 4 * 3, 0);
    match STANDARD.decode_slice(input, &mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            out.truncate(start);
            Err(io::Error::other("base64 output buffer too small"))
        }
        Err(base64::DecodeSliceError::DecodeError(err)) => {
            out.truncate(start);
            let (offset, reason) = match err {
                base64::DecodeError::InvalidByte(i, _) => (i, "invalid character"),
                base64::DecodeError::InvalidLastSymbol(i, _) => (i, "non-zero trailing bits"),
                base64::DecodeError::InvalidPadding => {
                    (input.len().saturating_sub(1), "bad padding")
                }
                base64::DecodeError::InvalidLength(i) => (i, "truncated input"),
            };
            Err(Decoder::error(base + offset as u64, reason))
        }
    }
}

struct DecodeStream<S> {
    input: S,
    state: Decoder,
    done: bool,
}

impl<S> Stream for DecodeStream<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.input).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => match this.state.feed(&chunk) {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Poll::Ready(Some(Ok(Bytes::from(out)))),
                    Err(err) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(err)));
                    }
                },
                Poll::Ready(Some(Err(err))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(this.state.finish().err().map(Err));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

struct EncodeStream<S> {
    input: S,
    carry: [u8; 2],
    carry_len: usize,
    done: bool,
}

impl<S> EncodeStream<S> {
    /// Encodes the complete 3-byte groups of carry + `chunk`, keeping the remainder.
    fn feed(&mut self, chunk: &[u8]) -> String {
        let mut out = String::with_capacity(((self.carry_len + chunk.len()) / 3 + 1) * 4);
        let mut rest = chunk;
        if self.carry_len > 0 {
            let take = (3 - self.carry_len).min(rest.len());
            let mut group = [0u8; 3];
            group[..self.carry_len].copy_from_slice(&self.carry[..self.carry_len]);
            group[self.carry_len..self.carry_len + take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.carry_len + take < 3 {
                self.carry[..self.carry_len + take]
                    .copy_from_slice(&group[..self.carry_len + take]);
                self.carry_len += take;
                return out;
            }
            STANDARD.encode_string(group, &mut out);
            self.carry_len = 0;
        }
        let full = rest.len() / 3 * 3;
        STANDARD.encode_string(&rest[..full], &mut out);
        let tail = &rest[full..];
        self.carry[..tail.len()].copy_from_slice(tail);
        self.carry_len = tail.len();
        out
    }

    fn finish(&mut self) -> String {
        let out = STANDARD.encode(&self.carry[..self.carry_len]);
        self.carry_len = 0;
        out
    }
}

impl<S> Stream for EncodeStream<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.input).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = this.feed(&chunk);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let out = this.finish();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{stream, StreamExt};

    /// Deterministic pseudo-random bytes (xorshift), no extra crate needed.
    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn chunked(data: &[u8], cuts: &[usize]) -> Vec<io::Result<Bytes>> {
        let mut out = Vec::new();
        let mut prev = 0;
        for &c in cuts {
            out.push(Ok(Bytes::copy_from_slice(&data[prev..c])));
            prev = c;
        }
        out.push(Ok(Bytes::copy_from_slice(&data[prev..])));
        out
    }

    async fn collect<S>(s: S) -> io::Result<Vec<u8>>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        let mut s = s;
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            let chunk = chunk?;
            assert!(!chunk.is_empty(), "empty chunks must not be yielded");
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    async fn decode_chunks(chunks: Vec<io::Result<Bytes>>) -> io::Result<Vec<u8>> {
        collect(decode_stream(stream::iter(chunks))).await
    }

    async fn decode(text: &[u8]) -> io::Result<Vec<u8>> {
        decode_chunks(vec![Ok(Bytes::copy_from_slice(text))]).await
    }

    async fn encode_chunks(chunks: Vec<io::Result<Bytes>>) -> Vec<u8> {
        collect(encode_stream(stream::iter(chunks)))
            .await
            .expect("encode")
    }

    fn err_offset(err: &io::Error) -> u64 {
        assert!(is_decode_error(err), "not a decode error: {err}");
        err.get_ref()
            .and_then(|e| e.downcast_ref::<DecodeError>())
            .expect("DecodeError")
            .offset()
    }

    #[tokio::test]
    async fn round_trip_every_split_of_every_small_length() {
        for len in 0..=20usize {
            let data = random_bytes(len, 7 + len as u64);
            let expected = STANDARD.encode(&data);
            // Every single split point, and every pair of split points.
            for a in 0..=len {
                for b in a..=len {
                    let enc = encode_chunks(chunked(&data, &[a, b])).await;
                    assert_eq!(enc, expected.as_bytes(), "encode len={len} cuts={a},{b}");
                }
            }
            let elen = expected.len();
            for a in 0..=elen {
                for b in a..=elen {
                    let dec = decode_chunks(chunked(expected.as_bytes(), &[a, b]))
                        .await
                        .expect("decode");
                    assert_eq!(dec, data, "decode len={len} cuts={a},{b}");
                }
            }
            assert_eq!(encoded_len(len as u64), elen as u64);
        }
    }

    #[tokio::test]
    async fn round_trip_one_byte_chunks_and_large_random() {
        let data = random_bytes(100_003, 42);
        let expected = STANDARD.encode(&data);
        let one_byte: Vec<_> = data
            .iter()
            .map(|b| Ok(Bytes::copy_from_slice(&[*b])))
            .collect();
        assert_eq!(encode_chunks(one_byte).await, expected.as_bytes());
        let one_char: Vec<_> = expected
            .bytes()
            .map(|b| Ok(Bytes::copy_from_slice(&[b])))
            .collect();
        assert_eq!(decode_chunks(one_char).await.expect("decode"), data);

        // Irregular chunk sizes, both directions.
        let cuts: Vec<usize> = (1..)
            .scan(0usize, |acc, i| {
                *acc += (i * 7919) % 4099 + 1;
                Some(*acc)
            })
            .take_while(|&c| c < data.len())
            .collect();
        let enc = encode_chunks(chunked(&data, &cuts)).await;
        assert_eq!(enc, expected.as_bytes());
        let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < expected.len()).collect();
        let dec = decode_chunks(chunked(expected.as_bytes(), &cuts))
            .await
            .expect("decode");
        assert_eq!(dec, data);
        assert_eq!(encoded_len(data.len() as u64), expected.len() as u64);
    }

    #[tokio::test]
    async fn leading_and_trailing_whitespace_is_ignored() {
        assert_eq!(
            decode(b"  \r\n\tSGVsbG8=\r\n  ").await.expect("decode"),
            b"Hello"
        );
        // Whitespace split over chunks and in chunks of its own.
        let chunks = vec![
            Ok(Bytes::from_static(b"\n ")),
            Ok(Bytes::from_static(b" SGVs")),
            Ok(Bytes::from_static(b"bG8=\r")),
            Ok(Bytes::from_static(b"\n")),
            Ok(Bytes::from_static(b"   ")),
        ];
        assert_eq!(decode_chunks(chunks).await.expect("decode"), b"Hello");
        assert_eq!(decode(b"QUJD\n").await.expect("decode"), b"ABC");
    }

    #[tokio::test]
    async fn interior_whitespace_is_rejected() {
        let err = decode(b"SGVs\nbG8=").await.expect_err("interior newline");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err_offset(&err), 4);
        assert!(
            err.to_string().starts_with("invalid base64 at byte 4"),
            "{err}"
        );

        // The whitespace ends one chunk; data follows in the next one.
        let chunks = vec![
            Ok(Bytes::from_static(b"SGVs\r\n")),
            Ok(Bytes::from_static(b"bG8=")),
        ];
        let err = decode_chunks(chunks)
            .await
            .expect_err("interior newline across chunks");
        assert_eq!(err_offset(&err), 4);

        // Whitespace in a chunk of its own, between data.
        let chunks = vec![
            Ok(Bytes::from_static(b"SGVs")),
            Ok(Bytes::from_static(b" ")),
            Ok(Bytes::from_static(b"bG8=")),
        ];
        assert_eq!(
            err_offset(&decode_chunks(chunks).await.expect_err("space")),
            4
        );
        // Wrapped (MIME-style) base64 is not accepted either.
        assert!(decode(b"QUJD\r\nQUJD").await.is_err());
    }

    #[tokio::test]
    async fn bad_characters_and_padding_are_rejected() {
        let err = decode(b"SGV*bG8=").await.expect_err("bad char");
        assert_eq!(err_offset(&err), 3);
        assert_eq!(
            err.to_string(),
            "invalid base64 at byte 3: invalid character"
        );
        // URL-safe alphabet is not the standard one.
        assert_eq!(err_offset(&decode(b"ab-_").await.expect_err("url-safe")), 2);
        // Padding in the wrong place, data after padding, too much padding.
        assert_eq!(err_offset(&decode(b"S===").await.expect_err("pad at 1")), 1);
        assert_eq!(
            err_offset(&decode(b"SG=V").await.expect_err("data after pad")),
            3
        );
        assert_eq!(
            err_offset(&decode(b"SGVsbG8=QUJD").await.expect_err("after pad")),
            8
        );
        assert_eq!(
            err_offset(&decode(b"QUJD====").await.expect_err("extra pad")),
            4
        );
        assert!(decode(b"SGVsbG8==").await.is_err());
        // Non-canonical trailing bits ("QR==" encodes the same byte as "QQ==").
        assert_eq!(
            err_offset(&decode(b"QUJDQR==").await.expect_err("trailing bits")),
            5
        );
        // Padding split across chunks is fine; data after it in the next chunk is not.
        let ok = vec![Ok(Bytes::from_static(b"QQ=")), Ok(Bytes::from_static(b"="))];
        assert_eq!(decode_chunks(ok).await.expect("decode"), b"A");
        let bad = vec![
            Ok(Bytes::from_static(b"QQ==")),
            Ok(Bytes::from_static(b"QQ==")),
        ];
        assert_eq!(
            err_offset(&decode_chunks(bad).await.expect_err("after pad")),
            4
        );
    }

    #[tokio::test]
    async fn truncated_input_is_rejected() {
        for text in [&b"S"[..], b"SG", b"SGV", b"SGVsbG8", b"SG=", b"SGVsbG8\n"] {
            let err = decode(text).await.expect_err("truncated");
            assert!(is_decode_error(&err));
            assert!(err.to_string().contains("truncated"), "{err}");
        }
        let err = decode(b"SGVsbG8\n").await.expect_err("truncated");
        assert_eq!(err_offset(&err), 7);
    }

    #[tokio::test]
    async fn empty_input_gives_empty_output() {
        assert_eq!(decode_chunks(vec![]).await.expect("decode"), b"");
        assert_eq!(decode(b"").await.expect("decode"), b"");
        assert_eq!(decode(b" \r\n\t ").await.expect("decode"), b"");
        assert_eq!(encode_chunks(vec![]).await, b"");
        assert_eq!(
            encode_chunks(vec![Ok(Bytes::new()), Ok(Bytes::new())]).await,
            b""
        );
        assert_eq!(encoded_len(0), 0);
        assert_eq!(encoded_len(u64::MAX), u64::MAX);
    }

    #[tokio::test]
    async fn agrees_with_base64_standard_on_random_texts() {
        // Differential check: short random texts over a small alphabet that hits every rule.
        const ALPHABET: &[u8] = b"AQgw+/=  \nR";
        let noise = random_bytes(60_000, 99);
        let mut accepted = 0;
        for (n, case) in noise.chunks(12).enumerate() {
            let len = (case[0] % 12) as usize;
            let text: Vec<u8> = case[..len]
                .iter()
                .map(|b| ALPHABET[*b as usize % ALPHABET.len()])
                .collect();
            let expected = STANDARD.decode(text.trim_ascii());
            let cut = n % (text.len() + 1);
            let got = decode_chunks(chunked(&text, &[cut])).await;
            match (&expected, &got) {
                (Ok(e), Ok(g)) => {
                    assert_eq!(e, g, "{:?}", String::from_utf8_lossy(&text));
                    accepted += 1;
                }
                (Err(_), Err(err)) => assert!(is_decode_error(err)),
                _ => panic!(
                    "disagree on {:?}: {expected:?} vs {got:?}",
                    String::from_utf8_lossy(&text)
                ),
            }
        }
        assert!(accepted > 100, "too few valid cases: {accepted}");
    }

    #[tokio::test]
    async fn input_errors_pass_through_and_end_the_stream() {
        let chunks = vec![
            Ok(Bytes::from_static(b"QUJD")),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer gone")),
            Ok(Bytes::from_static(b"QUJD")),
        ];
        let mut s = decode_stream(stream::iter(chunks));
        assert_eq!(s.next().await.expect("item").expect("ok"), &b"ABC"[..]);
        let err = s.next().await.expect("item").expect_err("error");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(!is_decode_error(&err));
        assert!(s.next().await.is_none());

        let other = io::Error::new(io::ErrorKind::InvalidData, "something else");
        assert!(!is_decode_error(&other));
    }
}
