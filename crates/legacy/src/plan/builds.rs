//! Build history (`--with-builds`): each original build becomes a terminal job without
//! artifacts, so it is listed but never dispatched. A build the original had not finished is
//! recorded as failed. Imported jobs are marked usage-counted: the usage counters already hold
//! their publishes.

use std::collections::HashSet;

use serde_json::json;
use sqlx::AnyPool;

use super::{Links, Outcome, Plan, TablePlan, Write};
use crate::{
    map::{self, text},
    source::LegacyBuild,
    Result,
};

/// Longest target name the jobs table holds.
const MAX_TARGET: usize = 32;

/// Error message of a build the original had not finished.
pub const UNFINISHED: &str = "Not finished on the original server when it was imported";

/// A finished job made from an original build.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The original build id.
    pub id: String,
    /// Its licence, by key hash.
    pub key_hash: [u8; 32],
    /// The first target (jobs have one target; the manifest lists all).
    pub target: job::Target,
    /// `completed`, `failed` or `cancelled`.
    pub state: job::JobState,
    /// Queue priority of the build's tier.
    pub priority: job::Priority,
    /// `{"imported_from": "original server", "targets": [...]}`.
    pub manifest: String,
    /// Dispatches: 1 when it had started, else 0.
    pub attempt: i32,
    pub worker_name: Option<String>,
    pub error_message: Option<String>,
    pub enqueued_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: i64,
}

/// Map one build (`Ok` with an optional note, or the reason to skip it).
pub fn job(b: &LegacyBuild, now: i64) -> Result<(Job, Option<String>), String> {
    let id = text(Some(&b.id)).ok_or("empty build id")?;
    if id.len() > 36 {
        return Err("build id longer than 36 characters".into());
    }
    let key_hash = b
        .license_key
        .as_ref()
        .and_then(|k| map::key_hash(k.expose()))
        .ok_or("no licence key")?;
    let targets = targets(b.targets.as_deref())?;
    let status = b
        .status
        .as_deref()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (state, note) = match status.as_str() {
        "completed" | "complete" | "success" | "succeeded" | "done" => {
            (job::JobState::Completed, None)
        }
        "failed" | "error" | "errored" | "timeout" | "timed_out" => (job::JobState::Failed, None),
        "cancelled" | "canceled" => (job::JobState::Cancelled, None),
        other => (
            job::JobState::Failed,
            Some(format!("unfinished (status {other:?}); recorded as failed")),
        ),
    };
    let tier = map::tier(b.tier.as_deref()).unwrap_or_default();
    let positive = |v: Option<i64>| v.filter(|ms| *ms > 0);
    let started_ms = positive(b.started_at);
    let enqueued_ms = positive(b.queued_at)
        .or(started_ms)
        .or(positive(b.completed_at))
        .unwrap_or(now);
    let error_message = match note {
        Some(_) => Some(UNFINISHED.to_owned()),
        None => text(b.error_message.as_deref()),
    };
    let job = Job {
        id,
        key_hash,
        target: job::Target::parse(&targets[0])
            .map_err(|_| format!("unknown target {:?}", targets[0]))?,
        state,
        priority: job::Priority(tier.priority()),
        manifest: json!({"imported_from": "original server", "targets": targets}).to_string(),
        attempt: i32::from(started_ms.is_some()),
        worker_name: text(b.worker_name.as_deref()),
        error_message,
        enqueued_ms,
        started_ms,
        finished_ms: positive(b.completed_at)
            .or(started_ms)
            .unwrap_or(enqueued_ms),
    };
    Ok((job, note))
}

