//! Worker sessions. After a valid hello the worker is recorded in MySQL and in the local hub;
//! its job frames are accepted only for jobs this connection holds at their current attempt
//! (or re-attaches within the lease), stored in order as job events, and fanned out.

use std::collections::HashMap;

use job::{
    transition::{self, Assignment},
    Job,
};
use protocol::{ArtifactInfo, Incoming, Outgoing, WsErrorCode};
use shared::{clock::now_ms, db};
use sqlx::MySqlConnection;

use crate::{
    completion::{end_attempt, Ending},
    conn::{decode, ignored, Conn, CLOSE_POLICY},
    registry::{send_frame, WorkerEntry},
    AppState,
};

/// The fields of `worker_hello`.
#[derive(Debug)]
pub struct Hello {
    /// Presented secret (never logged).
    pub secret: Option<String>,
    /// Advertised capabilities.
    pub capabilities: Option<Vec<String>>,
    /// Worker name.
    pub name: Option<String>,
    /// Parallel jobs.
    pub max_concurrent: Option<i64>,
    /// Compiler version.
    pub perry_version: Option<String>,
}

/// A worker told to update that never answers `update_result` (builder-macos and
/// builder-windows ignore `update_perry`) takes jobs again after this long.
const UPDATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Capabilities as the hub uses them: lower-case, known targets only, no duplicates.
pub fn normalize_capabilities(caps: Option<Vec<String>>) -> Vec<String> {
    let caps = caps.unwrap_or_else(|| vec!["macos".to_owned()]);
    let mut out: Vec<String> = Vec::new();
    for c in caps {
        let c = c.trim().to_ascii_lowercase();
        if shared::queue::TARGETS.contains(&c.as_str()) && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// `max_concurrent`: absent or < 1 means 1; at most 16.
pub fn clamp_concurrency(v: Option<i64>) -> usize {
    usize::try_from(v.unwrap_or(1).clamp(1, 16)).unwrap_or(1)
}

fn authorised(ctx: &AppState, presented: Option<&str>) -> bool {
    let secret = &ctx.deps.hub.worker_secret;
    if secret.is_empty() {
        // Only reachable in development mode (validated at start).
        return ctx.deps.hub.dev_mode;
    }
    presented.is_some_and(|p| secret.matches(p))
}

/// Run a worker session until the socket closes.
pub async fn run(ctx: &AppState, conn: &mut Conn, hello: Hello) {
    let name = hello
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(255).collect::<String>())
        .unwrap_or_else(|| format!("worker-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    if !authorised(ctx, hello.secret.as_deref()) {
        tracing::warn!(worker = %name, addr = ?conn.addr, "worker authentication failed");
        send_frame(
            &conn.tx,
            &Outgoing::ws_error(None, WsErrorCode::AuthFailed, "Invalid worker secret"),
        );
        conn.close(CLOSE_POLICY, "authentication failed");
        return;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let capabilities = normalize_capabilities(hello.capabilities);
    let max_concurrent = clamp_concurrency(hello.max_concurrent);
    let version = hello.perry_version.clone().filter(|v| !v.is_empty());
    if let Err(error) = record_hello(
        ctx,
        &id,
        &name,
        &capabilities,
        max_concurrent,
        version.as_deref(),
    )
    .await
    {
        tracing::error!(%error, worker = %name, "cannot record worker; closing");
        conn.close(1011, "internal error");
        return;
    }
    let expected = expected_version(ctx).await;
    let needs_update = !expected.is_empty() && version.as_deref() != Some(expected.as_str());
    tracing::info!(worker = %name, ?capabilities, max_concurrent, version = ?version, "worker connected");
    ctx.registry.add_worker(WorkerEntry {
        id: id.clone(),
        name: name.clone(),
        capabilities,
        max_concurrent,
        jobs: HashMap::new(),
        reserved: 0,
        updating: needs_update,
        update_pending: false,
        updating_since: needs_update.then(std::time::Instant::now),
        tx: conn.tx.clone(),
    });
    if needs_update {
        send_frame(&conn.tx, &Outgoing::UpdatePerry);
    }
    let session = Session {
        ctx,
        id: &id,
        name: &name,
    };
    let renew = session.renew_leases_periodically(conn.closed.clone(), conn.last_seen.clone());
    tokio::pin!(renew);
    loop {
        let msg = tokio::select! {
            () = &mut renew => None,
            m = conn.next() => m,
        };
        let Some(msg) = msg else { break };
        match decode(&msg) {
            Some(Ok(frame)) => session.handle(frame).await,
            Some(Err(e)) => {
                tracing::debug!(worker = %name, code = e.code(), "ignored worker frame");
                ignored(e.code());
            }
            None => {}
        }
    }
    session.disconnected().await;
}

async fn record_hello(
    ctx: &AppState,
    id: &str,
    name: &str,
    caps: &[String],
    max: usize,
    version: Option<&str>,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO workers (id, name, capabilities, max_concurrent, perry_version, dispatcher_id, connected_ms, last_seen_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(name)
    .bind(format!(",{},", caps.join(",")))
    .bind(i64::try_from(max).unwrap_or(1))
    .bind(version)
    .bind(&*ctx.instance_id)
    .bind(now)
    .bind(now)
    .execute(&ctx.deps.pool)
    .await
    .map(|_| ())
}

async fn expected_version(ctx: &AppState) -> String {
    match db::get_setting(&ctx.deps.pool, db::SETTING_EXPECTED_VERSION).await {
        Ok(Some(v)) => v,
        _ => ctx.deps.hub.expected_version.clone(),
    }
}

struct Session<'a> {
    ctx: &'a AppState,
    id: &'a str,
    name: &'a str,
}

impl Session<'_> {
    async fn handle(&self, frame: Incoming) {
        let result = match frame {
            Incoming::Stage { ref job_id, .. }
            | Incoming::Progress { ref job_id, .. }
            | Incoming::Log { ref job_id, .. }
            | Incoming::Published { ref job_id, .. }
            | Incoming::QueueUpdate { ref job_id, .. } => match Outgoing::from_worker_event(&frame)
            {
                Some(out) => self.relay(job_id, out).await,
                None => Ok(()),
            },
            Incoming::Error {
                job_id,
                code: _,
                message,
                stage,
            } => {
                let job_id = job_id.or_else(|| self.ctx.registry.only_job(self.id));
                match job_id {
                    // Workers only ever send INTERNAL_ERROR; relay that code whatever they say.
                    Some(job_id) => {
                        let out = Outgoing::Error {
                            job_id: Some(job_id.clone()),
                            code: "INTERNAL_ERROR".into(),
                            message,
                            stage,
                        };
                        self.relay(&job_id, out).await
                    }
                    None => {
                        ignored("error_without_job");
                        Ok(())
                    }
                }
            }
            Incoming::Complete {
                job_id,
                success,
                artifacts,
                needs_finishing,
                error,
                ..
            } => {
                self.complete(
                    &job_id,
                    success,
                    needs_finishing.as_deref(),
                    error.as_deref(),
                    &artifacts,
                )
                .await
            }
            Incoming::BuildComplete {
                job_id,
                has_distribution,
                ..
            } => self.build_complete(&job_id, has_distribution).await,
            Incoming::UpdateResult {
                success,
                new_version,
                ..
            } => self.update_result(success, &new_version).await,
            Incoming::ArtifactReady { .. } => {
                // Legacy frame naming a path on the worker: never read (D5).
                ignored("legacy_artifact_ready");
                Ok(())
            }
            Incoming::WorkerHello { .. } | Incoming::Subscribe { .. } | Incoming::Cancel { .. } => {
                ignored("not_for_worker");
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, worker = %self.name, "handling worker frame failed");
        }
    }

    /// The attempt this connection holds for `job_id`, re-attaching a job this worker (by name)
    /// held before a reconnect if its lease is still valid.
    async fn held(&self, job_id: &str) -> job::Result<Option<i32>> {
        if let Some(a) = self.ctx.registry.held_attempt(self.id, job_id) {
            return Ok(Some(a));
        }
        // Only a job whose previous connection is gone (closed, or silent past the silence
        // window) can be re-attached; a live connection keeps its job (D8).
        let silence_ms =
            i64::try_from(self.ctx.settings.silence_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let to = self.assignment();
        let mut conn = self.ctx.deps.pool.acquire().await?;
        let reattached =
            transition::reattach(&mut conn, job_id, &to, now_ms() - silence_ms).await?;
        let Some(attempt) = reattached else {
            ignored("job_not_held");
            return Ok(None);
        };
        self.ctx.registry.attach(self.id, job_id, attempt);
        tracing::info!(worker = %self.name, job_id, attempt, "worker re-attached to its job");
        Ok(Some(attempt))
    }

    /// Lock the job and check it is still at `attempt` and active.
    async fn lock_current(
        conn: &mut MySqlConnection,
        job_id: &str,
        attempt: i32,
    ) -> Result<Option<Job>, sqlx::Error> {
        let job = job::lock(conn, job_id).await?;
        Ok(job.filter(|j| j.holds(attempt)))
    }

    /// This connection as the holder of a job.
    fn assignment(&self) -> Assignment<'_> {
        Assignment {
            worker_id: self.id,
            worker_name: self.name,
            dispatcher_id: &self.ctx.instance_id,
            lease_ms: self.ctx.settings.lease_ms(),
        }
    }

    async fn relay(&self, job_id: &str, frame: Outgoing) -> anyhow::Result<()> {
        let Some(attempt) = self.held(job_id).await? else {
            return Ok(());
        };
        let mut tx = self.ctx.deps.pool.begin().await?;
        let Some(job) = Self::lock_current(&mut tx, job_id, attempt).await? else {
            ignored("stale_attempt");
            return Ok(());
        };
        transition::start(&mut tx, job_id, job.attempt).await?;
        if let Outgoing::Error { message, .. } = &frame {
            transition::report_error(&mut tx, job_id, job.attempt, message).await?;
        }
        job::event::emit(&mut tx, job_id, frame).await?;
        tx.commit().await?;
        self.ctx.deps.notify_outbox();
        Ok(())
    }

    async fn complete(
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

    /// Dormant distribution handshake (§5.5): without a verifier, proceed at once.
    async fn build_complete(&self, job_id: &str, has_distribution: bool) -> anyhow::Result<()> {
        if !has_distribution {
            return self.complete(job_id, true, None, None, &[]).await;
        }
        let stage = Outgoing::Stage {
            job_id: job_id.to_owned(),
            stage: "verifying".into(),
            message: "Verifying build".into(),
        };
        self.relay(job_id, stage).await?;
        if self.ctx.registry.held_attempt(self.id, job_id).is_some() {
            send_frame(
                &self.ctx.hub_tx(self.id),
                &Outgoing::ProceedDistribute {
                    job_id: job_id.to_owned(),
                },
            );
        }
        Ok(())
    }

    async fn update_result(&self, success: bool, new_version: &str) -> anyhow::Result<()> {
        if success {
            sqlx::query("UPDATE workers SET perry_version = ? WHERE id = ?")
                .bind(new_version)
                .bind(self.id)
                .execute(&self.ctx.deps.pool)
                .await?;
            tracing::info!(worker = %self.name, version = new_version, "worker updated");
        } else {
            tracing::warn!(worker = %self.name, "worker update failed");
        }
        self.ctx.registry.set_updating(self.id, false);
        Ok(())
    }

    /// Free the slot once; deliver a pending `update_perry` if the worker is now idle.
    fn free(&self, job_id: &str, attempt: i32) {
        if let Some(tx) = self.ctx.registry.release(self.id, job_id, attempt) {
            send_frame(&tx, &Outgoing::UpdatePerry);
        }
    }

    /// Renew the leases of this worker's jobs and its presence while the socket is alive.
    async fn renew_leases_periodically(
        &self,
        closed: tokio_util::sync::CancellationToken,
        last_seen: std::sync::Arc<std::sync::atomic::AtomicI64>,
    ) {
        let period = std::time::Duration::from_secs((self.ctx.settings.lease_secs / 3).max(1));
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        let silence_ms =
            i64::try_from(self.ctx.settings.silence_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        loop {
            tokio::select! {
                () = closed.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = now_ms();
            if now - last_seen.load(std::sync::atomic::Ordering::Relaxed) > silence_ms {
                continue;
            }
            self.ctx.registry.expire_update(self.id, UPDATE_TIMEOUT);
            let pool = &self.ctx.deps.pool;
            let held = self.ctx.registry.held_jobs(self.id);
            let until = now + self.ctx.settings.lease_ms();
            let renewed = match pool.acquire().await {
                Ok(mut conn) => transition::renew_leases(&mut conn, self.id, &held, until).await,
                Err(e) => Err(e),
            };
            let seen = sqlx::query("UPDATE workers SET last_seen_ms = ? WHERE id = ?")
                .bind(now)
                .bind(self.id)
                .execute(pool)
                .await;
            if let Err(error) = renewed
                .map_err(anyhow::Error::from)
                .and(seen.map_err(anyhow::Error::from))
            {
                tracing::warn!(%error, worker = %self.name, "lease renewal failed");
            }
        }
    }

    /// The socket is gone: keep its jobs for the re-attach window, then the finisher requeues.
    async fn disconnected(&self) {
        let held = self.ctx.registry.remove_worker(self.id);
        let now = now_ms();
        let window =
            i64::try_from(self.ctx.settings.reattach_secs.saturating_mul(1000)).unwrap_or(0);
        let pool = &self.ctx.deps.pool;
        let _ = sqlx::query("UPDATE workers SET disconnected_ms = ? WHERE id = ?")
            .bind(now)
            .bind(self.id)
            .execute(pool)
            .await;
        let shortened = match pool.acquire().await {
            Ok(mut conn) => {
                transition::shorten_leases(&mut conn, self.id, &held, now + window).await
            }
            Err(e) => Err(e),
        };
        if let Err(error) = shortened {
            tracing::warn!(%error, worker = %self.name, "cannot shorten the leases of a lost worker's jobs");
        }
        tracing::info!(worker = %self.name, jobs = held.len(), "worker disconnected");
    }
}

impl AppState {
    fn hub_tx(&self, worker_id: &str) -> crate::registry::SocketTx {
        self.registry
            .worker_tx(worker_id)
            .unwrap_or_else(|| tokio::sync::mpsc::unbounded_channel().0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_lowercased_filtered_and_defaulted() {
        assert_eq!(normalize_capabilities(None), vec!["macos"]);
        let caps = normalize_capabilities(Some(vec![
            "Linux".into(),
            "android".into(),
            "bogus".into(),
            "linux".into(),
            "windows-sign".into(),
        ]));
        assert_eq!(caps, vec!["linux", "android", "windows-sign"]);
    }

    #[test]
    fn concurrency_is_clamped() {
        assert_eq!(clamp_concurrency(None), 1);
        assert_eq!(clamp_concurrency(Some(0)), 1);
        assert_eq!(clamp_concurrency(Some(-5)), 1);
        assert_eq!(clamp_concurrency(Some(4)), 4);
        assert_eq!(clamp_concurrency(Some(1000)), 16);
    }
}
