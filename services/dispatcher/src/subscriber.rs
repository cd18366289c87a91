//! CLI subscriber sessions: `job_created` with the current position, the stored backlog (the
//! last 1 000 log lines at most), then live events. Events carry their per-job sequence number:
//! a duplicate is dropped, a gap is filled from MySQL, so the CLI sees every event once and in
//! order whichever replica produced it. The backlog is read page by page as the socket takes
//! it, and a CLI that reads slower than its job produces catches up from storage instead of
//! queueing in memory. `artifact_ready` is rendered per subscriber with a fresh single-use
//! download link while the artifact is still kept.

use std::time::Duration;

use job::{
    event::{ArtifactRecord, Numbered},
    transition, Event, JobState,
};
use protocol::{Incoming, Outgoing, WsErrorCode};
use shared::clock::now_ms;
use tokio::time::Instant;

use crate::{
    conn::{decode, ignored, Conn, CLOSE_POLICY},
    registry::{send_frame, Refused, SubEvent},
    AppState,
};

/// Close code asking the client to come back later (its limit of subscriptions is reached).
const CLOSE_TRY_LATER: u16 = 1013;

/// Most log lines replayed to a late subscriber.
const REPLAY_LOG_LIMIT: u32 = 1000;
/// Page size when reading stored events.
const PAGE: u32 = 500;
/// How often the queue position is refreshed.
const POSITION_INTERVAL: Duration = Duration::from_secs(5);

/// Run a subscriber session for `job_id` until the socket closes. Database work is boxed at
/// each await so the idle session (thousands of them) stays a small future.
#[tracing::instrument(name = "subscriber_session", skip_all, fields(job_id = tracing::field::Empty))]
pub async fn run(ctx: &AppState, conn: &mut Conn, job_id: String) {
    let Some(Opened {
        job_id,
        waiting,
        position,
        events,
    }) = Box::pin(open(ctx, conn, job_id)).await
    else {
        return;
    };
    // Register before reading the backlog so no live event can fall between the two.
    let limits = ctx.settings.subscribe_limits();
    let subscription = match ctx
        .registry
        .subscribe(&job_id, conn.addr.map(|a| a.ip()), limits)
    {
        Ok(s) => s,
        Err(refused) => {
            ignored("subscribe_limit");
            let reason = match refused {
                Refused::Address => "too many subscriptions from this address",
                Refused::Job => "too many subscribers for this job",
            };
            tracing::info!(reason, "subscription refused");
            conn.close(CLOSE_TRY_LATER, reason);
            return;
        }
    };
    let mut sub = Sub {
        ctx,
        job_id,
        last_seq: 0,
        last_position: None,
        waiting,
        behind: false,
        events_at_open: events,
    };
    Box::pin(sub.serve(conn, &subscription.inbox, position)).await;
    ctx.registry.unsubscribe(&sub.job_id, subscription.id);
}

/// A job a subscriber opened.
struct Opened {
    job_id: String,
    /// Whether it waits in a queue, and its place there.
    waiting: bool,
    position: u64,
    /// Events in its log when it was looked up.
    events: i64,
}

