//! Admin view of jobs (issue 17): the list with filters and keyset paging, and one job with its
//! attempts, events and artifacts. Cancel and requeue are in [`super::actions`].

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    Json,
};
use job::{JobState, Target};
use serde::Serialize;
use serde_json::Value;
use shared::http::{ApiError, ApiResult};

use super::params::Params;
use crate::{access::Admin, errors, AppState};

/// Most jobs in one page.
pub const MAX_PAGE: u32 = 200;
/// Most events in one job answer.
pub const MAX_EVENTS: u32 = 1000;

/// A job in the admin list.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct JobSummary {
    /// Job id.
    pub job_id: String,
    /// Lifecycle state.
    pub state: String,
    /// The target the CLI asked for.
    pub target: String,
    /// The queue of the current stage.
    pub stage_target: String,
    /// 1 (build) or 2 (signing).
    pub stage: i16,
    /// The project.
    pub project: String,
    /// The submitting licence.
    pub license_id: i64,
    /// Its account, if linked.
    pub account_id: Option<String>,
    /// Dispatches so far.
    pub attempt: i32,
    /// Requeues after lost workers in this stage.
    pub retries: i32,
    /// The worker of the current or last attempt.
    pub worker_name: Option<String>,
    /// Submission time (epoch ms).
    pub created_ms: i64,
    /// First dispatch of the current attempt (epoch ms).
    pub assigned_ms: Option<i64>,
    /// End time (epoch ms).
    pub finished_ms: Option<i64>,
    /// Why it failed.
    #[sqlx(try_from = "shared::db::OptText")]
    pub error: Option<String>,
}

const SUMMARY_COLUMNS: &str = "j.id AS job_id, j.state, j.original_target AS target, \
    j.target AS stage_target, j.stage, j.project, j.license_id, l.account_id, j.attempt, j.retries, \
    j.worker_name, j.created_ms, j.assigned_ms, j.finished_ms, j.error_message AS error";

/// A page of jobs.
#[derive(Debug, Serialize)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<JobSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/admin/jobs?state=&target=&license_id=&account_id=&since_ms=&until_ms=&limit=&cursor=`.
pub async fn list_jobs(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<JobPage>> {
    let mut p = Params::new(
        query,
        &[
            "state",
            "target",
            "license_id",
            "account_id",
            "since_ms",
            "until_ms",
            "limit",
            "cursor",
        ],
    )?;
    let mut sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM jobs j JOIN licenses l ON l.id = j.license_id WHERE 1 = 1"
    );
    let mut binds: Vec<Bind> = Vec::new();
    if let Some(s) = p.take("state") {
        let states = s
            .split(',')
            .map(|one| {
                one.trim().parse::<JobState>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "Invalid state '{one}': one of queued, assigned, running, finishing, completed, failed, cancelled"
                    ))
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        sql.push_str(&format!(
            " AND j.state IN ({})",
            vec!["?"; states.len()].join(", ")
        ));
        binds.extend(states.iter().map(|s| Bind::Text(s.as_str().to_owned())));
    }
    if let Some(t) = p.take("target") {
        let target = Target::parse(&t)
            .map_err(|_| ApiError::bad_request(format!("Invalid target '{t}'")))?;
        sql.push_str(" AND (j.original_target = ? OR j.target = ?)");
        binds.push(Bind::Text(target.as_str().to_owned()));
        binds.push(Bind::Text(target.as_str().to_owned()));
    }
    if let Some(id) = p.int("license_id")? {
        sql.push_str(" AND j.license_id = ?");
        binds.push(Bind::Int(id));
    }
    if let Some(account) = p.take("account_id") {
        sql.push_str(" AND l.account_id = ?");
        binds.push(Bind::Text(account));
    }
    if let Some(since) = p.int("since_ms")? {
        sql.push_str(" AND j.created_ms >= ?");
        binds.push(Bind::Int(since));
    }
    if let Some(until) = p.int("until_ms")? {
        sql.push_str(" AND j.created_ms < ?");
        binds.push(Bind::Int(until));
    }
    if let Some(cursor) = p.take("cursor") {
        let (ms, id) = parse_cursor(&cursor)?;
        sql.push_str(" AND (j.created_ms < ? OR (j.created_ms = ? AND j.id < ?))");
        binds.extend([Bind::Int(ms), Bind::Int(ms), Bind::Text(id)]);
    }
    let limit = p.limit(50, MAX_PAGE)?;
    sql.push_str(" ORDER BY j.created_ms DESC, j.id DESC LIMIT ?");
    let mut q = sqlx::query_as::<_, JobSummary>(&sql);
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s),
            Bind::Int(i) => q.bind(i),
        };
    }
    let mut jobs = q
        .bind(i64::from(limit) + 1)
        .fetch_all(&state.deps.pool)
        .await?;
    let next_cursor = if jobs.len() > limit as usize {
        jobs.truncate(limit as usize);
        jobs.last()
            .map(|j| format!("{}.{}", j.created_ms, j.job_id))
    } else {
        None
    };
    Ok(Json(JobPage { jobs, next_cursor }))
}

