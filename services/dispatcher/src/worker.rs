//! Worker sessions. After a valid hello the worker is recorded in MySQL and in the local hub;
//! its job frames are accepted only for jobs this connection holds at their current attempt
//! (or re-attaches within the lease), stored in order as job events, and fanned out.

use std::collections::HashMap;

use axum::extract::ws::Message as WsMessage;
use job::{event::ArtifactRecord, transition, Event, JobState};
use protocol::{Incoming, Outgoing, WsErrorCode};
use tracing::Instrument;

mod attach;
mod burst;
mod ending;
mod hello;
mod lease;

use burst::{collect_burst, relayable};
use ending::Said;
use hello::{
    authorise, clean_text, drained, expected_version, record_hello, worker_name, MAX_VERSION_CHARS,
};
pub use hello::{clamp_concurrency, normalize_capabilities, Grant};

use crate::{
    conn::{decode, ignored, Conn, CLOSE_POLICY},
    registry::{send_frame, SubEvent, WorkerEntry},
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

/// A session's notices of stored artifacts: (job, attempt, artifact).
type Notices = tokio::sync::mpsc::UnboundedReceiver<(String, i32, ArtifactRecord)>;

/// Most frames stored ahead of an `artifact_ready` (a worker that never stops sending cannot
/// hold it back for ever).
const MAX_DRAIN: usize = 8 * 1024;

/// A worker told to update that never answers `update_result` (builder-macos and
/// builder-windows ignore `update_perry`) takes jobs again after this long.
const UPDATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Run a worker session until the socket closes.
pub async fn run(ctx: &AppState, conn: &mut Conn, hello: Hello) {
    let name = worker_name(hello.name.as_deref());
    let Some(grant) = authorise(ctx, hello.secret.as_deref()) else {
        tracing::warn!(worker = %name, addr = ?conn.addr, "worker authentication failed");
        send_frame(
            &conn.tx,
            &Outgoing::ws_error(None, WsErrorCode::AuthFailed, "Invalid worker secret"),
        );
        conn.close(CLOSE_POLICY, "authentication failed");
        return;
    };
    let capabilities = normalize_capabilities(hello.capabilities);
    // An individual secret allows only its capabilities (DEC-25): claiming another one is an
    // authentication failure, so a build box can never receive signing credentials.
    if let Some(denied) = grant.denied(&capabilities) {
        if let Grant::Only { secret_name, .. } = &grant {
            tracing::warn!(worker = %name, secret = %secret_name, capability = denied, "worker claimed a capability its secret does not allow");
        }
        let message = format!("This worker secret does not allow the capability '{denied}'");
        send_frame(
            &conn.tx,
            &Outgoing::ws_error(None, WsErrorCode::AuthFailed, &message),
        );
        conn.close(CLOSE_POLICY, "capability not allowed");
        return;
    }
    conn.limit = ctx.settings.max_worker_message_bytes;
    let id = uuid::Uuid::new_v4().to_string();
    let max_concurrent = clamp_concurrency(hello.max_concurrent);
    let version = clean_text(hello.perry_version.as_deref(), MAX_VERSION_CHARS);
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
    let draining = match drained(ctx, &name).await {
        Ok(drained) => drained,
        Err(error) => {
            tracing::error!(%error, worker = %name, "cannot read the drain list; closing");
            conn.close(1011, "internal error");
            return;
        }
    };
    let (notice_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
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
        draining,
        tx: conn.tx.clone(),
        notices: notice_tx,
    });
    if needs_update {
        send_frame(&conn.tx, &Outgoing::UpdatePerry);
    }
    let session = Session {
        ctx,
        id: &id,
        name: &name,
    };
    // One span per worker session: every frame it handles is logged under it.
    let span = tracing::info_span!("worker_session", worker = %name, worker_id = %id);
    session.serve(conn, &mut notices).instrument(span).await;
}

