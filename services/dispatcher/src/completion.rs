//! How an attempt ends (§5.1): stage-1 hand-off, completion (usage counted once, overage
//! billed) or failure. Runs in the caller's transaction with the job locked; the state changes
//! themselves are the job module's transitions.

use job::{
    artifacts,
    transition::{self, Unsuccessful},
    Job, SignPlatform,
};
use protocol::Outgoing;
use sqlx::AnyConnection;

/// Outcome of a `complete` frame.
pub enum Ending {
    /// Stage 1 done; the finisher queues stage 2.
    Finishing,
    /// Completed; carries the Polar customer to bill when this publish is overage.
    Completed(Option<String>),
    /// Failed or cancelled.
    Failed,
    /// Queued again: what the worker built never reached the hub.
    Requeued,
}

/// Decide how an attempt ends (§5.1) and write it: stage-1 hand-off, completion (usage counted
/// once) or failure. Runs in the caller's transaction with the job locked.
pub async fn end_attempt(
    tx: &mut AnyConnection,
    job: &Job,
    success: bool,
    needs_finishing: Option<&str>,
    error: Option<&str>,
    reported_artifacts: usize,
) -> anyhow::Result<Ending> {
    let clean_success = success && !job.error_reported && !job.cancel_requested;
    if !clean_success {
        // The reason kept with the job: the worker's first `error` (already relayed), else
        // `complete.error` (relayed by the failure, as before).
        let why = job
            .worker_error()
            .or(error.filter(|e| !e.trim().is_empty()));
        let (outcome, message) = match (job.cancel_requested, why) {
            (true, _) => (Unsuccessful::Cancelled, "Build cancelled".to_owned()),
            (false, Some(why)) => (Unsuccessful::Failed, format!("Build failed: {why}")),
            (false, None) => (Unsuccessful::Failed, "Build failed".to_owned()),
        };
        transition::fail_build(tx, job, outcome, &message).await?;
        return Ok(Ending::Failed);
    }
    // Only stage 1 hands over; in stage 2 (the job already names its platform) the field is
    // ignored, or a sign worker echoing it would send the job round again.
    let stage_one = job.needs_finishing.is_none();
    if let Some(platform) = needs_finishing
        .filter(|_| stage_one)
        .and_then(SignPlatform::parse)
    {
        let bundle = artifacts::bundle(tx, &job.id, job.attempt, &platform.bundle_target()).await?;
        if bundle.is_none() {
            let msg = format!(
                "Stage 1 finished, but its {} bundle never reached the hub",
                platform.bundle_target()
            );
            return build_again(tx, job, &msg).await;
        }
        transition::hand_over(tx, job, platform).await?;
        return Ok(Ending::Finishing);
    }
    // Every artifact of the attempt is announced before `complete`, also those whose notice no
    // session here received (DEC-14).
    let artifacts = job::event::announce_missing_artifacts(tx, &job.id, job.attempt).await?;
    // What this attempt published (read only when it uploaded nothing); an earlier, lost
    // attempt's publications do not count.
    let published = if artifacts.is_empty() {
        job::event::count_since(
            tx,
            &job.id,
            "published",
            job.assigned_ms.unwrap_or_default(),
        )
        .await?
    } else {
        0
    };
    if !artifacts.is_empty() || published > 0 {
        let bill = complete_job(tx, job, artifacts).await?;
        return Ok(Ending::Completed(bill));
    }
    if reported_artifacts > 0 {
        // The worker built and tried to upload; the uploads failed (the hub answered 5xx or
        // was unreachable) and workers do not retry them.
        return build_again(tx, job, "The build's artifacts never reached the hub").await;
    }
    let note = "Build reported success but no artifact was uploaded";
    stderr_line(tx, job, note).await?;
    transition::fail(tx, job, Unsuccessful::Failed, note).await?;
    Ok(Ending::Failed)
}

/// What the worker built never reached the hub: say so, then build it again within the
/// attempt cap (the job fails after the last attempt).
async fn build_again(tx: &mut AnyConnection, job: &Job, why: &str) -> anyhow::Result<Ending> {
    stderr_line(tx, job, why).await?;
    Ok(match transition::retry_lost_upload(tx, job, why).await? {
        transition::LostOutcome::Requeued => Ending::Requeued,
        transition::LostOutcome::Failed | transition::LostOutcome::Unchanged => Ending::Failed,
    })
}

/// A line on the job's stderr for the CLI.
async fn stderr_line(tx: &mut AnyConnection, job: &Job, line: &str) -> anyhow::Result<()> {
    let log = Outgoing::Log {
        job_id: job.id.clone(),
        stage: "complete".into(),
        line: line.into(),
        stream: "stderr".into(),
    };
    job::event::emit(tx, &job.id, log).await?;
    Ok(())
}

/// The reason kept with a job whose worker's `complete` could not be read.
pub const UNREADABLE_COMPLETE: &str = "The worker's completion could not be read";

/// The worker's `complete` for this attempt could not be read (DEC-16): the attempt fails
/// (cancelled when a cancel was asked for), keeping the worker's own `error` as the reason
/// when it sent one. Runs in the caller's transaction with the job locked.
pub async fn end_unreadable(tx: &mut AnyConnection, job: &Job) -> anyhow::Result<Ending> {
    let (outcome, message) = match (job.cancel_requested, job.worker_error()) {
        (true, _) => (Unsuccessful::Cancelled, "Build cancelled".to_owned()),
        (false, Some(why)) => (
            Unsuccessful::Failed,
            format!("Build failed: {why} (the worker's completion could not be read)"),
        ),
        (false, None) => (Unsuccessful::Failed, UNREADABLE_COMPLETE.to_owned()),
    };
    transition::fail_build(tx, job, outcome, &message).await?;
    Ok(Ending::Failed)
}

/// Complete the job and count the publish once. Returns the Polar customer to bill when the
/// counted publish is pro overage.
async fn complete_job(
    tx: &mut AnyConnection,
    job: &Job,
    artifacts: Vec<protocol::ArtifactInfo>,
) -> anyhow::Result<Option<String>> {
    if !transition::complete(tx, job, artifacts).await? {
        return Ok(None);
    }
    let period = shared::clock::period_of(shared::clock::now_ms());
    sqlx::query(&shared::db::sql(shared::db::Dialect::of(tx), "INSERT INTO license_usage (license_id, period, publishes) VALUES (?, ?, 1) ON DUPLICATE KEY UPDATE publishes = publishes + 1"))
        .bind(job.license_id)
        .bind(&period)
        .execute(&mut *tx)
        .await?;
    Ok(crate::billing::overage_customer(tx, job.license_id, &period).await?)
}
