//! Group commit on arrival: a worker frame and the frames of the same job that have already
//! arrived behind it are stored by one transaction.

use job::Event;
use protocol::{Incoming, Outgoing};

use crate::conn::{decode, ignored, Conn};

/// Most frames stored by one group commit.
const MAX_BURST: usize = 512;

/// A frame that is relayed to subscribers as it is: its job and the frame to send.
pub(super) fn relayable(frame: &Incoming) -> Option<(String, Event)> {
    match frame {
        Incoming::Stage { job_id, .. }
        | Incoming::Progress { job_id, .. }
        | Incoming::Log { job_id, .. }
        | Incoming::Published { job_id, .. }
        | Incoming::QueueUpdate { job_id, .. } => {
            Some((job_id.clone(), Outgoing::from_worker_event(frame)?.into()))
        }
        _ => None,
    }
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
            Some(Err(e)) => ignored(e.code()),
            None => {}
        }
    }
    burst
}