impl Session<'_> {
    async fn serve(&self, conn: &mut Conn, notices: &mut Notices) {
        let renew = self.renew_leases_periodically(conn.tx.clone());
        tokio::pin!(renew);
        // A frame read while collecting a burst that belongs after it.
        let mut carry = None;
        loop {
            let msg = match carry.take() {
                Some(m) => m,
                None => tokio::select! {
                    () = &mut renew => break,
                    m = conn.next() => match m {
                        Some(m) => m,
                        None => break,
                    },
                    Some((job_id, attempt, record)) = notices.recv() => {
                        self.stored(conn, &mut carry, &job_id, attempt, record).await;
                        continue;
                    }
                },
            };
            self.on_frame(conn, msg, &mut carry).await;
        }
        self.disconnected().await;
    }

    async fn on_frame(&self, conn: &mut Conn, msg: WsMessage, carry: &mut Option<WsMessage>) {
        match decode(&msg) {
            Some(Ok(frame)) => match relayable(&frame) {
                Some((job_id, first)) => {
                    let burst = collect_burst(conn, &job_id, first, carry);
                    self.report(self.relay(&job_id, burst).await);
                }
                None => self.handle(frame).await,
            },
            Some(Err(e)) => self.rejected(&msg, &e).await,
            None => {}
        }
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
            Incoming::Stage { .. }
            | Incoming::Progress { .. }
            | Incoming::Log { .. }
            | Incoming::Published { .. }
            | Incoming::QueueUpdate { .. } => match relayable(&frame) {
                Some((job_id, event)) => self.relay(&job_id, vec![event]).await,
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
                            message: transition::reason(&message).to_owned(),
                            stage,
                        };
                        self.relay(&job_id, vec![out.into()]).await
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
                let said = Said::Read {
                    success,
                    needs_finishing: needs_finishing.as_deref(),
                    error: error.as_deref(),
                    reported: artifacts.len(),
                };
                self.complete(&job_id, said).await
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
        self.report(result);
    }

    fn report(&self, result: anyhow::Result<()>) {
        if let Err(error) = result {
            tracing::error!(%error, worker = %self.name, "handling worker frame failed");
        }
    }

    /// Store a burst of the job's frames in one group commit, then hand them to this replica's
    /// subscribers at once (other replicas get them through the broker).
    async fn relay(&self, job_id: &str, events: Vec<Event>) -> anyhow::Result<()> {
        let Some(attempt) = self.held(job_id).await? else {
            return Ok(());
        };
        let mut tx = shared::db::begin(&self.ctx.deps.pool).await?;
        let Some(job) = Self::lock_current(&mut tx, job_id, attempt).await? else {
            ignored("stale_attempt");
            return Ok(());
        };
        if job.state == JobState::Assigned {
            transition::start(&mut tx, job_id, job.attempt).await?;
        }
        // The worker reported the build failed: keep its reason with the job (A7).
        let reported = events.iter().find_map(|e| match e {
            Event::Frame(Outgoing::Error { message, .. }) => Some(message.as_str()),
            _ => None,
        });
        if let Some(message) = reported {
            transition::report_error(&mut tx, job_id, job.attempt, message).await?;
        }
        let (first, fanout) =
            job::event::append_batch(&mut tx, job_id, &events, &self.ctx.instance_id).await?;
        tx.commit().await?;
        self.ctx.bursts.send(&fanout);
        for (seq, event) in (first..).zip(events) {
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

    /// Dormant distribution handshake (§5.5): without a verifier, proceed at once.
    async fn build_complete(&self, job_id: &str, has_distribution: bool) -> anyhow::Result<()> {
        if !has_distribution {
            let said = Said::Read {
                success: true,
                needs_finishing: None,
                error: None,
                reported: 0,
            };
            return self.complete(job_id, said).await;
        }
        let stage = Outgoing::Stage {
            job_id: job_id.to_owned(),
            stage: "verifying".into(),
            message: "Verifying build".into(),
        };
        self.relay(job_id, vec![stage.into()]).await?;
        if self.ctx.registry.held_attempt(self.id, job_id).is_some() {
            if let Some(tx) = self.ctx.registry.worker_tx(self.id) {
                send_frame(
                    &tx,
                    &Outgoing::ProceedDistribute {
                        job_id: job_id.to_owned(),
                    },
                );
            }
        }
        Ok(())
    }

    async fn update_result(&self, success: bool, new_version: &str) -> anyhow::Result<()> {
        if success {
            let new_version = clean_text(Some(new_version), MAX_VERSION_CHARS);
            sqlx::query("UPDATE workers SET perry_version = ? WHERE id = ?")
                .bind(&new_version)
                .bind(self.id)
                .execute(&self.ctx.deps.pool)
                .await?;
            tracing::info!(worker = %self.name, version = ?new_version, "worker updated");
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
}
