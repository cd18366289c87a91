//! The MySQL / MariaDB fragment and its sqlx connect options.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::{ConfigError, Secret};

/// MySQL / MariaDB connection settings.
#[derive(Debug, Clone, Args)]
pub struct DbConfig {
    /// Full MySQL URL (mysql://user:pass@host:port/db); overrides the PERRY_DB_* parts.
    #[arg(
        id = "database-url",
        long = "database-url",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub url: Option<Secret>,
    /// MySQL host.
    #[arg(
        id = "db-host",
        long = "db-host",
        env = "PERRY_DB_HOST",
        default_value = "localhost"
    )]
    pub host: String,
    /// MySQL port.
    #[arg(
        id = "db-port",
        long = "db-port",
        env = "PERRY_DB_PORT",
        default_value_t = 3306
    )]
    pub port: u16,
    /// MySQL user.
    #[arg(
        id = "db-user",
        long = "db-user",
        env = "PERRY_DB_USER",
        default_value = "perry"
    )]
    pub user: String,
    /// MySQL password.
    #[arg(
        id = "db-password",
        long = "db-password",
        env = "PERRY_DB_PASSWORD",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: Secret,
    /// MySQL database name.
    #[arg(
        id = "db-name",
        long = "db-name",
        env = "PERRY_DB_NAME",
        default_value = "perry_hub"
    )]
    pub name: String,
    /// Maximum pooled connections per process.
    #[arg(
        id = "db-max-connections",
        long = "db-max-connections",
        env = "PERRY_DB_MAX_CONNECTIONS",
        default_value_t = 20
    )]
    pub max_connections: u32,
    /// TLS to MySQL: `disabled`, `preferred`, `required`, `verify_ca` or `verify_identity`
    /// (empty: the URL's `ssl-mode`, else `preferred`).
    #[arg(
        id = "db-ssl-mode",
        long = "db-ssl-mode",
        env = "PERRY_DB_SSL_MODE",
        default_value = ""
    )]
    pub ssl_mode: String,
    /// PEM file of the CA that signed MySQL's certificate (for `verify_ca`/`verify_identity`).
    #[arg(id = "db-ssl-ca", long = "db-ssl-ca", env = "PERRY_DB_SSL_CA")]
    pub ssl_ca: Option<std::path::PathBuf>,
    /// Which database: `auto`, `sqlite` (the embedded one-box database) or `mysql`. `auto`
    /// means MySQL when DATABASE_URL or any PERRY_DB_HOST/PORT/USER/PASSWORD/NAME is set, and
    /// for the split services; otherwise `perry-hub all` runs on SQLite at
    /// PERRY_DB_SQLITE_PATH.
    #[arg(
        id = "db",
        long = "db",
        env = "PERRY_DB",
        value_enum,
        default_value = "auto"
    )]
    pub kind: DbKind,
    /// The embedded SQLite database file (created with its folder when missing).
    #[arg(
        id = "db-sqlite-path",
        long = "db-sqlite-path",
        env = "PERRY_DB_SQLITE_PATH",
        default_value = "./data/hub.db"
    )]
    pub sqlite_path: PathBuf,
    /// Whether this process may run on the embedded database (only one process can: `perry-hub
    /// all`, `migrate` and `check`). Set by the role, not by a setting.
    #[arg(skip)]
    pub embedded_allowed: bool,
}

/// The database a process is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DbKind {
    /// SQLite when nothing names a MySQL server and the role allows it, else MySQL.
    #[default]
    Auto,
    /// The embedded SQLite database.
    Sqlite,
    /// MySQL or MariaDB.
    Mysql,
}

/// Settings that name a MySQL server: any of them set means `auto` picks MySQL.
const MYSQL_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "PERRY_DB_HOST",
    "PERRY_DB_PORT",
    "PERRY_DB_USER",
    "PERRY_DB_PASSWORD",
    "PERRY_DB_PASSWORD_FILE",
    "PERRY_DB_NAME",
];

