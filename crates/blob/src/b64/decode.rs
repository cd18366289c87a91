//! The strict streaming decoder behind [`decode_stream`].

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

/// Decodes a stream of base64 text chunks into the raw bytes it encodes.
///
/// Chunk boundaries may fall anywhere. At most three base64 characters are carried from one
/// chunk to the next, and trailing whitespace is tracked by position only, so memory is bounded
/// by the size of the current chunk. See the [module documentation](super) for the accepted
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
        let mut interior_ws = None;
        if i < chunk.len() {
            // A whitespace run after data: fine if nothing but whitespace follows, ever.
            let ws_start = i;
            while i < chunk.len() && chunk[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < chunk.len() {
                // Reported after the data before it, which may hold an earlier error: the
                // offset must not depend on where the chunks were cut.
                interior_ws = Some(base + ws_start as u64);
            } else {
                self.pending_ws = Some(base + ws_start as u64);
            }
        }
        let out = self.consume(data, base + data_start as u64)?;
        match interior_ws {
            Some(at) => Err(Self::error(at, "unexpected whitespace")),
            None => Ok(out),
        }
    }

    /// Validates and decodes `data` (no whitespace), which starts at `data_base` in the body.
    fn consume(&mut self, data: &[u8], data_base: u64) -> io::Result<Vec<u8>> {
        let (valid, invalid) = self.validate(data, data_base);
        // The valid prefix is decoded first: a non-canonical padded quantum in it is an
        // earlier error than the invalid byte after it.
        let out = self.decode_valid(&data[..valid], data_base)?;
        match invalid {
            Some(err) => Err(err),
            None => Ok(out),
        }
    }

    /// Checks characters and padding placement byte by byte: the length of the valid prefix of
    /// `data`, and the error of the byte after it, if any.
    fn validate(&mut self, data: &[u8], data_base: u64) -> (usize, Option<io::Error>) {
        let mut quantum_pos = self.carry_len;
        for (k, &b) in data.iter().enumerate() {
            let at = data_base + k as u64;
            let reason = if self.finished {
                Some("data after padding")
            } else if b == b'=' {
                (quantum_pos < 2).then_some("misplaced padding")
            } else if !is_b64_char(b) {
                Some("invalid character")
            } else if self.pad > 0 {
                Some("data after padding")
            } else {
                None
            };
            if let Some(reason) = reason {
                return (k, Some(Self::error(at, reason)));
            }
            if b == b'=' {
                self.pad += 1;
            }
            quantum_pos += 1;
            if quantum_pos == 4 {
                quantum_pos = 0;
                if self.pad > 0 {
                    self.finished = true;
                }
            }
        }
        (data.len(), None)
    }

    /// Decodes validated `data`, which starts at `data_base` in the body.
    fn decode_valid(&mut self, data: &[u8], data_base: u64) -> io::Result<Vec<u8>> {
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
