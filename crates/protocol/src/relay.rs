//! Relaying a worker's job events to the CLI subscribers (§4.5).

use crate::{Incoming, Outgoing};

impl Outgoing {
    /// The CLI frame relaying a worker's `stage`, `progress`, `log`, `published`,
    /// `queue_update` or `error`; `None` for any other frame.
    pub fn from_worker_event(event: &Incoming) -> Option<Outgoing> {
        let frame = match event {
            Incoming::Stage {
                job_id,
                stage,
                message,
            } => Self::Stage {
                job_id: job_id.clone(),
                stage: stage.clone(),
                message: message.clone(),
            },
            Incoming::Progress {
                job_id,
                stage,
                percent,
                message,
            } => Self::Progress {
                job_id: job_id.clone(),
                stage: stage.clone(),
                percent: percent_to_u8(*percent),
                message: message.clone(),
            },
            Incoming::Log {
                job_id,
                stage,
                line,
                stream,
            } => Self::Log {
                job_id: job_id.clone(),
                stage: stage.clone(),
                line: line.clone(),
                stream: stream.clone(),
            },
            Incoming::Published {
                job_id,
                platform,
                message,
                url,
            } => Self::Published {
                job_id: job_id.clone(),
                platform: platform.clone(),
                message: message.clone(),
                url: url.clone(),
            },
            Incoming::QueueUpdate {
                job_id,
                position,
                message,
                estimated_wait_secs,
            } => Self::QueueUpdate {
                job_id: job_id.clone(),
                position: position.unwrap_or(0),
                message: message.clone().unwrap_or_default(),
                estimated_wait_secs: *estimated_wait_secs,
            },
            Incoming::Error {
                job_id,
                code,
                message,
                stage,
            } => Self::Error {
                job_id: job_id.clone(),
                code: code.clone(),
                message: message.clone(),
                stage: stage.clone(),
            },
            Incoming::WorkerHello { .. }
            | Incoming::Complete { .. }
            | Incoming::UpdateResult { .. }
            | Incoming::BuildComplete { .. }
            | Incoming::ArtifactReady { .. }
            | Incoming::Subscribe { .. }
            | Incoming::Cancel { .. } => return None,
        };
        Some(frame)
    }
}

/// Rounds and clamps a percentage to 0–100 (NaN becomes 0).
pub(crate) fn percent_to_u8(percent: f64) -> u8 {
    if percent.is_nan() {
        return 0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let p = percent.round().clamp(0.0, 100.0) as u8;
    p
}
