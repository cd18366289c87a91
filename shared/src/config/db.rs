//! The MySQL / MariaDB fragment and its sqlx connect options.

use clap::Args;

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
}

impl DbConfig {
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
        if let Some(url) = &self.url {
            let scheme_ok =
                url.expose().starts_with("mysql://") || url.expose().starts_with("mariadb://");
            if !scheme_ok {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    "must start with mysql:// or mariadb://",
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
