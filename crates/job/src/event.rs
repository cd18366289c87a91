//! The job's ordered event log: every frame its subscribers are sent, numbered 1, 2, … per job,
//! stored for replay (A6) and announced for fan-out to every dispatcher replica.

use protocol::{ArtifactInfo, Outgoing};
use serde::{Deserialize, Serialize};
use shared::db::Dialect;
use shared::{
    clock::now_ms,
    queue::{outbox, Message},
};
use sqlx::{any::AnyQueryResult, AnyConnection};

use crate::Result;

mod batch;
mod read;

pub use batch::append_batch;
pub use read::{after, between_without_logs, count_since, newest_logs_start};

/// A stored event of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A frame sent to subscribers as it is: `stage`, `progress`, `log`, `published`,
    /// `queue_update`, `error` or `complete`.
    Frame(Outgoing),
    /// An artifact was uploaded. Each subscriber gets it as `artifact_ready` with a download
    /// link of its own while the artifact is kept.
    ArtifactReady(ArtifactRecord),
}

/// The stored form of `artifact_ready`: everything but the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Job id.
    pub job_id: String,
    /// The artifact's id (its download links point at it).
    pub artifact_id: String,
    /// `x-artifact-target` of the upload.
    pub target: String,
    /// User-visible name.
    pub artifact_name: String,
    /// Size in bytes.
    pub artifact_size: u64,
    /// SHA-256 of the bytes (hex).
    pub sha256: String,
}

/// Only `"artifact_ready"`: tells the stored record apart from the frames.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ArtifactTag {
    ArtifactReady,
}

#[derive(Serialize, Deserialize)]
struct TaggedRecord<R> {
    #[serde(rename = "type")]
    tag: ArtifactTag,
    #[serde(flatten)]
    record: R,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Artifact(TaggedRecord<ArtifactRecord>),
    Frame(Outgoing),
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Frame(frame) => frame.serialize(s),
            Self::ArtifactReady(record) => TaggedRecord {
                tag: ArtifactTag::ArtifactReady,
                record,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Stored::deserialize(d)? {
            Stored::Artifact(t) => Self::ArtifactReady(t.record),
            Stored::Frame(frame) => Self::Frame(frame),
        })
    }
}

impl Event {
    /// The frame type (`log`, `artifact_ready`, …), stored beside the payload.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Frame(frame) => frame.kind(),
            Self::ArtifactReady(_) => "artifact_ready",
        }
    }

    /// The final `complete` of an attempt that failed.
    pub fn failed_complete(job_id: &str, duration_secs: f64) -> Self {
        Self::Frame(Outgoing::Complete {
            job_id: job_id.to_owned(),
            success: false,
            duration_secs,
            artifacts: Vec::<ArtifactInfo>::new(),
        })
    }
}

impl From<Outgoing> for Event {
    fn from(frame: Outgoing) -> Self {
        Self::Frame(frame)
    }
}

/// An event as read back, with its place in the job's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Numbered {
    /// Sequence number within the job.
    pub seq: i64,
    /// The event.
    pub event: Event,
}

/// Reserve `count` sequence numbers of the job's log; returns the last. One statement: MySQL
/// reports `LAST_INSERT_ID(expr)` in the statement's OK packet (the insert id), so no
/// `SELECT LAST_INSERT_ID()` follows; SQLite answers with `RETURNING`.
async fn bump_seq(conn: &mut AnyConnection, job_id: &str, count: i64) -> Result<i64> {
    if Dialect::of(conn).is_sqlite() {
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE jobs SET event_seq = event_seq + ? WHERE id = ? RETURNING event_seq",
        )
        .bind(count)
        .bind(job_id)
        .fetch_optional(&mut *conn)
        .await?;
        return seq.ok_or_else(|| sqlx::Error::RowNotFound.into());
    }
    let res = sqlx::query("UPDATE jobs SET event_seq = LAST_INSERT_ID(event_seq + ?) WHERE id = ?")
        .bind(count)
        .bind(job_id)
        .execute(&mut *conn)
        .await?;
    if res.rows_affected() == 0 {
        return Err(sqlx::Error::RowNotFound.into());
    }
    reserved(conn, &res, job_id).await
}

/// A `SET` item that reserves the job's next event number inside a transition's own `UPDATE`
/// (one statement for the state change and the number); [`reserved`] reads the number from
/// that statement's result, and [`append_reserved`] stores the event under it.
pub(crate) fn next_seq(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::MySql => "event_seq = LAST_INSERT_ID(event_seq + 1)",
        Dialect::Sqlite => "event_seq = event_seq + 1",
    }
}

/// The number an `UPDATE` with [`next_seq`] reserved (call only when it changed a row). MySQL
/// has it in the statement's result; on SQLite the transaction holds the database's write
/// lock, so the job's counter is read back unchanged by anyone else.
pub(crate) async fn reserved(
    conn: &mut AnyConnection,
    res: &AnyQueryResult,
    job_id: &str,
) -> Result<i64> {
    let seq = if Dialect::of(conn).is_sqlite() {
        sqlx::query_scalar("SELECT event_seq FROM jobs WHERE id = ?")
            .bind(job_id)
            .fetch_one(&mut *conn)
            .await?
    } else {
        res.last_insert_id().unwrap_or(0)
    };
    Some(seq)
        .filter(|seq| *seq > 0)
        .ok_or_else(|| sqlx::Error::Protocol("no event sequence reserved".into()).into())
}

