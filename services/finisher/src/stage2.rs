//! Stage 2 of two-stage builds (PROTOCOL §5.4). When stage 1 hands over (`StageFinished`, or
//! the sweep finding a job left in `finishing`), the same job is requeued for `<x>-sign` with
//! the hidden `<x>-precompiled` bundle of that attempt as its input, in one transaction with its
//! `stage` event and its queue message. The CLI keeps watching the same job id: it sees stage 2
//! progress, `artifact_ready` for the signed artifact and the one final `complete`. The bundle
//! itself is never offered to the CLI.

use job::{
    artifacts,
    transition::{self, StageTwo, Unsuccessful},
    Job, JobState,
};
use shared::{
    queue::{
        consumer::{self, Disposition, Received, Source},
        Message,
    },
    runtime::Deps,
};
use sqlx::AnyConnection;

use crate::AppState;

/// Deliveries handled at once.
const PREFETCH: u16 = 8;
/// Pause before a failed hand-over is redelivered (the database is probably unavailable).
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a hand-over did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandOver {
    /// Requeued for this sign target.
    Queued(String),
    /// The job failed (no bundle, bad manifest); the message says why.
    Failed(String),
    /// Not `finishing` at that attempt: already handed over, cancelled, or unknown.
    Unchanged,
}

/// Consume the finisher queue.
pub fn spawn(ctx: &AppState) {
    let c = ctx.clone();
    let queue = ctx.deps.queue.clone();
    let cancel = ctx.deps.cancel.clone();
    ctx.deps.tracker.spawn(async move {
        consumer::run(
            queue,
            Source::Finisher,
            PREFETCH,
            cancel,
            || async {},
            move |r: Received| {
                let c = c.clone();
                async move { handle(&c, r).await }
            },
        )
        .await;
    });
}

async fn handle(ctx: &AppState, received: Received) -> Disposition {
    let Message::StageFinished { job_id, attempt } = received.message else {
        tracing::warn!(message = ?received.message, "unexpected message on the finisher queue; dropping it");
        return Disposition::Ack;
    };
    match hand_over(&ctx.deps, &job_id, attempt).await {
        Ok(outcome) => {
            if matches!(outcome, HandOver::Queued(_)) {
                ctx.vm_wake.notify_one();
            }
            Disposition::Ack
        }
        Err(error) => {
            tracing::error!(
                job_id,
                attempt,
                error = format!("{error:#}"),
                "stage-2 hand-over failed; will retry"
            );
            tokio::time::sleep(RETRY_PAUSE).await;
            Disposition::Requeue
        }
    }
}

/// Hand `attempt` of a `finishing` job over to stage 2. Idempotent: a duplicate or stale
/// message finds the job in another state or attempt and changes nothing.
#[tracing::instrument(skip_all, fields(job_id = %job_id, attempt = attempt))]
pub async fn hand_over(deps: &Deps, job_id: &str, attempt: i32) -> anyhow::Result<HandOver> {
    let mut tx = shared::db::begin(&deps.pool).await?;
    let Some(job) = job::lock(&mut tx, job_id).await? else {
        return Ok(HandOver::Unchanged);
    };
    if job.state != JobState::Finishing || job.attempt != attempt {
        return Ok(HandOver::Unchanged);
    }
    let outcome = match prepare(deps, &mut tx, &job).await? {
        Ok(next) => {
            transition::queue_stage_two(&mut tx, &job, &next).await?;
            release_stage_one_input(deps, &mut tx, &job, &next.bundle.0).await?;
            HandOver::Queued(next.sign_target.as_str().to_owned())
        }
        Err(message) => {
            transition::fail(&mut tx, &job, Unsuccessful::Failed, &message).await?;
            HandOver::Failed(message)
        }
    };
    tx.commit().await?;
    deps.notify_outbox();
    match &outcome {
        HandOver::Queued(target) => {
            tracing::info!(target = %target, "stage 1 done; queued for signing")
        }
        HandOver::Failed(message) => tracing::warn!(%message, "stage-2 hand-over failed the job"),
        HandOver::Unchanged => {}
    }
    Ok(outcome)
}

/// Find the bundle and rewrite the manifest. `Ok(Err(message))` fails the job.
async fn prepare(
    deps: &Deps,
    tx: &mut AnyConnection,
    job: &Job,
) -> anyhow::Result<Result<StageTwo, String>> {
    let Some(platform) = job.sign_platform() else {
        return Ok(Err(
            "Stage 1 finished without naming a platform to finish".to_owned()
        ));
    };
    let bundle_target = platform.bundle_target();
    let bundle = artifacts::bundle(tx, &job.id, job.attempt, &bundle_target).await?;
    let Some((_, bundle_key, bundle_size, bundle_sha256)) = bundle else {
        return Ok(Err(format!(
            "Stage 1 finished without uploading the {bundle_target} bundle"
        )));
    };
    if deps.blob.size(&bundle_key).await?.is_none() {
        return Ok(Err(format!(
            "The {bundle_target} bundle of stage 1 is missing from storage"
        )));
    }
    let sign_target = platform.sign_target();
    let Some(manifest) = retarget_manifest(&job.manifest, sign_target.as_str()) else {
        return Ok(Err("The job's manifest cannot be read".to_owned()));
    };
    Ok(Ok(StageTwo {
        sign_target,
        manifest,
        bundle: (bundle_key, bundle_size, bundle_sha256),
    }))
}

/// The manifest with `targets` replaced by `[target]`, every other field kept.
pub fn retarget_manifest(manifest: &str, target: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(manifest).ok()?;
    let object = value.as_object_mut()?;
    object.insert("targets".to_owned(), serde_json::json!([target]));
    Some(value.to_string())
}

/// Delete the stage-1 source tarball: nothing needs it any more, and once the row points at the
/// bundle, retention would never find it. A tarball shared with another job (one submission,
/// several targets) is left to that job's own retention. Done before the commit, so a crash
/// leaves the row pointing at a deleted blob of a finished stage (harmless; the hand-over is
/// retried) rather than an orphaned blob.
async fn release_stage_one_input(
    deps: &Deps,
    tx: &mut AnyConnection,
    job: &Job,
    bundle_key: &str,
) -> anyhow::Result<()> {
    let Some(old) = job.input_key.as_deref().filter(|k| *k != bundle_key) else {
        return Ok(());
    };
    let shared: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE input_key = ? AND id <> ?")
            .bind(old)
            .bind(&job.id)
            .fetch_one(&mut *tx)
            .await?;
    if shared == 0 {
        deps.blob.delete(old).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_targets_are_replaced_and_the_rest_kept() {
        let m = r#"{"app_name":"app","targets":["windows"],"windows":{"icon":"i.ico"},"version":"1.0.0"}"#;
        let out: serde_json::Value =
            serde_json::from_str(&retarget_manifest(m, "windows-sign").unwrap()).unwrap();
        assert_eq!(out["targets"], serde_json::json!(["windows-sign"]));
        assert_eq!(out["app_name"], "app");
        assert_eq!(out["windows"]["icon"], "i.ico");
        assert_eq!(out.as_object().unwrap().len(), 4);
        assert!(retarget_manifest("[1]", "x").is_none());
        assert!(retarget_manifest("not json", "x").is_none());
    }
}
