//! Request-body helpers: `Content-Length` pre-checks, byte-counting limits on streamed bodies,
//! detecting an empty body without buffering it, and lenient optional JSON bodies.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    http::{header, HeaderMap},
};
use blob::ByteStream;
use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use shared::http::{ApiError, ApiResult};

use crate::errors::{self, BodyTooLarge};

/// The declared `Content-Length`, if any and well-formed.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// 413 at once when the declared length is over `limit` (no byte is read).
pub fn check_content_length(headers: &HeaderMap, limit: u64) -> ApiResult<()> {
    match content_length(headers) {
        Some(len) if len > limit => Err(errors::too_large("Request body", limit)),
        _ => Ok(()),
    }
}

/// The body as a stream of chunks with I/O errors, failing with [`BodyTooLarge`] as soon as
/// more than `limit` bytes arrive.
pub fn limited_stream(
    body: Body,
    limit: u64,
) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static {
    Limited {
        inner: body.into_data_stream().map_err(io::Error::other),
        seen: 0,
        limit,
        done: false,
    }
}

struct Limited<S> {
    inner: S,
    seen: u64,
    limit: u64,
    done: bool,
}

impl<S> Stream for Limited<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let next = std::task::ready!(self.inner.poll_next_unpin(cx));
        if let Some(Ok(chunk)) = &next {
            self.seen = self.seen.saturating_add(chunk.len() as u64);
            if self.seen > self.limit {
                self.done = true;
                return Poll::Ready(Some(Err(io::Error::other(BodyTooLarge {
                    limit: self.limit,
                }))));
            }
        }
        if matches!(next, None | Some(Err(_))) {
            self.done = true;
        }
        Poll::Ready(next)
    }
}

/// Read and discard a body, up to `limit` bytes.
pub async fn drain(body: Body, limit: u64) {
    let mut stream = limited_stream(body, limit);
    while let Some(Ok(_)) = stream.next().await {}
}

/// Read chunks until one holds data (for base64, a byte other than ASCII whitespace). Returns
/// `None` when the body is empty, else a stream that yields everything read so far and then
/// the rest, so nothing is buffered beyond the leading empty chunks.
pub async fn non_empty<S>(mut body: S, skip_whitespace: bool) -> io::Result<Option<ByteStream>>
where
    S: Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
{
    let mut head = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let has_data = if skip_whitespace {
            chunk.iter().any(|b| !b.is_ascii_whitespace())
        } else {
            !chunk.is_empty()
        };
        head.push(Ok(chunk));
        if has_data {
            return Ok(Some(Box::pin(stream::iter(head).chain(body))));
        }
    }
    Ok(None)
}

/// A JSON body that may be absent: empty (or whitespace) gives `T::default()`, anything else
/// must parse (400 otherwise).
pub fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use futures_util::TryStreamExt;

    use super::*;

    fn chunks(
        parts: &[&'static str],
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p.as_bytes())))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn an_all_whitespace_base64_body_is_empty() {
        assert!(non_empty(chunks(&["", "  \n", "\r\n"]), true)
            .await
            .unwrap()
            .is_none());
        assert!(non_empty(chunks(&[]), false).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_body_with_data_is_replayed_whole() {
        let s = non_empty(chunks(&[" ", "QUJD", "RA=="]), true)
            .await
            .unwrap()
            .unwrap();
        let all: Vec<Bytes> = s.try_collect().await.unwrap();
        assert_eq!(all.concat(), b" QUJDRA==");
    }

    #[tokio::test]
    async fn the_limit_fails_the_stream_once_exceeded() {
        let body = Body::from("0123456789");
        let got: Result<Vec<Bytes>, io::Error> = limited_stream(body, 4).try_collect().await;
        let err = got.unwrap_err();
        assert!(err
            .get_ref()
            .and_then(|e| e.downcast_ref::<BodyTooLarge>())
            .is_some());
        let ok: Vec<Bytes> = limited_stream(Body::from("0123"), 4)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ok.concat(), b"0123");
    }

    #[test]
    fn declared_length_over_the_limit_is_refused_early() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert!(check_content_length(&h, 10).is_err());
        assert!(check_content_length(&h, 11).is_ok());
        assert!(check_content_length(&HeaderMap::new(), 0).is_ok());
    }

    #[test]
    fn optional_json_accepts_nothing_and_rejects_garbage() {
        #[derive(Default, serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            a: Option<u8>,
        }
        assert!(optional_json::<T>(b"").is_ok());
        assert!(optional_json::<T>(b" \n").is_ok());
        assert!(optional_json::<T>(b"{\"a\":1}").is_ok());
        assert!(optional_json::<T>(b"{nope").is_err());
    }
}
