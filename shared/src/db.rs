//! MySQL: the pool, the embedded migrations and settings.

use std::time::Duration;

use sqlx::{
    migrate::Migrator,
    mysql::{MySqlConnection, MySqlPool, MySqlPoolOptions},
};

use crate::{clock::now_ms, config::DbConfig};

/// The schema, embedded from `shared/migrations`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connect a pool, retrying for up to `wait` while the server comes up.
pub async fn connect(config: &DbConfig, wait: Duration) -> anyhow::Result<MySqlPool> {
    let options = config.connect_options()?;
    crate::install_tls_provider();
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

/// Whether a transaction failed only because it lost a race for locks (a deadlock, SQLSTATE
/// 40001) and can simply be run again.
pub fn is_deadlock(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40001")
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
