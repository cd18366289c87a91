//! WebSocket plumbing: the upgrade (with small, explicit buffers) and role detection: the
//! first valid frame makes a worker (`worker_hello`) or a subscriber (`subscribe`); anything
//! else closes the connection. Each connection is one task ([`Conn`]); pings and liveness are
//! checked for all of them by [`crate::conn::sweep`].

use std::net::SocketAddr;

use axum::{
    extract::{ws::WebSocket, ws::WebSocketUpgrade, State},
    response::Response,
};
use protocol::Incoming;
use shared::{
    clock::now_ms,
    http::PeerAddr,
    metrics::{self, label},
};

use crate::{
    conn::{decode, ignored, outbox::Outbox, Conn, CLOSE_POLICY},
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
    // frames are small JSON, and a larger one just grows the buffer. Frames queued together
    // are written in one system call up to `WRITE_BATCH` bytes. `make bench` measures the
    // memory of an idle connection.
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BATCH)
        .max_write_buffer_size(max_write + WRITE_BATCH)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| handle(ctx, socket, addr, max_write))
}

/// Bytes read from a socket at a time (the buffer grows for a larger frame).
const READ_BUFFER: usize = 1024;
/// Bytes of queued frames handed to the kernel in one write.
const WRITE_BATCH: usize = 4096;

async fn handle(ctx: AppState, socket: WebSocket, addr: Option<SocketAddr>, max_write: usize) {
    // Enough queued bytes for two of the largest frames; a peer that lets more pile up is
    // not reading.
    let tx = Outbox::new(max_write.saturating_mul(2).max(8 << 20), now_ms());
    ctx.registry.sockets.add(&tx);
    let mut conn = Conn::new(socket, tx, addr, ctx.settings.max_message_bytes);
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
    Box::pin(conn.finish()).await;
}
/// Wait for the first valid frame. Non-JSON, binary and malformed frames are ignored and do
/// not count; silence past the identify timeout closes the connection.
async fn identify(ctx: &AppState, conn: &mut Conn) -> Option<Incoming> {
    let deadline = std::time::Duration::from_secs(ctx.settings.identify_secs);
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_connection_holds_the_shared_state_by_pointer() {
        // Every idle socket's task keeps a copy (DEC-18).
        assert_eq!(
            std::mem::size_of::<crate::AppState>(),
            std::mem::size_of::<usize>()
        );
    }
}
