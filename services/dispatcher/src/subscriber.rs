//! CLI subscriber sessions: `job_created` with the current position, the stored backlog (the
//! last 1 000 log lines at most), then live events. Events carry their per-job sequence number:
//! a duplicate is dropped, a gap is filled from MySQL, so the CLI sees every event once and in
//! order whichever replica produced it. `artifact_ready` is rendered per subscriber with a
//! fresh single-use download link while the artifact is still kept.

use std::{sync::atomic::Ordering, time::Duration};

use job::{
    event::{ArtifactRecord, Numbered},
    transition, Event, JobState,
};
use protocol::{Incoming, Outgoing, WsErrorCode};
use shared::clock::now_ms;

use crate::{
    conn::{decode, ignored, Conn, CLOSE_POLICY},
    registry::{send_frame, SocketTx, SubEvent},
    AppState,
};

/// Most log lines replayed to a late subscriber.
const REPLAY_LOG_LIMIT: i64 = 1000;
/// Page size when reading stored events.
const PAGE: u32 = 500;
/// How often the queue position is refreshed.
const POSITION_INTERVAL: Duration = Duration::from_secs(5);

/// Run a subscriber session for `job_id` until the socket closes. Database work is boxed at
/// each await so the idle session (thousands of them) stays a small future.
#[tracing::instrument(name = "subscriber_session", skip_all, fields(job_id = tracing::field::Empty))]
pub async fn run(ctx: &AppState, conn: &mut Conn, job_id: String) {
    let job = if uuid::Uuid::parse_str(&job_id).is_ok() {
        // Only a well-formed id reaches the logs (the client chose it).
        tracing::Span::current().record("job_id", job_id.as_str());
        let loaded = match ctx.deps.pool.acquire().await {
            Ok(mut c) => job::load(&mut c, &job_id).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(job) => job,
            Err(error) => {
                // Never an `error` frame (fatal to the CLI) for a transient failure: close, and
                // the CLI reconnects and subscribes again.
                tracing::error!(%error, "database unavailable for subscribe");
                conn.close(1011, "temporarily unavailable");
                return;
            }
        }
    } else {
        None
    };
    let Some(job) = job else {
        ignored("subscribe_unknown_job");
        let allowed = conn
            .addr
            .is_none_or(|a| ctx.registry.note_failed_subscribe(a.ip()));
        if !allowed {
            // Guessing job ids (D35): slow down and answer nothing.
            tokio::time::sleep(Duration::from_secs(1)).await;
            conn.close(CLOSE_POLICY, "too many subscriptions to unknown jobs");
            return;
        }
        send_frame(
            &conn.tx,
            &Outgoing::ws_error(None, WsErrorCode::JobNotFound, "Job not found"),
        );
        conn.close(CLOSE_POLICY, "job not found");
        return;
    };
    // Register before reading the backlog so no live event can fall between the two.
    let (sub_id, mut rx, lagged) = ctx.registry.subscribe(&job.id);
    let mut sub = Sub {
        ctx,
        job_id: job.id.clone(),
        tx: conn.tx.clone(),
        last_seq: 0,
        last_position: None,
        waiting: job.state == JobState::Queued,
    };
    let position = match ctx.deps.pool.acquire().await {
        Ok(mut c) => job::position(&mut c, &job).await.unwrap_or(0),
        Err(_) => 0,
    };
    sub.last_position = Some(position);
    send_frame(
        &sub.tx,
        &Outgoing::JobCreated {
            job_id: job.id.clone(),
            position,
            estimated_wait_secs: None,
        },
    );
    if let Err(error) = Box::pin(sub.catch_up(true)).await {
        tracing::warn!(%error, job_id = %job.id, "backlog replay failed; retrying shortly");
        lagged.store(true, Ordering::Relaxed);
    }
    let mut tick = tokio::time::interval(POSITION_INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                if let Err(error) = Box::pin(sub.on_event(ev)).await {
                    tracing::warn!(%error, job_id = %sub.job_id, "event delivery failed; catching up later");
                    lagged.store(true, Ordering::Relaxed);
                }
            }
            _ = tick.tick() => {
                if lagged.swap(false, Ordering::Relaxed) {
                    if let Err(error) = Box::pin(sub.catch_up(false)).await {
                        tracing::warn!(%error, "catch-up failed");
                        lagged.store(true, Ordering::Relaxed);
                    }
                }
                if let Err(error) = Box::pin(sub.refresh_position()).await {
                    tracing::debug!(%error, "position refresh failed");
                }
            }
            msg = conn.next() => {
                let Some(msg) = msg else { break };
                match decode(&msg) {
                    Some(Ok(Incoming::Cancel { job_id })) if job_id == sub.job_id => {
                        if let Err(error) = Box::pin(sub.cancel()).await {
                            tracing::error!(%error, job_id = %sub.job_id, "cancel failed");
                        }
                    }
                    Some(Ok(_)) => ignored("not_for_subscriber"),
                    Some(Err(e)) => ignored(e.code()),
                    None => {}
                }
            }
        }
    }
    ctx.registry.unsubscribe(&job.id, sub_id);
}

