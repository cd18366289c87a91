//! What a load run of the fault suite showed: every build ended once, with its own artifact,
//! its usage counted once, and each subscriber saw the job's stored events once, in order.

use std::collections::HashMap;

use perry_hub_tests::{
    chaos::{self, CliOutcome},
    TestHub,
};
use serde_json::Value;

use super::load::{BUILDS, WORKERS};

/// What a load run showed, once its checks passed.
pub(super) struct Verdict {
    accepted: usize,
    refused: Vec<String>,
    completed: usize,
    resubscribed: u32,
    lost_lines: usize,
    printed_lines: usize,
}

impl Verdict {
    pub(super) fn outcome(&self, secs: f64) -> String {
        format!(
            "{BUILDS} submitted, {} accepted, {} refused (no answer from a killed process; the CLI exits), {} completed, 0 failed, 0 lost, 0 completed twice; every artifact's SHA-256 matched; every subscriber saw each job's stored events once, in order ({} re-subscriptions after dropped sockets); {} of {} log lines died in a killed dispatcher's unflushed batch (DEC-14); {secs:.0} s in all.",
            self.accepted,
            self.refused.len(),
            self.completed,
            self.resubscribed,
            self.lost_lines,
            self.printed_lines,
        )
    }
}

/// Check what the CLIs saw against MySQL: every build ended once, with its own artifact, its
/// usage counted once, and each subscriber saw the job's stored events once, in order.
pub(super) async fn verify(
    primary: &TestHub,
    license_id: i64,
    outcomes: Vec<CliOutcome>,
) -> Verdict {
    let mut refused = Vec::new();
    let mut followed = HashMap::new();
    let mut resubscribed = 0;
    for outcome in outcomes {
        match outcome {
            CliOutcome::Refused(why) => refused.push(why),
            CliOutcome::Followed {
                job_id,
                success,
                frames,
                resubscribed: r,
                artifact,
            } => {
                resubscribed += r;
                assert!(success, "{job_id} did not succeed: {frames:?}");
                if let Err(why) = artifact {
                    panic!("{job_id}: the downloaded artifact is not the one built: {why}");
                }
                assert!(followed.insert(job_id, frames).is_none(), "a job id twice");
            }
        }
    }
    println!(
        "faults load: {} accepted, {} refused ({refused:?}), {resubscribed} re-subscriptions",
        followed.len(),
        refused.len()
    );
    // The CLI exits on an HTTP error; only submissions that reached a dying replica may fail.
    assert!(
        refused.len() <= BUILDS / 10,
        "too many refused: {refused:?}"
    );

    // Every accepted build ends exactly once, and usage is counted once per build. A
    // submission the dying replica committed but never answered is a build nobody follows: it
    // still ends once, and there can be no more of those than refusals.
    let states: Vec<(String, String)> =
        sqlx::query_as("SELECT id, state FROM jobs WHERE license_id = ?")
            .bind(license_id)
            .fetch_all(primary.pool())
            .await
            .unwrap();
    for (id, state) in &states {
        assert_eq!(state, "completed", "{id}");
    }
    for id in followed.keys() {
        assert!(states.iter().any(|(j, _)| j == id), "{id} has no job row");
    }
    let unanswered = states.len() - followed.len();
    assert!(
        unanswered <= refused.len(),
        "{unanswered} jobs nobody submitted"
    );
    let completes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_events e JOIN jobs j ON j.id = e.job_id WHERE j.license_id = ? AND e.kind = 'complete'",
    )
    .bind(license_id)
    .fetch_one(primary.pool())
    .await
    .unwrap();
    assert_eq!(completes as usize, states.len(), "one complete per build");
    let publishes: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(publishes) AS SIGNED) FROM license_usage WHERE license_id = ?",
    )
    .bind(license_id)
    .fetch_one(primary.pool())
    .await
    .unwrap();
    assert_eq!(
        publishes.unwrap_or(0) as usize,
        states.len(),
        "usage counted once"
    );

    // What each CLI's last subscription saw is the job's stored events, once each, in order.
    // `job_created` opens every subscription and a waiting CLI gets `queue_update`s of its
    // position: neither is a stored event, so the comparison leaves queue updates out.
    let shown = |kind: &str| kind != "job_created" && kind != "queue_update";
    let (mut lost_lines, mut printed_lines) = (0, 0);
    for (job_id, frames) in &followed {
        let stored: Vec<(String, shared::db::Text)> =
            sqlx::query_as("SELECT kind, payload FROM job_events WHERE job_id = ? ORDER BY seq")
                .bind(job_id)
                .fetch_all(primary.pool())
                .await
                .unwrap();
        let stored: Vec<(String, String)> = stored
            .into_iter()
            .filter(|(kind, _)| shown(kind))
            .map(|(kind, shared::db::Text(payload))| {
                let p: Value = serde_json::from_str(&payload).unwrap_or_default();
                (kind, p["line"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        let seen: Vec<(String, String)> = frames
            .iter()
            .map(|f: &Value| {
                (
                    f["type"].as_str().unwrap_or_default().to_owned(),
                    f["line"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .filter(|(kind, _)| shown(kind))
            .collect();
        assert_eq!(seen, stored, "events of {job_id}");
        // Lines a worker had handed to the killed replica that were still in its unflushed
        // group-commit batch died with it (DEC-14); the rest keep the worker's order.
        let steps: Vec<usize> = seen
            .iter()
            .filter(|(kind, _)| kind == "log")
            .filter_map(|(_, line)| line.rsplit(' ').next()?.parse().ok())
            .collect();
        // Each attempt prints its own lines: a run of rising steps per attempt at most (a line
        // stored twice would start a run of its own).
        let attempts: i32 = sqlx::query_scalar("SELECT attempt FROM jobs WHERE id = ?")
            .bind(job_id)
            .fetch_one(primary.pool())
            .await
            .unwrap();
        let attempts = usize::try_from(attempts).unwrap_or(1).max(1);
        let runs = 1 + steps.windows(2).filter(|w| w[1] <= w[0]).count();
        assert!(
            runs <= attempts,
            "{job_id}: lines {steps:?} in {attempts} attempts"
        );
        lost_lines += (attempts * chaos::LOG_LINES).saturating_sub(steps.len());
        printed_lines += attempts * chaos::LOG_LINES;
    }
    // Only builds that were streaming to the killed replica can have lost lines.
    assert!(
        lost_lines <= 2 * WORKERS * chaos::LOG_LINES,
        "{lost_lines} log lines lost"
    );
    Verdict {
        accepted: followed.len(),
        refused,
        completed: states.len(),
        resubscribed,
        lost_lines,
        printed_lines,
    }
}
