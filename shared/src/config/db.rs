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

/// Variables that name a MySQL server: any of them set means `auto` picks MySQL (even when set
/// to the default value, which the parsed settings cannot tell apart from unset).
const MYSQL_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "PERRY_DB_HOST",
    "PERRY_DB_PORT",
    "PERRY_DB_USER",
    "PERRY_DB_PASSWORD",
    "PERRY_DB_PASSWORD_FILE",
    "PERRY_DB_NAME",
];

/// Whether a variable of [`MYSQL_VARIABLES`] is set.
fn mysql_in_env() -> bool {
    MYSQL_VARIABLES
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()))
}

impl DbConfig {
    /// The SQLite file this process runs on, or `None` for MySQL. `DATABASE_URL=sqlite://<path>`
    /// also names one. A split service asked for SQLite is refused (`SQLITE_ONE_PROCESS`):
    /// the embedded database belongs to the one `perry-hub all` process.
    pub fn embedded(&self) -> Result<Option<&Path>, ConfigError> {
        self.embedded_given(mysql_in_env())
    }

    /// Whether these settings (or the environment) name a MySQL server, as opposed to the
    /// defaults alone.
    pub fn names_a_mysql_server(&self) -> bool {
        self.names_mysql(mysql_in_env())
    }

    /// Whether a MySQL server is named: a setting differs from its default (a flag or a
    /// variable), or `mysql_in_env` (a variable is set, perhaps to the default value).
    fn names_mysql(&self, mysql_in_env: bool) -> bool {
        mysql_in_env
            || self.url.is_some()
            || self.host != "localhost"
            || self.port != 3306
            || self.user != "perry"
            || !self.password.is_empty()
            || self.name != "perry_hub"
    }

    /// [`DbConfig::embedded`], told whether the environment names a MySQL server.
    fn embedded_given(&self, mysql_in_env: bool) -> Result<Option<&Path>, ConfigError> {
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
            (DbKind::Auto, None) => (!self.names_mysql(mysql_in_env) && self.embedded_allowed)
                .then_some(self.sqlite_path.as_path()),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::{DbConfig, DbKind};
    use crate::config::Secret;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        db: DbConfig,
    }

    /// The defaults, whatever the test process's environment says (`make test` sets
    /// PERRY_DB_*), as a split service (`embedded_allowed` false) has them.
    fn defaults() -> DbConfig {
        let mut c = Args::try_parse_from(["test"]).expect("parses").db;
        c.url = None;
        c.host = "localhost".into();
        c.port = 3306;
        c.user = "perry".into();
        c.password = Secret::default();
        c.name = "perry_hub".into();
        c.kind = DbKind::Auto;
        c.sqlite_path = "./data/hub.db".into();
        c
    }

    fn one_box() -> DbConfig {
        DbConfig {
            embedded_allowed: true,
            ..defaults()
        }
    }

    #[test]
    fn with_nothing_named_the_one_process_hub_runs_on_sqlite_in_the_data_folder() {
        let c = one_box();
        assert_eq!(
            c.embedded_given(false).unwrap(),
            Some(Path::new("./data/hub.db"))
        );
        let c = DbConfig {
            sqlite_path: "/srv/perry/hub.db".into(),
            ..one_box()
        };
        assert_eq!(
            c.embedded_given(false).unwrap(),
            Some(Path::new("/srv/perry/hub.db"))
        );
    }

    #[test]
    fn any_mysql_setting_in_flags_url_or_environment_picks_mysql() {
        let named: [fn(&mut DbConfig); 6] = [
            |c| c.host = "db.internal".into(),
            |c| c.port = 3307,
            |c| c.user = "hub".into(),
            |c| c.password = Secret::new("secret"),
            |c| c.name = "hub".into(),
            |c| c.url = Some(Secret::new("mysql://u:p@h/db")),
        ];
        for (i, name) in named.into_iter().enumerate() {
            let mut c = one_box();
            name(&mut c);
            assert_eq!(c.embedded_given(false).unwrap(), None, "setting {i}");
        }
        // A variable set to its default value still names MySQL.
        assert_eq!(one_box().embedded_given(true).unwrap(), None);
    }

    #[test]
    fn sqlite_can_be_asked_for_outright_and_mysql_likewise() {
        let c = DbConfig {
            kind: DbKind::Sqlite,
            host: "db.internal".into(),
            ..one_box()
        };
        assert!(c.embedded_given(true).unwrap().is_some());
        let c = DbConfig {
            url: Some(Secret::new("sqlite:///var/lib/perry/hub.db")),
            ..one_box()
        };
        assert_eq!(
            c.embedded_given(true).unwrap(),
            Some(Path::new("/var/lib/perry/hub.db"))
        );
        let c = DbConfig {
            kind: DbKind::Mysql,
            ..one_box()
        };
        assert_eq!(c.embedded_given(false).unwrap(), None);
    }

    #[test]
    fn the_split_services_refuse_sqlite_and_default_to_mysql() {
        assert_eq!(defaults().embedded_given(false).unwrap(), None);
        let c = DbConfig {
            kind: DbKind::Sqlite,
            ..defaults()
        };
        let error = c.embedded_given(false).unwrap_err();
        assert_eq!(error.variable, "PERRY_DB");
        assert!(error.reason.starts_with("SQLITE_ONE_PROCESS: "), "{error}");
        let c = DbConfig {
            sqlite_path: "".into(),
            ..one_box()
        };
        assert_eq!(
            c.embedded_given(false).unwrap_err().variable,
            "PERRY_DB_SQLITE_PATH"
        );
    }
}