enum Bind {
    Text(String),
    Int(i64),
}

fn parse_cursor(cursor: &str) -> ApiResult<(i64, String)> {
    cursor
        .split_once('.')
        .and_then(|(ms, id)| Some((ms.parse().ok()?, id.to_owned())))
        .filter(|(_, id)| !id.is_empty() && id.len() <= 36)
        .ok_or_else(|| ApiError::bad_request("Invalid cursor: pass next_cursor unchanged"))
}

/// One dispatch of a job.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    /// Attempt number.
    pub attempt: i32,
    /// Stage it ran.
    pub stage: i16,
    /// Queue it came from.
    pub target: String,
    /// The worker.
    pub worker_name: String,
    /// When it was assigned (epoch ms).
    pub assigned_ms: i64,
}

/// A stored event.
#[derive(Debug, Serialize)]
pub struct EventRow {
    /// Sequence number.
    pub seq: i64,
    /// Kind (`log`, `progress`, `complete`, …).
    pub kind: String,
    /// When it was stored (epoch ms).
    pub created_ms: i64,
    /// The stored event.
    pub payload: Value,
}

/// An artifact of any attempt.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ArtifactRow {
    /// Artifact id.
    pub id: String,
    /// The attempt that uploaded it.
    pub attempt: i32,
    /// File name.
    pub name: String,
    /// Its target.
    pub target: String,
    /// Bytes.
    pub size: i64,
    /// SHA-256 (hex).
    pub sha256: String,
    /// Intermediate (stage-1 bundle).
    #[sqlx(try_from = "shared::db::Flag")]
    pub hidden: bool,
    /// When it is deleted (epoch ms).
    pub expires_ms: i64,
}

/// `GET /api/v1/admin/jobs/{job_id}`.
#[derive(Debug, Serialize)]
pub struct JobDetail {
    /// The summary.
    #[serde(flatten)]
    pub job: JobSummary,
    /// Cancel asked while a worker holds it.
    pub cancel_requested: bool,
    /// Every dispatch, oldest first.
    pub attempts: Vec<AttemptRow>,
    /// Events after `after_seq`, oldest first (at most `limit`).
    pub events: Vec<EventRow>,
    /// Every artifact.
    pub artifacts: Vec<ArtifactRow>,
}

/// `GET /api/v1/admin/jobs/{job_id}?after_seq=&limit=`.
pub async fn get_job(
    State(state): State<AppState>,
    _admin: Admin,
    Path(job_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<JobDetail>> {
    let mut p = Params::new(query, &["after_seq", "limit"])?;
    let after_seq = p.int("after_seq")?.unwrap_or(0);
    let limit = p.limit(500, MAX_EVENTS)?;
    let pool = &state.deps.pool;
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM jobs j JOIN licenses l ON l.id = j.license_id WHERE j.id = ?"
    );
    let job: JobSummary = sqlx::query_as(&sql)
        .bind(&job_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(errors::job_not_found)?;
    let cancel_requested: shared::db::Flag =
        sqlx::query_scalar("SELECT cancel_requested FROM jobs WHERE id = ?")
            .bind(&job_id)
            .fetch_one(pool)
            .await?;
    let cancel_requested = cancel_requested.into();
    let attempts = sqlx::query_as(
        "SELECT attempt, stage, target, worker_name, assigned_ms FROM job_attempts WHERE job_id = ? ORDER BY attempt",
    )
    .bind(&job_id)
    .fetch_all(pool)
    .await?;
    let rows: Vec<(i64, String, i64, shared::db::Text)> = sqlx::query_as(
        "SELECT seq, kind, created_ms, payload FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(&job_id)
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let events = rows
        .into_iter()
        .map(
            |(seq, kind, created_ms, shared::db::Text(payload))| EventRow {
                seq,
                kind,
                created_ms,
                payload: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
            },
        )
        .collect();
    let artifacts = sqlx::query_as(
        "SELECT id, attempt, name, target, size, sha256, hidden, expires_ms FROM artifacts WHERE job_id = ? ORDER BY created_ms, id",
    )
    .bind(&job_id)
    .fetch_all(pool)
    .await?;
    Ok(Json(JobDetail {
        job,
        cancel_requested,
        attempts,
        events,
        artifacts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(
            parse_cursor("1700000000000.abc-def").unwrap(),
            (1_700_000_000_000, "abc-def".to_owned())
        );
        assert!(parse_cursor("nope").is_err());
        assert!(parse_cursor("12.").is_err());
        assert!(parse_cursor("x.abc").is_err());
    }
}
