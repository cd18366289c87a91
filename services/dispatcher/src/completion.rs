//! How an attempt ends (§5.1): stage-1 hand-off, completion (usage counted once, overage
//! billed) or failure. Runs in the caller's transaction with the job locked.

use protocol::{ArtifactInfo, Outgoing};
use shared::{
    clock::now_ms,
    jobs::{self, state, Job},
    queue::{outbox, Message},
};
use sqlx::MySqlConnection;

/// Outcome of a `complete` frame.
pub enum Ending {
    /// Stage 1 done; the finisher queues stage 2.
    Finishing,
    /// Completed; carries the Polar customer to bill when this publish is overage.
    Completed(Option<String>),
    /// Failed or cancelled.
    Failed,
}

/// Decide how an attempt ends (§5.1) and write it: stage-1 hand-off, completion (usage counted
/// once) or failure. Runs in the caller's transaction with the job locked.
pub async fn end_attempt(
    tx: &mut MySqlConnection,
    job: &Job,
    success: bool,
    needs_finishing: Option<&str>,
    error: Option<&str>,
    reported_artifacts: usize,
) -> anyhow::Result<Ending> {
    let clean_success = success && !job.error_reported && !job.cancel_requested;
    if clean_success {
        if let Some(x) = needs_finishing.filter(|x| matches!(*x, "windows" | "ios" | "macos")) {
            let bundle: Option<String> = sqlx::query_scalar(
                "SELECT id FROM artifacts WHERE job_id = ? AND attempt = ? AND target = ? LIMIT 1",
            )
            .bind(&job.id)
            .bind(job.attempt)
            .bind(format!("{x}-precompiled"))
            .fetch_optional(&mut *tx)
            .await?;
            if bundle.is_none() {
                let msg = format!("Stage 1 finished without uploading the {x}-precompiled bundle");
                jobs::finish_failed(tx, job, state::FAILED, &msg).await?;
                return Ok(Ending::Failed);
            }
            sqlx::query(
                "UPDATE jobs SET state = 'finishing', needs_finishing = ?, token_hash = NULL, lease_expires_ms = NULL, \
                 worker_id = NULL WHERE id = ?",
            )
            .bind(x)
            .bind(&job.id)
            .execute(&mut *tx)
            .await?;
            outbox::enqueue(
                tx,
                &Message::StageFinished {
                    job_id: job.id.clone(),
                    attempt: job.attempt,
                },
            )
            .await?;
            return Ok(Ending::Finishing);
        }
        let artifacts = jobs::attempt_artifacts(tx, &job.id, job.attempt).await?;
        let published: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM job_events WHERE job_id = ? AND kind = 'published'",
        )
        .bind(&job.id)
        .fetch_one(&mut *tx)
        .await?;
        if !artifacts.is_empty() || published > 0 {
            let bill = complete_job(tx, job, artifacts).await?;
            return Ok(Ending::Completed(bill));
        }
        let note = if reported_artifacts > 0 {
            "Build reported artifacts but none was uploaded to the hub"
        } else {
            "Build reported success but no artifact was uploaded"
        };
        let log = Outgoing::Log {
            job_id: job.id.clone(),
            stage: "complete".into(),
            line: note.into(),
            stream: "stderr".into(),
        };
        jobs::emit(tx, &job.id, &log).await?;
        jobs::finish_failed(tx, job, state::FAILED, note).await?;
        return Ok(Ending::Failed);
    }
    let final_state = if job.cancel_requested {
        state::CANCELLED
    } else {
        state::FAILED
    };
    let message = match (job.cancel_requested, error) {
        (true, _) => "Build cancelled".to_owned(),
        (false, Some(e)) if !e.is_empty() => format!("Build failed: {e}"),
        _ => "Build failed".to_owned(),
    };
    sqlx::query("UPDATE jobs SET failure_kind = 'build' WHERE id = ?")
        .bind(&job.id)
        .execute(&mut *tx)
        .await?;
    jobs::finish_failed(tx, job, final_state, &message).await?;
    Ok(Ending::Failed)
}

/// Mark the job completed, count the publish once, and send the final `complete`. Returns the
/// Polar customer to bill when the counted publish is pro overage.
async fn complete_job(
    tx: &mut MySqlConnection,
    job: &Job,
    artifacts: Vec<ArtifactInfo>,
) -> anyhow::Result<Option<String>> {
    let now = now_ms();
    let counted = sqlx::query(
        "UPDATE jobs SET state = 'completed', finished_ms = ?, credentials_enc = NULL, token_hash = NULL, \
         lease_expires_ms = NULL, usage_counted = TRUE WHERE id = ? AND usage_counted = FALSE",
    )
    .bind(now)
    .bind(&job.id)
    .execute(&mut *tx)
    .await?;
    let mut bill = None;
    if counted.rows_affected() == 1 {
        let period = shared::clock::period_of(now);
        sqlx::query("INSERT INTO license_usage (license_id, period, publishes) VALUES (?, ?, 1) ON DUPLICATE KEY UPDATE publishes = publishes + 1")
            .bind(job.license_id)
            .bind(&period)
            .execute(&mut *tx)
            .await?;
        bill = crate::billing::overage_customer(tx, job.license_id, &period).await?;
    }
    let frame = Outgoing::Complete {
        job_id: job.id.clone(),
        success: true,
        duration_secs: job.duration_secs(),
        artifacts,
    };
    jobs::emit(tx, &job.id, &frame).await?;
    shared::metrics::get()
        .jobs_finished
        .get_or_create(&shared::metrics::label("state", state::COMPLETED))
        .inc();
    Ok(bill)
}