impl DbConfig {
    /// The SQLite file this process runs on, or `None` for MySQL. `DATABASE_URL=sqlite://<path>`
    /// also names one. A split service asked for SQLite is refused (`SQLITE_ONE_PROCESS`):
    /// the embedded database belongs to the one `perry-hub all` process.
    pub fn embedded(&self) -> Result<Option<&Path>, ConfigError> {
        let from_url = self.url.as_ref().and_then(|u| {
            let u = u.expose();
            u.strip_prefix("sqlite://")
                .or_else(|| u.strip_prefix("sqlite:"))
                .map(Path::new)
        });
        let wanted = match (self.kind, from_url) {
            (DbKind::Mysql, _) => return Ok(None),
            (_, Some(path)) => Some(path),
            (DbKind::Sqlite, None) => Some(self.sqlite_path.as_path()),
            (DbKind::Auto, None) => {
                let named = MYSQL_VARIABLES
                    .iter()
                    .any(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()));
                (!named && self.embedded_allowed).then_some(self.sqlite_path.as_path())
            }
        };
        match wanted {
            Some(_) if !self.embedded_allowed => Err(ConfigError::new(
                "PERRY_DB",
                "SQLITE_ONE_PROCESS: the embedded SQLite database serves only `perry-hub all`; \
                 the split services need MySQL (DATABASE_URL or PERRY_DB_*)",
            )),
            Some(path) if path.as_os_str().is_empty() => Err(ConfigError::new(
                "PERRY_DB_SQLITE_PATH",
                "must not be empty",
            )),
            other => Ok(other),
        }
    }

    /// Apply `PERRY_DB_SSL_MODE` and `PERRY_DB_SSL_CA` on top of `options`.
    fn with_tls(
        &self,
        mut options: sqlx::mysql::MySqlConnectOptions,
    ) -> Result<sqlx::mysql::MySqlConnectOptions, ConfigError> {
        let mode = self.ssl_mode.trim();
        if !mode.is_empty() {
            let parsed = mode
                .to_ascii_lowercase()
                .replace('-', "_")
                .parse()
                .map_err(|_| {
                    ConfigError::new(
                        "PERRY_DB_SSL_MODE",
                        "use disabled, preferred, required, verify_ca or verify_identity",
                    )
                })?;
            options = options.ssl_mode(parsed);
        }
        if let Some(ca) = &self.ssl_ca {
            if !ca.is_file() {
                return Err(ConfigError::new(
                    "PERRY_DB_SSL_CA",
                    "is not a readable file",
                ));
            }
            options = options.ssl_ca(ca);
        }
        Ok(options)
    }

    /// Connection options for sqlx.
    pub fn connect_options(&self) -> Result<sqlx::mysql::MySqlConnectOptions, ConfigError> {
        use sqlx::mysql::MySqlConnectOptions;
        if let Some(url) = self
            .url
            .as_ref()
            .filter(|u| !u.expose().starts_with("sqlite:"))
        {
            let scheme_ok =
                url.expose().starts_with("mysql://") || url.expose().starts_with("mariadb://");
            if !scheme_ok {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    "must start with mysql://, mariadb:// or sqlite://",
                ));
            }
            let options = url
                .expose()
                .parse::<MySqlConnectOptions>()
                .map_err(|e| ConfigError::new("DATABASE_URL", format!("not a MySQL URL: {e}")))?;
            return self.with_tls(options);
        }
        if self.name.is_empty() {
            return Err(ConfigError::new("PERRY_DB_NAME", "must not be empty"));
        }
        // "localhost" would make sqlx try the unix socket path semantics of libmysql; use TCP.
        let host = if self.host == "localhost" {
            "127.0.0.1"
        } else {
            &self.host
        };
        self.with_tls(
            MySqlConnectOptions::new()
                .host(host)
                .port(self.port)
                .username(&self.user)
                .password(self.password.expose())
                .database(&self.name)
                .charset("utf8mb4"),
        )
    }

    /// Settings for a test database on the same server.
    pub fn with_database(&self, name: &str) -> Self {
        let mut c = self.clone();
        c.url = None;
        c.name = name.to_owned();
        c
    }
}
