//! Reading a job's log back: replay pages, where a replay of the newest log lines starts, and
//! counts for an attempt.

use shared::db::Text;
use sqlx::{AnyConnection, AnyPool};

use super::Numbered;
use crate::Result;

/// Events of a job after `after_seq`, in order, at most `limit`.
pub async fn after(
    pool: &AnyPool,
    job_id: &str,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<Numbered>> {
    let rows: Vec<(i64, Text)> = sqlx::query_as(
        "SELECT seq, payload FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(job_id)
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    decode_rows(rows)
}

fn decode_rows(rows: Vec<(i64, Text)>) -> Result<Vec<Numbered>> {
    rows.into_iter()
        .map(|(seq, payload)| {
            Ok(Numbered {
                seq,
                event: serde_json::from_str(&payload.0)?,
            })
        })
        .collect()
}

/// The sequence number of the `keep`-th newest log line of a job, when it has more than
/// `keep`: a replay that skips older log lines starts there (through `ix_job_events_kind`).
pub async fn newest_logs_start(
    conn: &mut AnyConnection,
    job_id: &str,
    keep: u32,
) -> Result<Option<i64>> {
    if keep == 0 {
        return Ok(None);
    }
    let older: Option<i64> = sqlx::query_scalar(
        "SELECT seq FROM job_events WHERE job_id = ? AND kind = 'log' \
         ORDER BY seq DESC LIMIT 1 OFFSET ?",
    )
    .bind(job_id)
    .bind(i64::from(keep))
    .fetch_optional(conn)
    .await?;
    // `older` is the newest line that is skipped; the kept ones start after it.
    Ok(older.map(|seq| seq + 1))
}

/// A job's events other than log lines with `after_seq < seq < before_seq`, in order: what a
/// replay that skips older log lines still sends of them.
pub async fn between_without_logs(
    pool: &AnyPool,
    job_id: &str,
    after_seq: i64,
    before_seq: i64,
    limit: u32,
) -> Result<Vec<Numbered>> {
    let rows: Vec<(i64, Text)> = sqlx::query_as(
        "SELECT seq, payload FROM job_events \
         WHERE job_id = ? AND seq > ? AND seq < ? AND kind <> 'log' ORDER BY seq LIMIT ?",
    )
    .bind(job_id)
    .bind(after_seq)
    .bind(before_seq)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    decode_rows(rows)
}

/// How many events of `kind` a job has stored since `since_ms` (its current attempt's
/// assignment, so an earlier attempt's events do not count for it).
pub async fn count_since(
    conn: &mut AnyConnection,
    job_id: &str,
    kind: &str,
    since_ms: i64,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_events WHERE job_id = ? AND kind = ? AND created_ms >= ?",
    )
    .bind(job_id)
    .bind(kind)
    .bind(since_ms)
    .fetch_one(conn)
    .await?)
}
