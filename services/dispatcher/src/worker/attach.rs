//! Which attempt of a job this connection holds: the registry's record, or a re-attach of a job
//! the same worker (by name) held on an earlier connection (A18, DEC-19).

use job::{
    transition::{self, Assignment},
    Job,
};
use shared::clock::now_ms;
use sqlx::AnyConnection;

use super::Session;
use crate::conn::ignored;

/// First and last pause while a reconnected worker's old session records its disconnect
/// (50 ms doubling to 800 ms: 1.5 s in all).
const REATTACH_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
const REATTACH_LAST_PAUSE: std::time::Duration = std::time::Duration::from_millis(800);

impl Session<'_> {
    /// The attempt this connection holds for `job_id`, re-attaching a job this worker (by name)
    /// held before a reconnect if its lease is still valid.
    pub(super) async fn held(&self, job_id: &str) -> job::Result<Option<i32>> {
        if let Some(a) = self.ctx.registry.held_attempt(self.id, job_id) {
            return Ok(Some(a));
        }
        // Only a job whose previous connection is gone (closed, silent past the silence window,
        // or on a dispatcher that stopped beating) can be re-attached; a live connection keeps
        // its job (D8).
        let silence_ms =
            i64::try_from(self.ctx.settings.silence_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let to = self.assignment();
        let mut conn = self.ctx.deps.pool.acquire().await?;
        let mut pause = REATTACH_FIRST_PAUSE;
        let attempt = loop {
            let now = now_ms();
            let reattached = transition::reattach(
                &mut conn,
                job_id,
                &to,
                now - silence_ms,
                crate::presence::alive_since(now),
            )
            .await?;
            if let Some(attempt) = reattached {
                break attempt;
            }
            // A worker that reconnects at once can be faster than its old session's record of
            // the disconnect: while this worker's name holds the job, wait a little for it
            // rather than drop the frame.
            if pause > REATTACH_LAST_PAUSE
                || !job::held_by_name(&mut conn, job_id, self.name).await?
            {
                ignored("job_not_held");
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        };
        self.ctx.registry.attach(self.id, job_id, attempt);
        tracing::info!(worker = %self.name, job_id, attempt, "worker re-attached to its job");
        Ok(Some(attempt))
    }

    /// Lock the job and check it is still at `attempt` and active.
    pub(super) async fn lock_current(
        conn: &mut AnyConnection,
        job_id: &str,
        attempt: i32,
    ) -> Result<Option<Job>, sqlx::Error> {
        let job = job::lock(conn, job_id).await?;
        Ok(job.filter(|j| j.holds(attempt)))
    }

    /// This connection as the holder of a job.
    pub(super) fn assignment(&self) -> Assignment<'_> {
        Assignment {
            worker_id: self.id,
            worker_name: self.name,
            dispatcher_id: &self.ctx.instance_id,
            lease_ms: self.ctx.settings.lease_ms(),
        }
    }
}
