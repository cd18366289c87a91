//! The embedded database: one SQLite file in WAL mode, for a hub on one box (`perry-hub all`
//! with no MySQL configured).

use std::{path::Path, time::Duration};

use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
    AnyPool, ConnectOptions, Connection, Executor,
};

/// Connections of the pool: readers run side by side in WAL mode; writers take turns.
const MAX_CONNECTIONS: u32 = 8;
/// How long a writer waits for another's transaction before its statement fails (`BUSY`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Open (creating it and its folder when missing) the database at `path`.
pub(super) async fn connect(path: &Path) -> anyhow::Result<AnyPool> {
    // The `Any` driver connects by URL, where a relative path would read as a host name.
    let path = &std::path::absolute(path)
        .map_err(|e| anyhow::anyhow!("the SQLite path {}: {e}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    // WAL is a property of the file: set it once, on a connection of its own, before the pool
    // opens (changing it needs the only connection). Commits are synchronous (FULL): an
    // accepted job survives a power cut, not only a crash.
    let native = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let first = native
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("opening the SQLite database {}: {e}", path.display()))?;
    first.close().await?;
    let url = native.to_url_lossy();
    let options = AnyConnectOptions::from_url(&url)?;
    let timeout_ms = BUSY_TIMEOUT.as_millis();
    let pool = AnyPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                // The URL carries only the file and mode; the settings every connection needs.
                conn.execute(
                    format!(
                        "PRAGMA busy_timeout = {timeout_ms}; PRAGMA foreign_keys = ON; \
                         PRAGMA synchronous = FULL"
                    )
                    .as_str(),
                )
                .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}
