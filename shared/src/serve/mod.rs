//! Serving HTTP on a listener with the limits a public hub needs (issue 15 item 3, DEC-22):
//!
//! - a connection cap in all and per client address ([`conns`]); a connection over a cap is
//!   answered with a fixed 503 `UNAVAILABLE` or 429 `RATE_LIMITED` and closed at once;
//! - a header-read timeout (slowloris; also how long an idle keep-alive connection stays);
//! - a request-body idle timeout ([`body`]) and a write-stall timeout ([`io`]): uploads and
//!   downloads may last as long as bytes keep moving, never while they do not;
//! - graceful shutdown: stop accepting, let requests in flight finish.

pub mod body;
pub mod conns;
pub mod io;

use std::{future::Future, net::SocketAddr, pin::pin, time::Duration};

use axum::{extract::ConnectInfo, Router};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::config::HttpLimits;
use conns::{ConnLimiter, Refused};

/// Serve `router` on `listener` with `limits` until `shutdown` resolves, then stop accepting and
/// wait for the requests in flight (upgraded WebSockets are their owners' to close).
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let limiter = ConnLimiter::new(limits.max_connections, limits.max_connections_per_addr);
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits.idle_timeout(),
        body::idle_body,
    ));
    let conns = TaskTracker::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match limiter.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(why) => {
                refuse(&stream, why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = io::GuardedIo::new(stream, permit, limits.idle_timeout());
        conns.spawn(connection(
            io,
            peer,
            router.clone(),
            limits.header_timeout(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    conns.close();
    conns.wait().await;
    Ok(())
}

/// One connection: HTTP/1.1 with upgrades, the peer address as [`ConnectInfo`].
async fn connection(
    io: io::GuardedIo,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let service = router.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.map(axum::body::Body::new)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    let mut conn = pin!(conn);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed() => {
                conn.as_mut().graceful_shutdown();
                if changed.is_err() {
                    // The sender is gone: keep driving the connection to its end.
                    let _ = conn.as_mut().await;
                    return;
                }
            }
        }
    }
}

/// The answer to a connection over the listener's cap.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 88\r\n\r\n{\"error\":{\"code\":\"UNAVAILABLE\",\"message\":\"Too many connections; try again in a moment\"}}";
/// The answer to a connection over its address's cap.
const ADDRESS_FULL: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 84\r\n\r\n{\"error\":{\"code\":\"RATE_LIMITED\",\"message\":\"Too many connections from your address\"}}";

/// Answer a refused connection with a fixed response (one non-blocking write into the fresh
/// socket's buffer) and close it.
fn refuse(stream: &TcpStream, why: Refused) {
    let answer = match why {
        Refused::Full => FULL,
        Refused::AddressFull => ADDRESS_FULL,
    };
    let _ = stream.try_write(answer);
    crate::metrics::get()
        .connections_refused
        .get_or_create(&crate::metrics::label(
            "reason",
            match why {
                Refused::Full => "full",
                Refused::AddressFull => "address_full",
            },
        ))
        .inc();
    tracing::debug!(?why, "connection refused");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(raw: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len(), "content-length of {head}");
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn refusals_are_well_formed_envelopes() {
        assert_eq!(body_of(FULL)["error"]["code"], "UNAVAILABLE");
        assert_eq!(body_of(ADDRESS_FULL)["error"]["code"], "RATE_LIMITED");
    }
}