/// Append an event to the job's log and queue its fan-out, in the caller's transaction.
/// Returns its sequence number. The job's row lock serialises writers from every service, so
/// numbers are gap-free and ordered.
pub async fn append(conn: &mut AnyConnection, job_id: &str, event: &Event) -> Result<i64> {
    let seq = bump_seq(conn, job_id, 1).await?;
    append_reserved(conn, job_id, seq, event).await?;
    Ok(seq)
}

/// [`append`] under a number already reserved with [`NEXT_SEQ`].
pub(crate) async fn append_reserved(
    conn: &mut AnyConnection,
    job_id: &str,
    seq: i64,
    event: &Event,
) -> Result<()> {
    let frame = serde_json::to_value(event)?;
    sqlx::query(
        "INSERT INTO job_events (job_id, seq, kind, payload, created_ms) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(job_id)
    .bind(seq)
    .bind(event.kind())
    .bind(frame.to_string())
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    let message = Message::JobEvent {
        job_id: job_id.to_owned(),
        seq,
        kind: event.kind().to_owned(),
        frame,
    };
    outbox::enqueue(conn, &message).await?;
    Ok(())
}

/// An artifact was stored: ask the dispatcher holding the worker of `attempt` to put its
/// `artifact_ready` into the log, after the frames that worker sent before the upload (the
/// upload arrives over HTTP, the frames over the worker's socket). Whatever this misses (no
/// dispatcher holds the worker right now) [`announce_missing_artifacts`] adds before the job
/// completes.
pub async fn announce_artifact(
    conn: &mut AnyConnection,
    attempt: i32,
    record: &ArtifactRecord,
) -> Result<()> {
    let message = Message::ArtifactStored {
        job_id: record.job_id.clone(),
        attempt,
        artifact: serde_json::to_value(record)?,
    };
    outbox::enqueue(conn, &message).await.map(|_| ())
}

/// Whether the job's log already has `artifact_ready` for this artifact.
pub async fn has_artifact(
    conn: &mut AnyConnection,
    job_id: &str,
    artifact_id: &str,
) -> Result<bool> {
    // Stored payloads are serde_json's compact form, so the id appears exactly like this.
    let needle = format!("%\"artifact_id\":\"{artifact_id}\"%");
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_events WHERE job_id = ? AND kind = 'artifact_ready' AND payload LIKE ?",
    )
    .bind(job_id)
    .bind(needle)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// Append `artifact_ready` for the artifact unless the log has it already. Returns its
/// sequence number when appended.
pub async fn append_artifact(
    conn: &mut AnyConnection,
    record: ArtifactRecord,
) -> Result<Option<(i64, Event)>> {
    if has_artifact(conn, &record.job_id, &record.artifact_id).await? {
        return Ok(None);
    }
    let job_id = record.job_id.clone();
    let event = Event::ArtifactReady(record);
    let seq = append(conn, &job_id, &event).await?;
    Ok(Some((seq, event)))
}

/// Before an attempt completes: `artifact_ready` for every visible artifact it uploaded that the
/// log does not have yet, so the CLI always sees them before `complete`. Returns the attempt's
/// visible artifacts, in upload order (what `complete` lists: the rows are read once, here).
pub async fn announce_missing_artifacts(
    conn: &mut AnyConnection,
    job_id: &str,
    attempt: i32,
) -> Result<Vec<ArtifactInfo>> {
    let rows: Vec<(String, String, String, i64, String)> = sqlx::query_as(
        "SELECT id, name, target, size, sha256 FROM artifacts WHERE job_id = ? AND attempt = ? AND hidden = FALSE \
         ORDER BY created_ms, name",
    )
    .bind(job_id)
    .bind(attempt)
    .fetch_all(&mut *conn)
    .await?;
    let mut listed = Vec::with_capacity(rows.len());
    for (artifact_id, artifact_name, target, size, sha256) in rows {
        let size = u64::try_from(size).unwrap_or(0);
        listed.push(ArtifactInfo {
            name: artifact_name.clone(),
            size,
            sha256: sha256.clone(),
        });
        let record = ArtifactRecord {
            job_id: job_id.to_owned(),
            artifact_id,
            target,
            artifact_name,
            artifact_size: size,
            sha256,
        };
        append_artifact(conn, record).await?;
    }
    Ok(listed)
}

/// Append a frame (see [`append`]).
pub async fn emit(conn: &mut AnyConnection, job_id: &str, frame: Outgoing) -> Result<i64> {
    append(conn, job_id, &Event::Frame(frame)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_events_round_trip_in_their_wire_shape() {
        let record = ArtifactRecord {
            job_id: "j1".into(),
            artifact_id: "a1".into(),
            target: "linux".into(),
            artifact_name: "app.tar.gz".into(),
            artifact_size: 12,
            sha256: "ab".into(),
        };
        let event = Event::ArtifactReady(record);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "artifact_ready");
        assert_eq!(json["artifact_id"], "a1");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);

        let log = Event::Frame(Outgoing::Log {
            job_id: "j1".into(),
            stage: "compiling".into(),
            line: "warning: x".into(),
            stream: "stderr".into(),
        });
        let json = serde_json::to_string(&log).unwrap();
        assert!(json.contains(r#""type":"log""#));
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), log);
        assert_eq!(log.kind(), "log");
        assert_eq!(Event::failed_complete("j1", 1.5).kind(), "complete");
    }
}
