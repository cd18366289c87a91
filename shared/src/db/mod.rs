//! MySQL: the pool, the embedded migrations and settings.

use std::time::Duration;

use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::Migrator,
    mysql::MySqlConnectOptions,
    AnyConnection, AnyPool, ConnectOptions,
};

use crate::{clock::now_ms, config::DbConfig};

mod dialect;
mod sqlite;
mod types;

pub use dialect::{begin, inserted_id, sql, Dialect};
pub use types::{Flag, OptHex, OptText, Text};

/// The MySQL schema, embedded from `shared/migrations`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The SQLite schema, embedded from `shared/migrations-sqlite`.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations-sqlite");

/// The migrations of `pool`'s dialect.
pub fn migrator(pool: &AnyPool) -> &'static Migrator {
    match Dialect::of_pool(pool) {
        Dialect::MySql => &MIGRATOR,
        Dialect::Sqlite => &SQLITE_MIGRATOR,
    }
}

/// Why a connection to MySQL failed for good. Each variant has a stable [`ConnectError::code`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Wrong user or password (MySQL error 1045; 1698 when the account matched has no password,
    /// such as an anonymous one), or no rights on the database (1044).
    #[error("DB_ACCESS_DENIED: MySQL refused user {user:?} (error {number}): check PERRY_DB_USER, PERRY_DB_PASSWORD and PERRY_DB_NAME (or DATABASE_URL) and the user's grants")]
    AccessDenied {
        /// The configured user.
        user: String,
        /// The server's error number.
        number: u16,
    },
    /// The database does not exist (MySQL error 1049).
    #[error("DB_UNKNOWN_DATABASE: MySQL has no database {database:?} (error 1049): create it or fix PERRY_DB_NAME (or DATABASE_URL)")]
    UnknownDatabase {
        /// The configured database.
        database: String,
    },
    /// The server is too old: no `SKIP LOCKED`.
    #[error("DB_UNSUPPORTED_VERSION: {version} is not supported: Perry Hub needs MySQL >= 8.0.1 or MariaDB >= 10.6 (SELECT ... SKIP LOCKED)")]
    UnsupportedVersion {
        /// What `SELECT VERSION()` answered.
        version: String,
    },
}

impl ConnectError {
    /// The stable code (the message starts with it).
    pub fn code(&self) -> &'static str {
        match self {
            Self::AccessDenied { .. } => "DB_ACCESS_DENIED",
            Self::UnknownDatabase { .. } => "DB_UNKNOWN_DATABASE",
            Self::UnsupportedVersion { .. } => "DB_UNSUPPORTED_VERSION",
        }
    }

    /// The permanent failure `error` stands for, if it is one: waiting will not fix a wrong
    /// password or a missing database, so the connect loop gives up at once.
    pub fn classify(error: &sqlx::Error, options: &MySqlConnectOptions) -> Option<Self> {
        let number = error
            .as_database_error()?
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()?
            .number();
        match number {
            1044 | 1045 | 1698 => Some(Self::AccessDenied {
                user: options.get_username().to_owned(),
                number,
            }),
            1049 => Some(Self::UnknownDatabase {
                database: options.get_database().unwrap_or_default().to_owned(),
            }),
            _ => None,
        }
    }
}

