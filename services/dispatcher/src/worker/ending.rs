//! A worker's `complete`: how the attempt ends, and its slot freed once. A `complete` that
//! cannot be read still ends the attempt it names (DEC-16).

use axum::extract::ws::Message as WsMessage;
use job::transition;
use protocol::{frame_job_id, FrameError};

use super::Session;
use crate::{
    completion::{end_attempt, end_unreadable, Ending},
    conn::ignored,
};

/// What a worker's `complete` said.
#[derive(Debug, Clone, Copy)]
pub(super) enum Said<'a> {
    /// A readable `complete`.
    Read {
        /// Worker-reported success.
        success: bool,
        /// Stage 2 asked for (§5.4).
        needs_finishing: Option<&'a str>,
        /// `complete.error`.
        error: Option<&'a str>,
        /// How many artifacts the worker listed.
        reported: usize,
    },
    /// A `complete` that could not be parsed.
    Unreadable,
}

impl Session<'_> {
    pub(super) async fn complete(&self, job_id: &str, said: Said<'_>) -> anyhow::Result<()> {
        let Some(attempt) = self.held(job_id).await? else {
            return Ok(());
        };
        let ending = self.end(job_id, attempt, said).await;
        // Whatever happened, this attempt's slot is free now (once).
        self.free(job_id, attempt);
        match ending {
            Ok(Some(Ending::Finishing)) => {
                tracing::info!(job_id, "stage 1 finished; handing over to the finisher")
            }
            Ok(Some(Ending::Completed(bill))) => {
                tracing::info!(job_id, "job completed");
                if let Some(customer) = bill {
                    crate::billing::bill(&self.ctx.settings.polar, &customer, job_id);
                }
            }
            Ok(Some(Ending::Failed)) => tracing::info!(job_id, "job ended unsuccessfully"),
            Ok(Some(Ending::Requeued)) => {
                tracing::warn!(
                    job_id,
                    "the attempt's uploads never reached the hub; job queued again"
                )
            }
            Ok(None) => ignored("stale_attempt"),
            Err(error) => {
                // The outcome could not be recorded: expire the lease so the finisher requeues
                // (or fails) the job instead of leaving it running forever.
                tracing::error!(%error, job_id, "recording a completion failed; expiring the lease");
                if let Ok(mut conn) = self.ctx.deps.pool.acquire().await {
                    let _ = transition::expire_lease(&mut conn, job_id, attempt).await;
                }
            }
        }
        Ok(())
    }

    async fn end(
        &self,
        job_id: &str,
        attempt: i32,
        said: Said<'_>,
    ) -> anyhow::Result<Option<Ending>> {
        let mut tx = shared::db::begin(&self.ctx.deps.pool).await?;
        let Some(job) = Self::lock_current(&mut tx, job_id, attempt).await? else {
            return Ok(None);
        };
        let ending = match said {
            Said::Read {
                success,
                needs_finishing,
                error,
                reported,
            } => end_attempt(&mut tx, &job, success, needs_finishing, error, reported).await?,
            Said::Unreadable => end_unreadable(&mut tx, &job).await?,
        };
        tx.commit().await?;
        self.ctx.deps.notify_outbox();
        Ok(Some(ending))
    }

    /// A frame that could not be parsed. An unreadable `complete` for a job this connection
    /// holds (named by its `job_id`, else the worker's only job) fails that attempt and frees
    /// its slot, rather than leaving the job running; anything else is counted and dropped.
    pub(super) async fn rejected(&self, msg: &WsMessage, e: &FrameError) {
        ignored(e.code());
        let is_complete = matches!(e, FrameError::Invalid { kind, .. } if kind == "complete");
        let WsMessage::Text(text) = msg else { return };
        if !is_complete {
            tracing::debug!(worker = %self.name, code = e.code(), "ignored worker frame");
            return;
        }
        let named = frame_job_id(text.as_str());
        let Some(job_id) = named.or_else(|| self.ctx.registry.only_job(self.id)) else {
            tracing::warn!(worker = %self.name, error = %e, "unreadable complete names no job held here; ignored");
            return;
        };
        tracing::warn!(worker = %self.name, job_id, error = %e, "unreadable complete; failing the attempt");
        self.report(self.complete(&job_id, Said::Unreadable).await);
    }
}
