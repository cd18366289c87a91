//! This instance's private queue on the events exchange: job events go to local subscribers,
//! control messages (cancel, update) to local workers. After every (re)connection all local
//! subscribers resynchronise from MySQL, so events published while the queue did not exist
//! are not lost.

use shared::{
    protocol::Outgoing,
    queue::{
        consumer::{self, Disposition, Received, Source},
        Message,
    },
};

use crate::{
    hub::{send_frame, SubEvent},
    Ctx,
};

/// Start the fan-out consumer.
pub fn spawn(ctx: &Ctx) {
    let c = ctx.clone();
    let source = Source::Instance(ctx.instance_id.to_string());
    let broker = ctx.deps.broker.clone();
    let cancel = ctx.deps.cancel.clone();
    let hub = ctx.hub.clone();
    ctx.deps.tracker.spawn(async move {
        consumer::run(
            broker,
            source,
            256,
            cancel,
            move || {
                let hub = hub.clone();
                async move { hub.resync_all() }
            },
            move |r: Received| {
                let c = c.clone();
                async move { handle(&c, r.message) }
            },
        )
        .await;
    });
}

fn handle(ctx: &Ctx, message: Message) -> Disposition {
    match message {
        Message::JobEvent { job_id, seq, frame, .. } => ctx.hub.deliver(&job_id, &SubEvent::Event { seq, frame }),
        Message::CancelJob { job_id, attempt } => {
            if let Some(tx) = ctx.hub.worker_holding(&job_id, attempt) {
                send_frame(&tx, &Outgoing::Cancel { job_id: job_id.clone() });
                tracing::info!(%job_id, "cancel sent to worker");
            }
        }
        Message::UpdatePerry { .. } => {
            for tx in ctx.hub.request_update() {
                send_frame(&tx, &Outgoing::UpdatePerry);
            }
        }
        Message::CapacityChanged {} | Message::JobQueued { .. } | Message::StageFinished { .. } => {}
    }
    Disposition::Ack
}