/// Connect a pool, retrying for up to `wait` while the server comes up. A wrong password or an
/// unknown database fails at once with a [`ConnectError`].
pub async fn connect(config: &DbConfig, wait: Duration) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    if let Some(path) = config.embedded()? {
        return sqlite::connect(path).await;
    }
    let options = config.connect_options()?;
    crate::install_tls_provider();
    // sqlx writes certificate paths into the URL as `file: <path>`, which its own parser then
    // reads as a path of that name; they are put back as plain paths.
    let mut url = options.to_url_lossy();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = v
                .strip_prefix("file: ")
                .map_or_else(|| v.to_string(), str::to_owned);
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let any = AnyConnectOptions::from_url(&url)?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let attempt = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(any.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(error) => {
                if let Some(permanent) = ConnectError::classify(&error, &options) {
                    return Err(permanent.into());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(anyhow::Error::new(error).context("connecting to MySQL"));
                }
                tracing::warn!(%error, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// A server's `SELECT VERSION()`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// The raw answer, e.g. `10.11.6-MariaDB-0+deb12u1` or `8.4.3`.
    pub raw: String,
    /// Whether the server is MariaDB.
    pub mariadb: bool,
    /// Whether this is the embedded SQLite library.
    pub sqlite: bool,
    /// Major, minor, patch.
    pub number: (u32, u32, u32),
}

impl ServerVersion {
    /// Parse a `VERSION()` answer.
    pub fn parse(raw: &str) -> Self {
        // MariaDB 10.x in replication setups may answer `5.5.5-10.11.6-MariaDB`.
        let trimmed = raw.strip_prefix("5.5.5-").unwrap_or(raw);
        let mut parts = trimmed
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let number = (
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        );
        Self {
            raw: raw.to_owned(),
            mariadb: raw.to_ascii_lowercase().contains("mariadb"),
            sqlite: false,
            number,
        }
    }

    /// Parse SQLite's `sqlite_version()`.
    pub fn sqlite(raw: &str) -> Self {
        Self {
            sqlite: true,
            ..Self::parse(raw)
        }
    }

    /// Whether the server has what the hub needs: `SKIP LOCKED` (MySQL >= 8.0.1, MariaDB >=
    /// 10.6); for SQLite, `RETURNING` and upserts without a conflict target (3.35).
    pub fn supported(&self) -> bool {
        let minimum = if self.sqlite {
            (3, 35, 0)
        } else if self.mariadb {
            (10, 6, 0)
        } else {
            (8, 0, 1)
        };
        self.number >= minimum
    }

    /// `Ok` when supported, else [`ConnectError::UnsupportedVersion`].
    pub fn require_supported(&self) -> Result<(), ConnectError> {
        if self.supported() {
            Ok(())
        } else {
            Err(ConnectError::UnsupportedVersion {
                version: self.to_string(),
            })
        }
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let product = if self.sqlite {
            "SQLite"
        } else if self.mariadb {
            "MariaDB"
        } else {
            "MySQL"
        };
        write!(f, "{product} {}", self.raw)
    }
}

/// The server's version.
pub async fn server_version(pool: &AnyPool) -> Result<ServerVersion, sqlx::Error> {
    if Dialect::of_pool(pool).is_sqlite() {
        let raw: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(pool)
            .await?;
        return Ok(ServerVersion::sqlite(&raw));
    }
    let raw: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(pool)
        .await?;
    Ok(ServerVersion::parse(&raw))
}

/// How many of the embedded migrations the database has applied (0 when it was never migrated).
pub async fn applied_migrations(pool: &AnyPool) -> Result<usize, sqlx::Error> {
    let exists: i64 = sqlx::query_scalar(match Dialect::of_pool(pool) {
        Dialect::MySql => "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '_sqlx_migrations'",
        Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    })
    .fetch_one(pool)
    .await?;
    if exists == 0 {
        return Ok(0);
    }
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await?;
    Ok(usize::try_from(applied).unwrap_or(0))
}

/// Apply pending migrations. Idempotent; refuses a server without `SKIP LOCKED`. sqlx holds a
/// lock while it migrates, so concurrent callers (one init container per pod) take turns.
pub async fn migrate(pool: &AnyPool) -> anyhow::Result<()> {
    server_version(pool)
        .await
        .map_err(|e| anyhow::anyhow!("reading the server version: {e}"))?
        .require_supported()?;
    migrator(pool)
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("running migrations: {e}"))
}

/// Readiness: a round trip to the database.
pub async fn check(pool: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// Whether a transaction failed only because it lost a race for locks (a deadlock, SQLSTATE
/// 40001, or a lock wait that timed out, error 1205) and can simply be run again.
pub fn is_deadlock(error: &sqlx::Error) -> bool {
    let Some(db) = error.as_database_error() else {
        return false;
    };
    // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) with their extended codes, when the busy
    // timeout ran out.
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6));
    }
    db.code().is_some_and(|code| code == "40001")
        || db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .is_some_and(|e| e.number() == 1205)
}

/// Read a setting.
pub async fn get_setting(pool: &AnyPool, name: &str) -> Result<Option<String>, sqlx::Error> {
    let value: Option<Text> = sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(value.map(String::from))
}

/// Write a setting.
pub async fn set_setting(
    conn: &mut AnyConnection,
    name: &str,
    value: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&crate::db::sql(Dialect::of(conn), "INSERT INTO settings (name, value, updated_ms) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value), updated_ms = VALUES(updated_ms)"))
        .bind(name)
        .bind(value)
        .bind(now_ms())
        .execute(conn)
        .await
        .map(|_| ())
}

/// Name of the setting holding the expected worker compiler version.
pub const SETTING_EXPECTED_VERSION: &str = "expected_version";

#[cfg(test)]
mod tests {
    use super::ServerVersion;

    #[test]
    fn server_version_parses_mysql_and_mariadb_answers_and_knows_the_minimum() {
        let cases = [
            ("8.4.3", false, (8, 4, 3), true),
            ("8.0.0-dmr", false, (8, 0, 0), false),
            ("8.0.1", false, (8, 0, 1), true),
            ("5.7.44-log", false, (5, 7, 44), false),
            ("10.11.6-MariaDB-0+deb12u1", true, (10, 11, 6), true),
            ("10.5.23-MariaDB", true, (10, 5, 23), false),
            ("5.5.5-10.6.16-MariaDB", true, (10, 6, 16), true),
            ("11.4.2-MariaDB-ubu2404", true, (11, 4, 2), true),
        ];
        for (raw, mariadb, number, supported) in cases {
            let v = ServerVersion::parse(raw);
            assert_eq!(
                (v.mariadb, v.number, v.supported()),
                (mariadb, number, supported),
                "{raw}"
            );
        }
    }

    #[test]
    fn an_unsupported_server_is_refused_with_a_stable_code() {
        let error = ServerVersion::parse("10.5.23-MariaDB")
            .require_supported()
            .unwrap_err();
        assert_eq!(error.code(), "DB_UNSUPPORTED_VERSION");
        assert!(error
            .to_string()
            .starts_with("DB_UNSUPPORTED_VERSION: MariaDB 10.5.23"));
    }
}
