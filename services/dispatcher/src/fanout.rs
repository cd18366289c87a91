//! This instance's private subscription to the events exchange: job events go to local subscribers,
//! control messages (cancel, update) to local workers. After every (re)connection all local
//! subscribers resynchronise from MySQL, so events published while the queue did not exist
//! are not lost, and cancels and updates that may have been missed are re-derived from MySQL.

use protocol::Outgoing;
use shared::queue::{
    consumer::{self, Disposition, Received, Source},
    Message,
};

use crate::{
    registry::{send_frame, SubEvent},
    AppState,
};

/// Start the fan-out consumer.
pub fn spawn(ctx: &AppState) {
    let c = ctx.clone();
    let source = Source::Instance(ctx.instance_id.to_string());
    let queue = ctx.deps.queue.clone();
    let cancel = ctx.deps.cancel.clone();
    let registry = ctx.registry.clone();
    let reconcile_ctx = ctx.clone();
    ctx.deps.tracker.spawn(async move {
        consumer::run(
            queue,
            source,
            256,
            cancel,
            move || {
                let registry = registry.clone();
                let c = reconcile_ctx.clone();
                async move {
                    registry.resync_all();
                    if let Err(error) = reconcile(&c).await {
                        tracing::warn!(%error, "reconciling cancels and updates failed");
                    }
                }
            },
            move |r: Received| {
                let c = c.clone();
                async move { handle(&c, r.message) }
            },
        )
        .await;
    });
}

fn handle(ctx: &AppState, message: Message) -> Disposition {
    match message {
        Message::JobEvent {
            job_id, seq, frame, ..
        } => match serde_json::from_value(frame) {
            Ok(event) => ctx.registry.deliver(
                &job_id,
                &SubEvent::Event {
                    seq,
                    event: std::sync::Arc::new(event),
                },
            ),
            // Subscribers notice the gap and read the event from MySQL.
            Err(error) => tracing::warn!(%error, %job_id, seq, "undecodable job event"),
        },
        // Stored by a session here, which has delivered them already.
        Message::JobEvents { origin, .. } if *origin == *ctx.instance_id => {}
        Message::JobEvents {
            job_id,
            first_seq,
            frames,
            ..
        } => {
            for (seq, frame) in (first_seq..).zip(frames) {
                match frame.decode() {
                    Ok(event) => ctx.registry.deliver(
                        &job_id,
                        &SubEvent::Event {
                            seq,
                            event: std::sync::Arc::new(event),
                        },
                    ),
                    // Subscribers notice the gap and read the event from MySQL.
                    Err(error) => tracing::warn!(%error, %job_id, seq, "undecodable job event"),
                }
            }
        }
        Message::ArtifactStored {
            job_id,
            attempt,
            artifact,
        } => match serde_json::from_value(artifact) {
            // Nobody here holds the attempt: another replica does, or its completion will
            // announce the artifact.
            Ok(record) => {
                ctx.registry.notify_holder(attempt, record);
            }
            Err(error) => tracing::warn!(%error, %job_id, "undecodable stored artifact"),
        },
        Message::CancelJob { job_id, attempt } => {
            if let Some(tx) = ctx.registry.worker_holding(&job_id, attempt) {
                send_frame(
                    &tx,
                    &Outgoing::Cancel {
                        job_id: job_id.clone(),
                    },
                );
                tracing::info!(%job_id, "cancel sent to worker");
            }
        }
        Message::UpdatePerry { .. } => {
            for tx in ctx.registry.request_update(None) {
                send_frame(&tx, &Outgoing::UpdatePerry);
            }
        }
        Message::WorkerDrain { name, draining } => {
            ctx.registry.set_draining(Some(&name), draining, None);
            tracing::info!(worker = %name, draining, "worker drain changed");
        }
        Message::CapacityChanged {} | Message::JobQueued { .. } | Message::StageFinished { .. } => {
        }
    }
    Disposition::Ack
}

/// Messages published while this instance's queue did not exist (start-up, broker outage) are
/// not delivered; derive what they would have said from MySQL: cancels of jobs held here, and
/// updates for local workers whose version differs from the expected one.
async fn reconcile(ctx: &AppState) -> Result<(), sqlx::Error> {
    let pool = &ctx.deps.pool;
    let cancels: Vec<(String, i32)> = sqlx::query_as(
        "SELECT id, attempt FROM jobs WHERE cancel_requested = TRUE AND state IN ('assigned', 'running') AND dispatcher_id = ?",
    )
    .bind(&*ctx.instance_id)
    .fetch_all(pool)
    .await?;
    for (job_id, attempt) in cancels {
        if let Some(tx) = ctx.registry.worker_holding(&job_id, attempt) {
            send_frame(&tx, &Outgoing::Cancel { job_id });
        }
    }
    let drained: std::collections::HashSet<String> =
        sqlx::query_scalar("SELECT name FROM worker_drains")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    ctx.registry.set_draining(None, false, Some(&drained));
    let expected = shared::db::get_setting(pool, shared::db::SETTING_EXPECTED_VERSION)
        .await?
        .unwrap_or_default();
    if expected.is_empty() {
        return Ok(());
    }
    let outdated: std::collections::HashSet<String> = sqlx::query_scalar(
        "SELECT id FROM workers WHERE dispatcher_id = ? AND disconnected_ms IS NULL AND (perry_version IS NULL OR perry_version <> ?)",
    )
    .bind(&*ctx.instance_id)
    .bind(&expected)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    for tx in ctx.registry.request_update(Some(&outdated)) {
        send_frame(&tx, &Outgoing::UpdatePerry);
    }
    Ok(())
}
