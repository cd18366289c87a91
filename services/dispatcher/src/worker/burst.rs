//! Group commit on arrival: a worker frame and the frames of the same job that have already
//! arrived behind it are stored by one transaction; a stored artifact is announced after the
//! frames that had arrived before it.

use axum::extract::ws::Message as WsMessage;
use job::{event::ArtifactRecord, Event};
use protocol::{Incoming, Outgoing};

use super::{Session, MAX_DRAIN};
use crate::{
    conn::{decode, Conn},
    registry::SubEvent,
};

/// Most frames stored by one group commit.
const MAX_BURST: usize = 1024;

/// A frame that is relayed to subscribers as it is: its job and the frame to send.
pub(super) fn relayable(frame: &Incoming) -> Option<(String, Event)> {
    match frame {
        Incoming::Stage { job_id, .. }
        | Incoming::Progress { job_id, .. }
        | Incoming::Log { job_id, .. }
        | Incoming::Published { job_id, .. }
        | Incoming::QueueUpdate { job_id, .. } => {
            let mut out = Outgoing::from_worker_event(frame)?;
            if let Outgoing::Log { line, .. } = &mut out {
                cut_line(line);
            }
            Some((job_id.clone(), out.into()))
        }
        _ => None,
    }
}

/// Cut a log line over [`protocol::MAX_LOG_LINE_BYTES`] at a character boundary and say so.
pub(super) fn cut_line(line: &mut String) {
    let max = protocol::MAX_LOG_LINE_BYTES;
    if line.len() <= max {
        return;
    }
    let total = line.len();
    let cut = (0..=max)
        .rev()
        .find(|i| line.is_char_boundary(*i))
        .unwrap_or(0);
    line.truncate(cut);
    line.push_str(&format!(" … [line cut at {cut} of {total} bytes]"));
}

/// `first` plus the frames of the same job that have already arrived (up to [`MAX_BURST`]),
/// in order. The first frame of anything else is left in `carry`.
pub(super) fn collect_burst(
    conn: &mut Conn,
    job_id: &str,
    first: Event,
    carry: &mut Option<axum::extract::ws::Message>,
) -> Vec<Event> {
    let mut burst = vec![first];
    while burst.len() < MAX_BURST {
        let Some(next) = conn.ready() else { break };
        match decode(&next) {
            Some(Ok(frame)) => match relayable(&frame) {
                Some((id, event)) if id == job_id => burst.push(event),
                _ => {
                    *carry = Some(next);
                    break;
                }
            },
            // Handled by the session after the burst (an unreadable `complete` ends an attempt).
            Some(Err(_)) => {
                *carry = Some(next);
                break;
            }
            None => {}
        }
    }
    burst
}

impl Session<'_> {
    /// An artifact of a job held here was stored. The frames that have already arrived were
    /// sent before the upload finished: store them first, then `artifact_ready` (DEC-14).
    pub(super) async fn stored(
        &self,
        conn: &mut Conn,
        carry: &mut Option<WsMessage>,
        job_id: &str,
        attempt: i32,
        record: ArtifactRecord,
    ) {
        for _ in 0..MAX_DRAIN {
            let Some(msg) = carry.take().or_else(|| conn.ready()) else {
                break;
            };
            self.on_frame(conn, msg, carry).await;
        }
        self.report(self.announce(job_id, attempt, record).await);
    }

    async fn announce(
        &self,
        job_id: &str,
        attempt: i32,
        record: ArtifactRecord,
    ) -> anyhow::Result<()> {
        if self.ctx.registry.held_attempt(self.id, job_id) != Some(attempt) {
            // The attempt ended on this connection while the notice was on its way (a build
            // that completes right after its upload): its completion announced the attempt's
            // artifacts itself, and a lost one announces nothing. No transaction needed.
            return Ok(());
        }
        let mut tx = shared::db::begin(&self.ctx.deps.pool).await?;
        if Self::lock_current(&mut tx, job_id, attempt)
            .await?
            .is_none()
        {
            return Ok(());
        }
        let appended = job::event::append_artifact(&mut tx, record).await?;
        tx.commit().await?;
        self.ctx.deps.notify_outbox();
        if let Some((seq, event)) = appended {
            self.ctx.registry.deliver(
                job_id,
                &SubEvent::Event {
                    seq,
                    event: std::sync::Arc::new(event),
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_at_a_character_and_marked() {
        let mut short = "ok".to_owned();
        cut_line(&mut short);
        assert_eq!(short, "ok");
        let mut long = "é".repeat(protocol::MAX_LOG_LINE_BYTES);
        cut_line(&mut long);
        assert!(long.starts_with(&"é".repeat(100)));
        assert!(long.ends_with(&format!(
            "[line cut at {} of {} bytes]",
            protocol::MAX_LOG_LINE_BYTES,
            2 * protocol::MAX_LOG_LINE_BYTES
        )));
        assert!(long.len() < protocol::MAX_LOG_LINE_BYTES + 64);
    }
}
