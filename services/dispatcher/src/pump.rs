//! Dispatch: one consumer per target queue, alive only while a worker here has a free slot
//! for that target, with prefetch equal to those free slots. A delivery is assigned with a
//! conditional update (`queued` at the message's attempt), `job_assign` is pushed to the worker,
//! then the delivery is acked. Stale or duplicate deliveries are acked and dropped. A target
//! without workers is simply not consumed, so it never delays another.

use std::time::Duration;

use job::{
    transition::{self, Assignment, Unsuccessful},
    JobState,
};
use protocol::Outgoing;
use shared::{
    clock::now_ms,
    queue::{Backoff, Disposition, Message, Source, TARGETS},
};

use crate::{
    registry::{send_frame, Reservation},
    AppState,
};

/// Start one pump per known target.
pub fn spawn_all(ctx: &AppState) {
    for target in TARGETS {
        let ctx = ctx.clone();
        ctx.deps
            .tracker
            .clone()
            .spawn(async move { pump(ctx, target).await });
    }
}

async fn pump(ctx: AppState, target: &'static str) {
    let mut capacity = ctx.registry.watch_capacity();
    let mut backoff = Backoff::default();
    let cancel = ctx.deps.cancel.clone();
    loop {
        let free = ctx.registry.free_slots(target);
        if free == 0 {
            tokio::select! {
                () = cancel.cancelled() => return,
                r = capacity.changed() => if r.is_err() { return },
            }
            continue;
        }
        match consume(&ctx, target, free, &mut capacity).await {
            Ok(()) => backoff.reset(),
            Err(error) => {
                tracing::warn!(target, %error, "dispatch consumer failed; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff.next_delay()) => {},
                }
            }
        }
        if cancel.is_cancelled() {
            return;
        }
    }
}

