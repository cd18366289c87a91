//! MySQL: the pool, the embedded migrations and the per-job event log.

use std::time::Duration;

use sqlx::{
    migrate::Migrator,
    mysql::{MySqlConnection, MySqlPool, MySqlPoolOptions},
};

use crate::{
    clock::now_ms,
    config::DbConfig,
    queue::{self, outbox, Message},
};

/// The schema, embedded from `shared/migrations`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connect a pool, retrying for up to `wait` while the server comes up.
pub async fn connect(config: &DbConfig, wait: Duration) -> anyhow::Result<MySqlPool> {
    let options = config.connect_options()?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let attempt = MySqlPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(anyhow::Error::new(error).context("connecting to MySQL")),
        }
    }
}

/// Apply pending migrations. Idempotent.
pub async fn migrate(pool: &MySqlPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("running migrations: {e}"))
}

/// Readiness: a round trip to the database.
pub async fn check(pool: &MySqlPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// Append an event to a job's ordered log and queue its fan-out, in the caller's transaction.
/// Returns the event's sequence number (1, 2, ... per job). The row lock on the job serialises
/// writers from every service, so sequence numbers are gap-free and ordered.
pub async fn append_event(
    conn: &mut MySqlConnection,
    job_id: &str,
    kind: &str,
    frame: &serde_json::Value,
) -> queue::Result<i64> {
    let res = sqlx::query("UPDATE jobs SET event_seq = LAST_INSERT_ID(event_seq + 1) WHERE id = ?")
        .bind(job_id)
        .execute(&mut *conn)
        .await?;
    if res.rows_affected() == 0 {
        return Err(queue::Error::Db(sqlx::Error::RowNotFound));
    }
    let seq: i64 = sqlx::query_scalar("SELECT CAST(LAST_INSERT_ID() AS SIGNED)")
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO job_events (job_id, seq, kind, payload, created_ms) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(job_id)
    .bind(seq)
    .bind(kind)
    .bind(frame.to_string())
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    outbox::enqueue(
        conn,
        &Message::JobEvent {
            job_id: job_id.to_owned(),
            seq,
            kind: kind.to_owned(),
            frame: frame.clone(),
        },
    )
    .await?;
    Ok(seq)
}

/// A stored event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    /// Sequence number within the job.
    pub seq: i64,
    /// Frame type.
    pub kind: String,
    /// The frame as stored (JSON).
    pub payload: String,
}

/// Events of a job after `after_seq`, in order, at most `limit`.
pub async fn events_after(
    pool: &MySqlPool,
    job_id: &str,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as("SELECT seq, kind, payload FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?")
        .bind(job_id)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// Read a setting.
pub async fn get_setting(pool: &MySqlPool, name: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Write a setting.
pub async fn set_setting(
    conn: &mut MySqlConnection,
    name: &str,
    value: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO settings (name, value, updated_ms) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value), updated_ms = VALUES(updated_ms)")
        .bind(name)
        .bind(value)
        .bind(now_ms())
        .execute(conn)
        .await
        .map(|_| ())
}

/// Name of the setting holding the expected worker compiler version.
pub const SETTING_EXPECTED_VERSION: &str = "expected_version";
