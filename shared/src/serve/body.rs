//! Request-side time limits as middleware: a request body that goes quiet for the idle timeout
//! fails its reader ([`BodyIdle`]), and [`request_timeout`] bounds the small endpoints from
//! headers to answer (uploads are exempt: they stream for as long as bytes keep coming).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures_util::{Stream, StreamExt};
use tokio::time::{sleep, Sleep};

use crate::http::{ApiError, ErrorCode};

/// The error a request body fails with when no byte arrived for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("no byte of the request body arrived for {0}s")]
pub struct BodyIdle(pub u64);

/// Whether `err` (or any error in its chain) is a [`BodyIdle`].
pub fn is_body_idle(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<BodyIdle>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps: look at it too.
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        if wrapped.is_some_and(|inner| is_body_idle(inner)) {
            return true;
        }
        next = e.source();
    }
    false
}

/// 408 `REQUEST_TIMEOUT` for a body that stopped arriving.
pub fn body_idle_error(idle: &BodyIdle) -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        format!("Request timed out: {idle}"),
    )
}

/// Middleware: wrap the body of every request that has one in the idle timeout. When the body
/// went quiet, the answer is 408 `REQUEST_TIMEOUT` whatever the handler made of the failed read
/// (a JSON or multipart error, a failed upload).
pub async fn idle_body(State(idle): State<Duration>, req: Request, next: Next) -> Response {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if !has_body {
        return next.run(req).await;
    }
    let fired = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        Body::from_stream(IdleStream {
            inner: body.into_data_stream(),
            idle,
            timer: None,
            done: false,
            fired: fired.clone(),
        })
    });
    let resp = next.run(req).await;
    if fired.load(Ordering::Relaxed) {
        return body_idle_error(&BodyIdle(idle.as_secs())).into_response();
    }
    resp
}

/// Middleware: 408 `REQUEST_TIMEOUT` when the handler has not answered within the timeout.
pub async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("Request timed out after {}s", limit.as_secs()),
        )
        .into_response(),
    }
}

struct IdleStream {
    inner: axum::body::BodyDataStream,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    done: bool,
    fired: Arc<AtomicBool>,
}

impl Stream for IdleStream {
    type Item = Result<Bytes, axum::BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(item) => {
                self.timer = None;
                Poll::Ready(item.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = self.idle;
                let timer = self.timer.get_or_insert_with(|| Box::pin(sleep(idle)));
                ready!(timer.as_mut().poll(cx));
                self.done = true;
                self.fired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(BodyIdle(idle.as_secs()).into())))
            }
        }
    }
}
