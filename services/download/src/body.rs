//! Response bodies and their headers.
//!
//! The existing CLI and workers expect one line of base64 as `text/plain` (PROTOCOL.md §2.3,
//! A3); a client that sends `Accept: application/octet-stream` gets the raw bytes, and may ask
//! for one byte range. Either way the body is streamed from the blob store chunk by chunk
//! (base64 is encoded on the fly), so memory does not grow with the object size, and
//! `Content-Length` is known up front ([`blob::b64::encoded_len`] for base64).
//!
//! [`stream`] and [`response`] are the exact code path of the handlers, public so that a
//! benchmark can measure it without a database.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::Response,
};
use blob::{BlobObject, ByteRange, ByteStream};
use futures_util::{future::BoxFuture, Stream, StreamExt};

use crate::audit::Completion;

/// Header carrying the SHA-256 (hex) of an artifact's bytes.
pub const ARTIFACT_SHA256: HeaderName = HeaderName::from_static("x-artifact-sha256");

/// Header carrying the SHA-256 (hex) of a job's input tarball.
pub const TARBALL_SHA256: HeaderName = HeaderName::from_static("x-tarball-sha256");

/// How a body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One line of standard padded base64, `text/plain` (the default; old clients rely on it).
    Base64,
    /// The bytes themselves, `application/octet-stream`; byte ranges allowed.
    Raw,
}

impl Encoding {
    /// [`Encoding::Raw`] when the request's `Accept` asks for `application/octet-stream`.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let raw = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(wants_raw);
        if raw {
            Self::Raw
        } else {
            Self::Base64
        }
    }

    /// The `Content-Type` of a body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Base64 => "text/plain",
            Self::Raw => "application/octet-stream",
        }
    }
}

/// Whether an `Accept` value names `application/octet-stream` with a non-zero quality that is
/// not below the one given to `text/plain`. Wildcards keep the legacy base64 body.
pub fn wants_raw(accept: &str) -> bool {
    let (mut raw, mut text) = (None::<f32>, None::<f32>);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        let slot = match media.as_str() {
            "application/octet-stream" => &mut raw,
            "text/plain" => &mut text,
            _ => continue,
        };
        *slot = Some(slot.map_or(quality, |q| q.max(quality)));
    }
    matches!(raw, Some(q) if q > 0.0 && q >= text.unwrap_or(0.0))
}

/// The byte range to serve: only raw bodies honour `Range`; a header that is not one valid
/// byte range is ignored (RFC 9110), and the whole object is served.
pub fn requested_range(headers: &HeaderMap, encoding: Encoding) -> Option<ByteRange> {
    if encoding != Encoding::Raw {
        return None;
    }
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    ByteRange::parse(value)
}