/// Look the job up. None (after answering the client) when it is unknown or the database is
/// unreachable.
async fn open(ctx: &AppState, conn: &mut Conn, job_id: String) -> Option<Opened> {
    let job = if uuid::Uuid::parse_str(&job_id).is_ok() {
        // Only a well-formed id reaches the logs (the client chose it).
        tracing::Span::current().record("job_id", job_id.as_str());
        let loaded = match ctx.deps.pool.acquire().await {
            Ok(mut c) => job::load_with_position(&mut c, &job_id).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(job) => job,
            Err(error) => {
                // Never an `error` frame (fatal to the CLI) for a transient failure: close, and
                // the CLI reconnects and subscribes again.
                tracing::error!(%error, "database unavailable for subscribe");
                conn.close(1011, "temporarily unavailable");
                return None;
            }
        }
    } else {
        None
    };
    let Some((job, position)) = job else {
        ignored("subscribe_unknown_job");
        let allowed = conn
            .addr
            .is_none_or(|a| ctx.registry.note_failed_subscribe(a.ip()));
        if !allowed {
            // Guessing job ids (D35): slow down and answer nothing.
            tokio::time::sleep(Duration::from_secs(1)).await;
            conn.close(CLOSE_POLICY, "too many subscriptions to unknown jobs");
            return None;
        }
        send_frame(
            &conn.tx,
            &Outgoing::ws_error(None, WsErrorCode::JobNotFound, "Job not found"),
        );
        conn.close(CLOSE_POLICY, "job not found");
        return None;
    };
    Some(Opened {
        waiting: job.state == JobState::Queued,
        job_id: job.id,
        position,
        events: job.event_seq,
    })
}

struct Sub<'a> {
    ctx: &'a AppState,
    job_id: String,
    last_seq: i64,
    last_position: Option<u64>,
    /// Whether the job is (as far as its events tell) waiting in a queue; only then is the
    /// position refreshed, so idle subscribers of running or finished jobs cost no queries
    /// and no timer.
    waiting: bool,
    /// Stored events may be missing here (a read failed): catch up at the next refresh.
    behind: bool,
    /// Events in the job's log when the session opened.
    events_at_open: i64,
}

