//! WebSocket plumbing: the upgrade (with small, explicit buffers), the writer task with pings
//! and liveness, and role detection: the first valid frame makes a worker (`worker_hello`) or a
//! subscriber (`subscribe`); anything else closes the connection.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        State,
    },
    response::Response,
};
use futures_util::{stream::SplitSink, SinkExt, StreamExt};
use protocol::Incoming;
use shared::{
    clock::now_ms,
    http::PeerAddr,
    metrics::{self, label},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    conn::{decode, ignored, Conn, CLOSE_POLICY},
    AppState,
};

/// Accept `/ws` (and any path on the legacy port).
pub async fn upgrade(
    State(ctx): State<AppState>,
    PeerAddr(addr): PeerAddr,
    ws: WebSocketUpgrade,
) -> Response {
    let settings = &ctx.settings;
    // The role is known only after the first frame: the transport accepts the largest message
    // of any role, and `Conn` closes one over its role's limit (1009) (DEC-17).
    let max = settings
        .max_message_bytes
        .max(settings.max_worker_message_bytes);
    // The largest frame sent is a `job_assign` carrying signing credentials.
    let max_write = settings
        .max_message_bytes
        .saturating_mul(2)
        .max(protocol::MAX_JOB_ASSIGN_BYTES);
    // Small explicit buffers instead of tungstenite's 128 KiB read + 128 KiB write defaults:
    // frames are small JSON, and a larger one just grows the buffer. `make bench` measures
    // about 15 KiB of hub memory per idle connection in all.
    ws.read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(max_write)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| handle(ctx, socket, addr))
}

async fn handle(ctx: AppState, socket: WebSocket, addr: Option<SocketAddr>) {
    let (sink, stream) = socket.split();
    let (tx, rx) = mpsc::unbounded_channel();
    let closed = CancellationToken::new();
    let last_seen = Arc::new(AtomicI64::new(now_ms()));
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        closed.clone(),
        last_seen.clone(),
        ctx.settings.clone(),
    ));
    let mut conn = Conn {
        tx,
        stream,
        closed: closed.clone(),
        last_seen,
        addr,
        limit: ctx.settings.max_message_bytes,
    };
    let gauge = |role: &str| {
        metrics::get()
            .ws_connections
            .get_or_create(&label("role", role))
            .clone()
    };
    gauge("unidentified").inc();
    let first = identify(&ctx, &mut conn).await;
    gauge("unidentified").dec();
    match first {
        Some(Incoming::WorkerHello {
            secret,
            capabilities,
            name,
            max_concurrent,
            perry_version,
        }) => {
            let hello = crate::worker::Hello {
                secret: secret.map(|s| s.into_inner()),
                capabilities,
                name,
                max_concurrent,
                perry_version,
            };
            gauge("worker").inc();
            Box::pin(crate::worker::run(&ctx, &mut conn, hello)).await;
            gauge("worker").dec();
        }
        Some(Incoming::Subscribe { job_id }) => {
            gauge("cli").inc();
            Box::pin(crate::subscriber::run(&ctx, &mut conn, job_id)).await;
            gauge("cli").dec();
        }
        Some(other) => {
            ignored("wrong_first_frame");
            tracing::debug!(
                kind = other.kind(),
                "first frame was neither worker_hello nor subscribe; closing"
            );
            conn.close(
                CLOSE_POLICY,
                "first message must be worker_hello or subscribe",
            );
        }
        None => {}
    }
    // Let the writer flush a pending close frame, then stop it.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        drop(conn.tx);
        closed.cancelled().await;
    })
    .await;
    closed.cancel();
    let _ = writer.await;
}

/// Wait for the first valid frame. Non-JSON, binary and malformed frames are ignored and do
/// not count; silence past the identify timeout closes the connection.
async fn identify(ctx: &AppState, conn: &mut Conn) -> Option<Incoming> {
    let deadline = Duration::from_secs(ctx.settings.identify_secs);
    let found = tokio::time::timeout(deadline, async {
        while let Some(msg) = conn.next().await {
            match decode(&msg) {
                Some(Ok(incoming)) => return Some(incoming),
                Some(Err(e)) => ignored(e.code()),
                None => {}
            }
        }
        None
    })
    .await;
    match found {
        Ok(f) => f,
        Err(_) => {
            conn.close(
                CLOSE_POLICY,
                "no worker_hello or subscribe within the identify timeout",
            );
            None
        }
    }
}

/// Send queued frames; ping every `ping_secs`; close after `silence_secs` without traffic.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    closed: CancellationToken,
    last_seen: Arc<AtomicI64>,
    settings: Arc<crate::Settings>,
) {
    let mut ping = tokio::time::interval(Duration::from_secs(settings.ping_secs));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let silence_ms = i64::try_from(settings.silence_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = closed.cancelled() => break,
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                let is_close = matches!(msg, Message::Close(_));
                if sink.send(msg).await.is_err() || is_close {
                    break;
                }
            }
            _ = ping.tick() => {
                if now_ms() - last_seen.load(Ordering::Relaxed) > silence_ms {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: 1001, reason: "no traffic".into() }))).await;
                    break;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
    closed.cancel();
}