struct Sub<'a> {
    ctx: &'a AppState,
    job_id: String,
    tx: SocketTx,
    last_seq: i64,
    last_position: Option<u64>,
    /// Whether the job is (as far as its events tell) waiting in a queue; only then is the
    /// position refreshed, so idle subscribers of running or finished jobs cost no queries.
    waiting: bool,
}

impl Sub<'_> {
    async fn on_event(&mut self, ev: SubEvent) -> anyhow::Result<()> {
        match ev {
            SubEvent::Event { seq, event } if seq == self.last_seq + 1 => {
                self.send_stored(&event).await?;
                self.last_seq = seq;
                Ok(())
            }
            SubEvent::Event { seq, .. } if seq <= self.last_seq => Ok(()),
            SubEvent::Event { .. } | SubEvent::Resync => self.catch_up(false).await,
        }
    }

    /// Send every stored event after `last_seq`. On the first replay, older log lines beyond
    /// the newest [`REPLAY_LOG_LIMIT`] are skipped.
    async fn catch_up(&mut self, initial: bool) -> anyhow::Result<()> {
        let mut skip_logs = 0;
        if initial {
            let mut conn = self.ctx.deps.pool.acquire().await?;
            let logs = job::event::count(&mut conn, &self.job_id, "log").await?;
            skip_logs = (logs - REPLAY_LOG_LIMIT).max(0);
        }
        loop {
            let events =
                job::event::after(&self.ctx.deps.pool, &self.job_id, self.last_seq, PAGE).await?;
            let n = events.len();
            for Numbered { seq, event } in events {
                if event.kind() == "log" && skip_logs > 0 {
                    skip_logs -= 1;
                } else {
                    self.send_stored(&event).await?;
                }
                self.last_seq = seq;
            }
            if n < PAGE as usize {
                return Ok(());
            }
        }
    }

    async fn send_stored(&mut self, event: &Event) -> anyhow::Result<()> {
        let frame = match event {
            Event::ArtifactReady(record) => {
                if let Some(out) = self.render_artifact(record).await? {
                    send_frame(&self.tx, &out);
                }
                return Ok(());
            }
            Event::Frame(frame) => frame,
        };
        match frame {
            Outgoing::QueueUpdate { position, .. } => {
                self.last_position = Some(*position);
                self.waiting = *position > 0;
            }
            // The signing hand-off requeues the job for stage 2; any other event means a
            // worker has it or it ended.
            Outgoing::Stage { stage, .. } => self.waiting = stage == "signing",
            _ => self.waiting = false,
        }
        send_frame(&self.tx, frame);
        Ok(())
    }

    /// A fresh link for a stored `artifact_ready`, or None once the artifact is gone.
    async fn render_artifact(&self, stored: &ArtifactRecord) -> anyhow::Result<Option<Outgoing>> {
        let mut conn = self.ctx.deps.pool.acquire().await?;
        let alive: Option<i64> =
            sqlx::query_scalar("SELECT expires_ms FROM artifacts WHERE id = ? AND hidden = FALSE")
                .bind(&stored.artifact_id)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(expires_ms) = alive.filter(|e| *e > now_ms()) else {
            return Ok(None);
        };
        let remaining = u64::try_from((expires_ms - now_ms()) / 1000).unwrap_or(0);
        let ttl = self.ctx.deps.hub.artifact_ttl_secs.min(remaining.max(1));
        let token =
            job::artifacts::mint_download_token(&mut conn, &stored.artifact_id, ttl).await?;
        Ok(Some(Outgoing::ArtifactReady {
            job_id: self.job_id.clone(),
            target: stored.target.clone(),
            artifact_name: stored.artifact_name.clone(),
            artifact_size: stored.artifact_size,
            sha256: stored.sha256.clone(),
            download_url: format!("{}/api/v1/dl/{token}", self.ctx.deps.hub.public_url()),
            expires_in_secs: ttl,
        }))
    }

    /// Send `queue_update` when a queued job's position changed (at most every 5 s).
    async fn refresh_position(&mut self) -> anyhow::Result<()> {
        if !self.waiting {
            return Ok(());
        }
        let mut conn = self.ctx.deps.pool.acquire().await?;
        let Some(job) = job::load(&mut conn, &self.job_id).await? else {
            return Ok(());
        };
        if job.state != JobState::Queued {
            self.waiting = false;
            return Ok(());
        }
        let position = job::position(&mut conn, &job).await?;
        if self.last_position != Some(position) {
            self.last_position = Some(position);
            let frame = Outgoing::QueueUpdate {
                job_id: self.job_id.clone(),
                position,
                message: format!("Waiting for a build worker (position {position})"),
                estimated_wait_secs: None,
            };
            send_frame(&self.tx, &frame);
        }
        Ok(())
    }

    /// Cancel (§5.3): a waiting job ends now; a running one is flagged and its worker told.
    async fn cancel(&self) -> anyhow::Result<()> {
        let mut tx = self.ctx.deps.pool.begin().await?;
        let Some(job) = job::lock(&mut tx, &self.job_id).await? else {
            return Ok(());
        };
        transition::cancel(&mut tx, &job).await?;
        tx.commit().await?;
        self.ctx.deps.notify_outbox();
        tracing::info!(job_id = %self.job_id, "cancel requested by subscriber");
        Ok(())
    }
}