/// A JSON array of target names, or a comma-separated list.
fn targets(value: Option<&str>) -> Result<Vec<String>, String> {
    let raw = value.unwrap_or("").trim();
    let list: Vec<String> = if raw.starts_with('[') {
        serde_json::from_str(raw).map_err(|_| "malformed targets JSON".to_owned())?
    } else {
        raw.split(',').map(str::to_owned).collect()
    };
    let list: Vec<String> = list.iter().filter_map(|t| text(Some(t))).collect();
    if list.is_empty() {
        return Err("no target".into());
    }
    if let Some(long) = list.iter().find(|t| t.len() > MAX_TARGET) {
        return Err(format!(
            "target longer than {MAX_TARGET} characters: {long:?}"
        ));
    }
    Ok(list)
}

pub(super) async fn plan(
    rows: &[LegacyBuild],
    hub: &AnyPool,
    links: &Links,
    now: i64,
    plan: &mut Plan,
) -> Result<()> {
    let mut table = TablePlan::new("jobs");
    let mut ids = HashSet::new();
    for row in rows {
        let label = format!("id {:?}", row.id.trim());
        let checked = job(row, now).and_then(|(job, note)| {
            if !ids.insert(job.id.clone()) {
                return Err("duplicate build id".to_owned());
            }
            match links.licenses.get(&job.key_hash) {
                Some(license_id) => Ok((job, note, *license_id)),
                None => Err(match links.skipped_licenses.get(&job.key_hash) {
                    Some(r) => format!("its licence (licenses row {r}) was skipped"),
                    None => "no licence with this key".to_owned(),
                }),
            }
        });
        let (job, note, license_id) = match checked {
            Ok(ok) => ok,
            Err(reason) => {
                table.push(row.row, label, Outcome::Skipped(reason), None);
                continue;
            }
        };
        let existing: Option<i64> = sqlx::query_scalar("SELECT license_id FROM jobs WHERE id = ?")
            .bind(&job.id)
            .fetch_optional(hub)
            .await?;
        let outcome = match existing {
            None => {
                plan.writes.push(Write::InsertJob(job));
                Outcome::Imported
            }
            Some(owner) if Some(owner) == license_id => Outcome::Unchanged,
            Some(_) => {
                Outcome::Skipped("the hub has a job with this id for another licence".into())
            }
        };
        table.push(row.row, label, outcome, note);
    }
    plan.tables.push(table);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(status: &str, targets: &str) -> LegacyBuild {
        LegacyBuild {
            row: 1,
            id: "b-1".into(),
            license_key: Some(shared::config::Secret::new("PRO-KEY")),
            tier: Some("pro".into()),
            targets: Some(targets.into()),
            status: Some(status.into()),
            queued_at: Some(100),
            started_at: Some(200),
            completed_at: Some(300),
            ..LegacyBuild::default()
        }
    }

    #[test]
    fn finished_builds_keep_their_state_and_times() {
        let (j, note) = job(&build("completed", r#"["ios","macos"]"#), 9).unwrap();
        assert_eq!(
            (j.state.as_str(), j.target.as_str(), j.priority.0),
            ("completed", "ios", 10)
        );
        assert_eq!(
            (j.enqueued_ms, j.started_ms, j.finished_ms),
            (100, Some(200), 300)
        );
        assert_eq!((j.attempt, note), (1, None));
        assert!(j.manifest.contains("macos"));
        assert_eq!(
            job(&build("canceled", "linux"), 9)
                .unwrap()
                .0
                .state
                .as_str(),
            "cancelled"
        );
    }

    #[test]
    fn unfinished_builds_become_failed_history_and_bad_rows_are_skipped() {
        let (j, note) = job(&build("building", "linux, android"), 9).unwrap();
        assert_eq!(j.state.as_str(), "failed");
        assert_eq!(j.error_message.as_deref(), Some(UNFINISHED));
        assert!(note.is_some_and(|n| n.contains("building")));
        assert_eq!(job(&build("completed", "[]"), 9).unwrap_err(), "no target");
        assert_eq!(
            job(&build("completed", "[x"), 9).unwrap_err(),
            "malformed targets JSON"
        );
        let mut b = build("completed", "linux");
        b.license_key = None;
        assert_eq!(job(&b, 9).unwrap_err(), "no licence key");
    }
}
