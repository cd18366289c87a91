//! A worker's `complete`: how the attempt ends, and its slot freed once.

use job::transition;
use protocol::ArtifactInfo;

use super::Session;
use crate::{
    completion::{end_attempt, Ending},
    conn::ignored,
};

impl Session<'_> {
    pub(super) async fn complete(
        &self,
        job_id: &str,
        success: bool,
        needs_finishing: Option<&str>,
        error: Option<&str>,
        reported: &[ArtifactInfo],
    ) -> anyhow::Result<()> {
        let Some(attempt) = self.held(job_id).await? else {
            return Ok(());
        };
        let ending = self
            .end(
                job_id,
                attempt,
                success,
                needs_finishing,
                error,
                reported.len(),
            )
            .await;
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
        success: bool,
        needs_finishing: Option<&str>,
        error: Option<&str>,
        reported: usize,
    ) -> anyhow::Result<Option<Ending>> {
        let mut tx = self.ctx.deps.pool.begin().await?;
        let Some(job) = Self::lock_current(&mut tx, job_id, attempt).await? else {
            return Ok(None);
        };
        let ending = end_attempt(&mut tx, &job, success, needs_finishing, error, reported).await?;
        tx.commit().await?;
        self.ctx.deps.notify_outbox();
        Ok(Some(ending))
    }
}