/// The file name sent in `Content-Disposition`: every character outside `[A-Za-z0-9._-]`
/// becomes `_` (PROTOCOL.md §3.10); an empty name becomes `artifact`.
pub fn attachment_filename(name: &str) -> String {
    if name.is_empty() {
        return "artifact".to_owned();
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `attachment; filename="<sanitised name>"`.
pub fn content_disposition(name: &str) -> HeaderValue {
    let value = format!("attachment; filename=\"{}\"", attachment_filename(name));
    // Only [A-Za-z0-9._-] and fixed ASCII remain, so this cannot fail; keep a fallback anyway.
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("attachment; filename=\"artifact\""))
}

/// The body of `object` in `encoding`, streamed: base64 is encoded chunk by chunk.
pub fn stream(body: ByteStream, encoding: Encoding) -> ByteStream {
    match encoding {
        Encoding::Base64 => Box::pin(blob::b64::encode_stream(body)),
        Encoding::Raw => body,
    }
}

/// Number of bytes the body of `object` has in `encoding` (its `Content-Length`).
pub fn length(object: &BlobObject, encoding: Encoding) -> u64 {
    match encoding {
        Encoding::Base64 => blob::b64::encoded_len(object.content_length()),
        Encoding::Raw => object.content_length(),
    }
}

/// Describes the object being served, for the response headers.
#[derive(Debug, Clone, Default)]
pub struct Meta<'a> {
    /// `artifact` or `tarball` (metric label).
    pub kind: &'static str,
    /// Name for `Content-Disposition`, if any.
    pub filename: Option<&'a str>,
    /// A digest header and its hex value, if known.
    pub sha256: Option<(HeaderName, &'a str)>,
}

/// The response serving `object`: `200`, or `206` with `Content-Range` for a raw range.
/// Without bookkeeping (see [`respond`] for the handlers' tracked form).
pub fn response(object: BlobObject, encoding: Encoding, meta: &Meta<'_>) -> Response {
    build(object, encoding, meta, None)
}

/// [`response`] whose body reports, when it ends, whether every byte was sent.
pub(crate) fn respond(
    object: BlobObject,
    encoding: Encoding,
    meta: &Meta<'_>,
    completion: Completion,
) -> Response {
    build(object, encoding, meta, Some(completion))
}

fn build(
    object: BlobObject,
    encoding: Encoding,
    meta: &Meta<'_>,
    completion: Option<Completion>,
) -> Response {
    let len = length(&object, encoding);
    let served = match encoding {
        Encoding::Raw => object.range,
        Encoding::Base64 => None,
    };
    let total = object.size;
    let body = Tracked::new(stream(object.body, encoding), len, meta.kind, completion);
    let mut resp = Response::new(Body::from_stream(body));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(name) = meta.filename {
        headers.insert(header::CONTENT_DISPOSITION, content_disposition(name));
    }
    if let Some((name, hex)) = &meta.sha256 {
        if let Ok(value) = HeaderValue::from_str(hex) {
            headers.insert(name.clone(), value);
        }
    }
    if encoding == Encoding::Raw {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Some((first, last)) = served {
        if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")) {
            headers.insert(header::CONTENT_RANGE, value);
        }
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    resp
}

/// A body that counts the bytes it yields (`bytes_out` metric), fails rather than sending more
/// or fewer bytes than announced, and settles its [`Completion`]: before the last announced
/// byte is handed over it is completed (which consumes a download token, and may refuse: then
/// the body fails instead of completing, DEC-30); when dropped before that, interrupted.
struct Tracked {
    inner: ByteStream,
    labels: Vec<(String, String)>,
    sent: u64,
    expected: u64,
    completion: Option<Completion>,
    /// The last chunk, held back until its completion settles.
    finishing: Option<(bytes::Bytes, BoxFuture<'static, bool>)>,
    done: bool,
}

impl Tracked {
    fn new(
        inner: ByteStream,
        expected: u64,
        kind: &'static str,
        completion: Option<Completion>,
    ) -> Self {
        let mut tracked = Self {
            inner,
            labels: shared::metrics::label("kind", kind),
            sent: 0,
            expected,
            completion,
            finishing: None,
            done: false,
        };
        if expected == 0 {
            // Nothing to send or hold back: the server may never poll an empty body. (An empty
            // artifact's token is consumed before its response is built.)
            if let Some(completion) = tracked.completion.take() {
                let tracker = completion.tracker.clone();
                shared::runtime::spawn_tracked(&tracker, async move {
                    completion.complete(0).await;
                });
            }
        }
        tracked
    }

    fn fail(&mut self, err: io::Error) -> Poll<Option<io::Result<bytes::Bytes>>> {
        let (sent, expected) = (self.sent, self.expected);
        tracing::warn!(error = %err, sent, expected, "download body failed");
        self.done = true;
        Poll::Ready(Some(Err(err)))
    }

    fn yield_chunk(&mut self, chunk: bytes::Bytes) -> Poll<Option<io::Result<bytes::Bytes>>> {
        let len = chunk.len() as u64;
        self.sent += len;
        shared::metrics::get()
            .bytes_out
            .get_or_create(&self.labels)
            .inc_by(len);
        Poll::Ready(Some(Ok(chunk)))
    }

    /// Poll the completion of the held-back last chunk.
    fn poll_finishing(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<bytes::Bytes>>> {
        let Some((_, settle)) = self.finishing.as_mut() else {
            return Poll::Ready(None);
        };
        let completed = std::task::ready!(settle.as_mut().poll(cx));
        let Some((chunk, _)) = self.finishing.take() else {
            return Poll::Ready(None);
        };
        if completed {
            self.yield_chunk(chunk)
        } else {
            let msg = "the download link could not be consumed";
            self.fail(io::Error::other(msg))
        }
    }
}

impl Stream for Tracked {
    type Item = io::Result<bytes::Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finishing.is_some() {
            return this.poll_finishing(cx);
        }
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let len = chunk.len() as u64;
                if this.sent.saturating_add(len) > this.expected {
                    let msg = "the stored object is longer than announced";
                    return this.fail(io::Error::new(io::ErrorKind::InvalidData, msg));
                }
                if this.sent + len < this.expected {
                    return this.yield_chunk(chunk);
                }
                match this.completion.take() {
                    Some(completion) => {
                        let settle = Box::pin(completion.complete(this.sent));
                        this.finishing = Some((chunk, settle));
                        this.poll_finishing(cx)
                    }
                    None => this.yield_chunk(chunk),
                }
            }
            Poll::Ready(Some(Err(err))) => this.fail(err),
            Poll::Ready(None) if this.sent < this.expected => {
                let msg = "the stored object ended early";
                this.fail(io::Error::new(io::ErrorKind::UnexpectedEof, msg))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // A completion already moved into `finishing` is dropped with it: its claim, if the
        // commit had not run, is released by the claim's own drop.
        if let Some(completion) = self.completion.take() {
            completion.interrupted(self.sent);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