impl Sub<'_> {
    /// `job_created`, the backlog, then live events until the socket closes.
    async fn serve(&mut self, conn: &mut Conn, inbox: &crate::registry::Inbox, position: u64) {
        self.last_position = Some(position);
        let created = Outgoing::JobCreated {
            job_id: self.job_id.clone(),
            position,
            estimated_wait_secs: None,
        };
        if !conn.send(&created).await {
            return;
        }
        self.catch_up_or_later(conn, true).await;
        let mut refresh_at = Instant::now() + POSITION_INTERVAL;
        loop {
            let timed = self.waiting || self.behind;
            tokio::select! {
                ev = inbox.recv() => {
                    let delivered = match ev {
                        SubEvent::Event { seq, event } if seq == self.last_seq + 1 => {
                            Box::pin(self.send_stored(conn, &event))
                                .await
                                .inspect(|_| self.last_seq = seq)
                        }
                        SubEvent::Event { seq, .. } if seq <= self.last_seq => Ok(true),
                        SubEvent::Event { .. } | SubEvent::Resync => {
                            Box::pin(self.catch_up(conn, false)).await
                        }
                    };
                    match delivered {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(error) => {
                            tracing::warn!(%error, "event delivery failed; catching up later");
                            self.behind = true;
                        }
                    }
                }
                () = tokio::time::sleep_until(refresh_at), if timed => {
                    refresh_at = Instant::now() + POSITION_INTERVAL;
                    if self.behind && !self.catch_up_or_later(conn, false).await {
                        break;
                    }
                    match Box::pin(self.refresh_position(conn)).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(error) => tracing::debug!(%error, "position refresh failed"),
                    }
                }
                msg = conn.next() => {
                    let Some(msg) = msg else { break };
                    match decode(&msg) {
                        Some(Ok(Incoming::Cancel { job_id })) if job_id == self.job_id => {
                            if let Err(error) = Box::pin(self.cancel()).await {
                                tracing::error!(%error, job_id = %self.job_id, "cancel failed");
                            }
                        }
                        Some(Ok(_)) => ignored("not_for_subscriber"),
                        Some(Err(e)) => ignored(e.code()),
                        None => {}
                    }
                }
            }
            if !timed && (self.waiting || self.behind) {
                refresh_at = Instant::now() + POSITION_INTERVAL;
            }
        }
    }

    /// Catch up, or mark the session behind to retry later. False once the socket is gone.
    async fn catch_up_or_later(&mut self, conn: &mut Conn, initial: bool) -> bool {
        match Box::pin(self.catch_up(conn, initial)).await {
            Ok(open) => {
                self.behind = false;
                open
            }
            Err(error) => {
                tracing::warn!(%error, job_id = %self.job_id, "backlog replay failed; retrying shortly");
                self.behind = true;
                true
            }
        }
    }

    /// Send every stored event after `last_seq`, a page at a time as the socket takes them.
    /// On the first replay, log lines older than the newest [`REPLAY_LOG_LIMIT`] are skipped
    /// by starting at the right sequence number. False once the socket is gone.
    async fn catch_up(&mut self, conn: &mut Conn, initial: bool) -> anyhow::Result<bool> {
        let pool = &self.ctx.deps.pool;
        // A log of at most half the limit when the session opened cannot have more lines than
        // the limit by now (short of a burst of that size in between, which would replay a few
        // lines more than the limit): no need to look for where the kept lines start.
        if initial && self.events_at_open > i64::from(REPLAY_LOG_LIMIT / 2) {
            let start = {
                let mut c = pool.acquire().await?;
                job::event::newest_logs_start(&mut c, &self.job_id, REPLAY_LOG_LIMIT).await?
            };
            if let Some(start) = start {
                // Everything but log lines before `start`, then everything from it.
                loop {
                    let events = job::event::between_without_logs(
                        pool,
                        &self.job_id,
                        self.last_seq,
                        start,
                        PAGE,
                    )
                    .await?;
                    let n = events.len();
                    if !self.send_page(conn, events).await? {
                        return Ok(false);
                    }
                    if n < PAGE as usize {
                        break;
                    }
                }
                self.last_seq = self.last_seq.max(start - 1);
            }
        }
        loop {
            let events = job::event::after(pool, &self.job_id, self.last_seq, PAGE).await?;
            let n = events.len();
            if !self.send_page(conn, events).await? {
                return Ok(false);
            }
            if n < PAGE as usize {
                return Ok(true);
            }
        }
    }

    async fn send_page(&mut self, conn: &mut Conn, events: Vec<Numbered>) -> anyhow::Result<bool> {
        for Numbered { seq, event } in events {
            if !self.send_stored(conn, &event).await? {
                return Ok(false);
            }
            self.last_seq = seq;
        }
        Ok(true)
    }

    /// Send one stored event. False once the socket is gone.
    async fn send_stored(&mut self, conn: &mut Conn, event: &Event) -> anyhow::Result<bool> {
        let frame = match event {
            Event::ArtifactReady(record) => {
                return Ok(match self.render_artifact(record).await? {
                    Some(out) => conn.send(&out).await,
                    None => true,
                });
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
        Ok(conn.send(frame).await)
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

    /// Send `queue_update` when a queued job's position changed. False once the socket is
    /// gone.
    async fn refresh_position(&mut self, conn: &mut Conn) -> anyhow::Result<bool> {
        if !self.waiting {
            return Ok(true);
        }
        let position = {
            let mut c = self.ctx.deps.pool.acquire().await?;
            let Some((job, position)) = job::load_with_position(&mut c, &self.job_id).await? else {
                return Ok(true);
            };
            if job.state != JobState::Queued {
                self.waiting = false;
                return Ok(true);
            }
            position
        };
        if self.last_position == Some(position) {
            return Ok(true);
        }
        self.last_position = Some(position);
        let frame = Outgoing::QueueUpdate {
            job_id: self.job_id.clone(),
            position,
            message: format!("Waiting for a build worker (position {position})"),
            estimated_wait_secs: None,
        };
        Ok(conn.send(&frame).await)
    }

    /// Cancel (§5.3): a waiting job ends now; a running one is flagged and its worker told.
    async fn cancel(&self) -> anyhow::Result<()> {
        let mut tx = shared::db::begin(&self.ctx.deps.pool).await?;
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
