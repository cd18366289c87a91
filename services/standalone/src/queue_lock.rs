//! One process per database on the in-process queue (DEC-35): the queue lives in the process,
//! so a second `perry-hub all` without `AMQP_URL` on the same database would relay outbox rows
//! into a queue the first one's workers never see. A MySQL named lock, held on a connection of
//! its own for the life of the process, makes the second one refuse to start. On the embedded
//! SQLite database the lock is an exclusive lock on the file `<database>.lock` beside it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use shared::runtime::Deps;
use sqlx::{AnyConnection, Connection};

/// The lock's name: one per database (named locks are server-wide), at most 64 characters.
const NAME: &str = "LEFT(CONCAT('perry-hub in-process queue: ', DATABASE()), 64)";
/// How long a starting process waits for the lock: an overlapping restart (the old process
/// still draining) lets go of it within this.
const WAIT: Duration = Duration::from_secs(10);
/// How often the holder checks that it still holds the lock.
const CHECK: Duration = Duration::from_secs(15);

/// Take the lock (waiting up to [`WAIT`]) and hold it until the process stops. Refuses with
/// `IN_PROCESS_QUEUE_TAKEN` when another process holds it. Call before the outbox relay starts.
pub async fn hold(deps: &Deps) -> anyhow::Result<()> {
    if shared::db::Dialect::of_pool(&deps.pool).is_sqlite() {
        return hold_file(deps).await;
    }
    let mut conn = deps.pool.acquire().await?.detach();
    if !take(&mut conn, WAIT).await? {
        anyhow::bail!(TAKEN);
    }
    tracing::debug!("in-process queue lock taken");
    let cancel = deps.cancel.clone();
    let pool = deps.pool.clone();
    deps.tracker.spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(CHECK) => {}
            }
            if still_held(&mut conn).await {
                continue;
            }
            // The connection (and with it the lock) was lost, e.g. MySQL restarted: take it
            // again on a new connection unless another process got it meanwhile.
            let retaken = match pool.acquire().await {
                Ok(c) => {
                    conn = c.detach();
                    take(&mut conn, Duration::ZERO).await.unwrap_or(false)
                }
                Err(_) => false,
            };
            if !retaken {
                tracing::error!(
                    "the in-process queue lock was lost and cannot be taken again; if another \
                     perry-hub without AMQP_URL runs on this database, stop one of them"
                );
            }
        }
        let _ = sqlx::query(&format!("SELECT RELEASE_LOCK({NAME})"))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    });
    Ok(())
}

/// The message of a refused start.
const TAKEN: &str = "IN_PROCESS_QUEUE_TAKEN: another perry-hub without AMQP_URL runs on this \
     database; the in-process queue allows one process per database (set AMQP_URL on every \
     process to run several)";

/// [`hold`] on the embedded database: an exclusive lock on `<database>.lock`, which the
/// operating system releases when the process ends, however it ends.
async fn hold_file(deps: &Deps) -> anyhow::Result<()> {
    let db = sqlite_file(&deps.pool)?;
    let deadline = tokio::time::Instant::now() + WAIT;
    let file = loop {
        match lock_file(&db)? {
            Some(file) => break file,
            None if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None => anyhow::bail!(TAKEN),
        }
    };
    tracing::debug!("in-process queue lock taken");
    let cancel = deps.cancel.clone();
    deps.tracker.spawn(async move {
        cancel.cancelled().await;
        let _ = file.unlock();
    });
    Ok(())
}

/// The file of an embedded database's pool.
pub fn sqlite_file(pool: &sqlx::AnyPool) -> anyhow::Result<PathBuf> {
    let url = &pool.connect_options().database_url;
    url.to_file_path()
        .map_err(|()| anyhow::anyhow!("the SQLite database URL {url} names no file"))
}

/// Take the exclusive lock on `<db>.lock` without waiting: `None` when another process holds
/// it (a hub runs on that database). The lock lasts as long as the returned file.
pub fn lock_file(db: &Path) -> anyhow::Result<Option<std::fs::File>> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", name.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            anyhow::bail!("locking {}: {e}", name.display())
        }
    }
}

/// `GET_LOCK` with a timeout; whether this connection holds the lock now.
async fn take(conn: &mut AnyConnection, wait: Duration) -> Result<bool, sqlx::Error> {
    let got: Option<i64> = sqlx::query_scalar(&format!("SELECT GET_LOCK({NAME}, ?)"))
        .bind(wait.as_secs_f64())
        .fetch_one(conn)
        .await?;
    Ok(got == Some(1))
}

/// Whether this connection still holds the lock.
async fn still_held(conn: &mut AnyConnection) -> bool {
    sqlx::query_scalar::<_, Option<i64>>(&format!("SELECT IS_USED_LOCK({NAME}) = CONNECTION_ID()"))
        .fetch_one(conn)
        .await
        .is_ok_and(|held| held == Some(1))
}
