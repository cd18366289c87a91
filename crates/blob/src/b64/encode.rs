//! The streaming encoder behind [`encode_stream`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::Stream;

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