/// Consume until the free slots for `target` drop to zero or grow past `prefetch` (then the
/// caller re-creates the consumer with the new prefetch). Closing the subscription returns any
/// unacked delivery to the queue.
async fn consume(
    ctx: &AppState,
    target: &'static str,
    prefetch: usize,
    capacity: &mut tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let prefetch_u16 = u16::try_from(prefetch).unwrap_or(u16::MAX);
    let source = Source::Target(target.to_owned());
    let mut subscription = ctx.deps.queue.subscribe(&source, prefetch_u16).await?;
    let result = loop {
        tokio::select! {
            () = ctx.deps.cancel.cancelled() => break Ok(()),
            r = capacity.changed() => {
                if r.is_err() { break Ok(()) }
                let free = ctx.registry.free_slots(target);
                if free == 0 || free > prefetch { break Ok(()) }
            }
            next = subscription.next() => {
                let Some(delivery) = next else { break Ok(()) };
                let delivery = delivery?;
                let assigned = match delivery.decode() {
                    Ok(Message::JobQueued { job_id, attempt, .. }) => assign(ctx, target, &job_id, attempt).await,
                    Ok(other) => {
                        tracing::warn!(?other, "unexpected message on a target queue; dropping");
                        Assign::Drop
                    }
                    Err(error) => {
                        tracing::error!(%error, "undecodable job message; dropping");
                        Assign::Drop
                    }
                };
                let disposition = match assigned {
                    Assign::Done | Assign::Drop => Disposition::Ack,
                    Assign::Retry => Disposition::Requeue,
                };
                delivery.settle(disposition).await?;
                if assigned == Assign::Retry {
                    // No slot after all, or the database failed: stop consuming for a moment
                    // so the message is not redelivered to us in a tight loop.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break Ok(());
                }
            }
        }
    };
    subscription.close().await;
    result
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assign {
    Done,
    Drop,
    Retry,
}

#[tracing::instrument(skip_all, fields(job_id, target, attempt))]
async fn assign(ctx: &AppState, target: &str, job_id: &str, attempt: i32) -> Assign {
    let Some(reservation) = ctx.registry.reserve(target, job_id) else {
        return Assign::Retry;
    };
    match assign_in_db(ctx, target, job_id, attempt, &reservation).await {
        Ok(Some((frame, new_attempt))) => {
            ctx.registry
                .settle(&reservation.worker_id, Some((job_id, new_attempt)));
            ctx.deps.notify_outbox();
            if !send_frame(&reservation.tx, &frame) {
                // The worker vanished between reservation and send: free the slot, requeue.
                ctx.registry
                    .release(&reservation.worker_id, job_id, new_attempt);
                requeue_after_failed_send(ctx, job_id, new_attempt).await;
            } else {
                tracing::info!(job_id, target, worker = %reservation.worker_name, attempt = new_attempt, "job assigned");
            }
            Assign::Done
        }
        Ok(None) => {
            ctx.registry.settle(&reservation.worker_id, None);
            Assign::Drop
        }
        Err(error) => {
            ctx.registry.settle(&reservation.worker_id, None);
            tracing::error!(%error, job_id, "assignment failed; requeueing the message");
            Assign::Retry
        }
    }
}

/// Assign `job_id` if it is still queued at `attempt`. Returns the `job_assign` frame.
async fn assign_in_db(
    ctx: &AppState,
    target: &str,
    job_id: &str,
    attempt: i32,
    r: &Reservation,
) -> anyhow::Result<Option<(Outgoing, i32)>> {
    let mut tx = shared::db::begin(&ctx.deps.pool).await?;
    let Some((job, sealed)) = job::lock_with_credentials(&mut tx, job_id).await? else {
        return Ok(None);
    };
    if job.state != JobState::Queued || job.attempt != attempt || job.target != target {
        return Ok(None);
    }
    let credentials = match sealed.map(|s| ctx.cipher.open(&s, job_id.as_bytes())) {
        Some(Ok(plain)) => serde_json::from_slice(&plain).ok(),
        Some(Err(_)) => None,
        None => Some(serde_json::json!({})),
    };
    let manifest = serde_json::from_str::<serde_json::Value>(&job.manifest).ok();
    let (Some(credentials), Some(manifest)) = (credentials, manifest) else {
        // Retrying cannot help (wrong credentials key, corrupted row): fail the job clearly.
        tracing::error!(
            job_id,
            "job cannot be dispatched: credentials or manifest unreadable"
        );
        let why = "The job's stored credentials or manifest cannot be read";
        transition::fail(&mut tx, &job, Unsuccessful::Failed, why).await?;
        tx.commit().await?;
        ctx.deps.notify_outbox();
        return Ok(None);
    };
    let to = Assignment {
        worker_id: &r.worker_id,
        worker_name: &r.worker_name,
        dispatcher_id: &ctx.instance_id,
        lease_ms: ctx.settings.lease_ms(),
    };
    let Some((token, new_attempt)) = transition::assign(&mut tx, &job, &to).await? else {
        return Ok(None);
    };
    tx.commit().await?;
    let now = now_ms();
    shared::metrics::get()
        .time_to_assign_seconds
        .observe((now - job.enqueued_ms).max(0) as f64 / 1000.0);
    let public = ctx.deps.hub.public_url();
    let frame = Outgoing::JobAssign {
        job_id: job_id.to_owned(),
        auth_token: token.into(),
        manifest,
        credentials: crate::credentials::scope(job.target.as_str(), credentials).into(),
        tarball_url: format!("{public}/api/v1/tarball/{job_id}"),
        artifact_upload_url: format!("{public}/api/v1/artifact/upload/{job_id}"),
    };
    Ok(Some((frame, new_attempt)))
}

async fn requeue_after_failed_send(ctx: &AppState, job_id: &str, attempt: i32) {
    let result = async {
        let mut tx = shared::db::begin(&ctx.deps.pool).await?;
        let outcome =
            transition::requeue_lost(&mut tx, job_id, attempt, "Builder disconnected").await?;
        tx.commit().await?;
        anyhow::Ok(outcome)
    }
    .await;
    match result {
        Ok(outcome) => tracing::warn!(
            job_id,
            ?outcome,
            "job_assign could not be sent; job handled as lost"
        ),
        Err(error) => {
            tracing::error!(%error, job_id, "cannot requeue after a failed send; the lease will expire")
        }
    }
    ctx.deps.notify_outbox();
}
