//! Typed configuration fragments, read from the environment with clap's `env` support.
//!
//! Each service flattens the fragments it needs into its own `Config` (so `--help` lists every
//! variable) and calls `validate` before doing anything else. Seed variable names
//! (`PERRY_HUB_*`, `PERRY_DB_*`, `AZURE_*`) are kept; URL forms (`DATABASE_URL`, `AMQP_URL`) are
//! accepted in addition. Secrets are [`Secret`]s: redacted in `Debug`, compared in constant time.

use std::{fmt, path::PathBuf, time::Duration};

use clap::Args;

/// A configuration error naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// Why it is rejected.
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            reason: reason.into(),
        }
    }
}

/// A secret string: never printed, compared in constant time.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the secret is empty (unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Constant-time comparison with a presented value. An empty secret matches nothing.
    pub fn matches(&self, presented: &str) -> bool {
        !self.0.is_empty() && crate::auth::constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "[unset]"
        } else {
            "[redacted]"
        })
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

fn parse_bool_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected true/false/1/0, got {other:?}")),
    }
}

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
}

impl DbConfig {
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
            return url
                .expose()
                .parse::<MySqlConnectOptions>()
                .map_err(|e| ConfigError::new("DATABASE_URL", format!("not a MySQL URL: {e}")));
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
        Ok(MySqlConnectOptions::new()
            .host(host)
            .port(self.port)
            .username(&self.user)
            .password(self.password.expose())
            .database(&self.name)
            .charset("utf8mb4"))
    }

    /// Settings for a test database on the same server.
    pub fn with_database(&self, name: &str) -> Self {
        let mut c = self.clone();
        c.url = None;
        c.name = name.to_owned();
        c
    }
}

/// RabbitMQ settings.
#[derive(Debug, Clone, Args)]
pub struct AmqpConfig {
    /// AMQP URL of the broker.
    #[arg(
        id = "amqp-url",
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub url: Secret,
    /// Prefix for every exchange and queue name (lets several hubs or tests share a broker).
    #[arg(
        id = "amqp-prefix",
        long = "amqp-prefix",
        env = "PERRY_AMQP_PREFIX",
        default_value = "perry"
    )]
    pub prefix: String,
    /// AMQP heartbeat in seconds (a frozen broker is noticed after about twice this).
    #[arg(
        id = "amqp-heartbeat-secs",
        long = "amqp-heartbeat-secs",
        env = "PERRY_AMQP_HEARTBEAT_SECS",
        default_value_t = 15
    )]
    pub heartbeat_secs: u16,
}

impl AmqpConfig {
    /// The broker URL with the heartbeat applied (unless the URL sets one).
    pub fn url_with_heartbeat(&self) -> String {
        let url = self.url.expose();
        if url.contains("heartbeat=") {
            return url.to_owned();
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}heartbeat={}", self.heartbeat_secs)
    }

    /// Check the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.expose();
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(ConfigError::new(
                "AMQP_URL",
                "must start with amqp:// or amqps://",
            ));
        }
        if self.prefix.is_empty()
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::new(
                "PERRY_AMQP_PREFIX",
                "use letters, digits, '-', '_' or '.'",
            ));
        }
        if !(5..=60).contains(&self.heartbeat_secs) {
            return Err(ConfigError::new(
                "PERRY_AMQP_HEARTBEAT_SECS",
                "must be between 5 and 60",
            ));
        }
        Ok(())
    }
}

/// Which blob store holds tarballs and artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BlobBackend {
    /// A directory on local disk (one machine).
    Fs,
    /// Any S3-compatible object store.
    S3,
}

/// Blob store settings.
#[derive(Debug, Clone, Args)]
pub struct BlobConfig {
    /// Blob backend: `fs` or `s3`.
    #[arg(
        id = "blob-backend",
        long = "blob-backend",
        env = "PERRY_BLOB_BACKEND",
        value_enum,
        default_value = "fs"
    )]
    pub backend: BlobBackend,
    /// Root directory of the filesystem store.
    #[arg(
        id = "blob-dir",
        long = "blob-dir",
        env = "PERRY_BLOB_DIR",
        default_value = "./data/blobs"
    )]
    pub dir: PathBuf,
    /// S3 bucket.
    #[arg(
        id = "s3-bucket",
        long = "s3-bucket",
        env = "PERRY_S3_BUCKET",
        default_value = ""
    )]
    pub s3_bucket: String,
    /// S3 endpoint for non-AWS stores (path-style addressing is used when set).
    #[arg(id = "s3-endpoint", long = "s3-endpoint", env = "PERRY_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(
        id = "s3-region",
        long = "s3-region",
        env = "PERRY_S3_REGION",
        default_value = "us-east-1"
    )]
    pub s3_region: String,
    /// S3 access key id.
    #[arg(
        id = "s3-access-key-id",
        long = "s3-access-key-id",
        env = "PERRY_S3_ACCESS_KEY_ID",
        default_value = ""
    )]
    pub s3_access_key_id: String,
    /// S3 secret access key.
    #[arg(
        id = "s3-secret-access-key",
        long = "s3-secret-access-key",
        env = "PERRY_S3_SECRET_ACCESS_KEY",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub s3_secret_access_key: Secret,
    /// Prefix for every object key.
    #[arg(
        id = "s3-key-prefix",
        long = "s3-key-prefix",
        env = "PERRY_S3_KEY_PREFIX",
        default_value = ""
    )]
    pub s3_key_prefix: String,
    /// Only send/verify checksums when the API requires them (for stores that reject
    /// aws-chunked uploads).
    #[arg(id = "s3-checksum-when-required", long = "s3-checksum-when-required", env = "PERRY_S3_CHECKSUM_WHEN_REQUIRED", value_parser = parse_bool_flag, action = clap::ArgAction::Set, default_value = "false")]
    pub s3_checksum_when_required: bool,
    /// Answer raw artifact downloads with a redirect to a presigned S3 URL instead of proxying.
    #[arg(id = "s3-presign-downloads", long = "s3-presign-downloads", env = "PERRY_S3_PRESIGN_DOWNLOADS", value_parser = parse_bool_flag, action = clap::ArgAction::Set, default_value = "false")]
    pub s3_presign_downloads: bool,
}

impl BlobConfig {
    /// Check the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backend == BlobBackend::S3 {
            if self.s3_bucket.is_empty() {
                return Err(ConfigError::new(
                    "PERRY_S3_BUCKET",
                    "required with PERRY_BLOB_BACKEND=s3",
                ));
            }
            if self.s3_access_key_id.is_empty() || self.s3_secret_access_key.is_empty() {
                return Err(ConfigError::new(
                    "PERRY_S3_ACCESS_KEY_ID",
                    "PERRY_S3_ACCESS_KEY_ID and PERRY_S3_SECRET_ACCESS_KEY are required with PERRY_BLOB_BACKEND=s3",
                ));
            }
        }
        Ok(())
    }

    /// Build the configured store.
    pub async fn build(&self) -> anyhow::Result<std::sync::Arc<dyn blob::BlobStore>> {
        use anyhow::Context;
        Ok(match self.backend {
            BlobBackend::Fs => std::sync::Arc::new(
                blob::FsBlobStore::new(self.dir.clone())
                    .with_context(|| format!("opening blob directory {}", self.dir.display()))?,
            ),
            BlobBackend::S3 => std::sync::Arc::new(
                blob::S3BlobStore::new(blob::S3Settings {
                    bucket: self.s3_bucket.clone(),
                    endpoint: self.s3_endpoint.clone(),
                    region: self.s3_region.clone(),
                    access_key_id: self.s3_access_key_id.clone(),
                    secret_access_key: self.s3_secret_access_key.expose().to_owned(),
                    key_prefix: self.s3_key_prefix.clone(),
                    checksum_when_required: self.s3_checksum_when_required,
                })
                .context("configuring the S3 client")?,
            ),
        })
    }
}

/// Settings every hub service shares: public URL, secrets, limits.
#[derive(Debug, Clone, Args)]
pub struct HubConfig {
    /// Development mode: allows empty secrets and a built-in credentials key. Never in production.
    #[arg(id = "dev-mode", long = "dev-mode", env = "PERRY_HUB_DEV_MODE", value_parser = parse_bool_flag, action = clap::ArgAction::Set, default_value = "false")]
    pub dev_mode: bool,
    /// Public base URL of the hub (used in tarball, upload and download URLs).
    #[arg(
        id = "public-url",
        long = "public-url",
        env = "PERRY_HUB_PUBLIC_URL",
        default_value = ""
    )]
    pub public_url: String,
    /// Secret that workers send in `worker_hello`.
    #[arg(
        id = "worker-secret",
        long = "worker-secret",
        env = "PERRY_HUB_WORKER_SECRET",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub worker_secret: Secret,
    /// Bearer secret of the admin endpoints.
    #[arg(
        id = "admin-secret",
        long = "admin-secret",
        env = "PERRY_HUB_ADMIN_SECRET",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub admin_secret: Secret,
    /// Base64 of 32 random bytes: the AES-256-GCM key for signing credentials at rest.
    #[arg(
        id = "credentials-key",
        long = "credentials-key",
        env = "PERRY_HUB_CREDENTIALS_KEY",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub credentials_key: Secret,
    /// Lifetime of a download link in seconds (sent as `expires_in_secs`).
    #[arg(
        id = "artifact-ttl-secs",
        long = "artifact-ttl-secs",
        env = "PERRY_HUB_ARTIFACT_TTL_SECS",
        default_value_t = 600
    )]
    pub artifact_ttl_secs: u64,
    /// Self-hosted: no monthly or hourly limits.
    #[arg(id = "self-hosted", long = "self-hosted", env = "PERRY_HUB_SELF_HOSTED", value_parser = parse_bool_flag, action = clap::ArgAction::Set, default_value = "false")]
    pub self_hosted: bool,
    /// Expected worker compiler version (workers reporting another get `update_perry`).
    #[arg(
        id = "expected-version",
        long = "expected-version",
        env = "PERRY_EXPECTED_VERSION",
        default_value = ""
    )]
    pub expected_version: String,
}

/// Usage-based billing of pro overage through Polar (§6). Off unless both values are set.
#[derive(Debug, Clone, Default, Args)]
pub struct PolarConfig {
    /// Polar API token for overage metering.
    #[arg(
        id = "polar-access-token",
        long = "polar-access-token",
        env = "POLAR_ACCESS_TOKEN",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub access_token: Secret,
    /// Polar meter id of a publish.
    #[arg(
        id = "polar-meter-publish",
        long = "polar-meter-publish",
        env = "POLAR_METER_PUBLISH",
        default_value = ""
    )]
    pub meter_publish: String,
    /// Polar API base URL.
    #[arg(
        id = "polar-api-url",
        long = "polar-api-url",
        env = "PERRY_POLAR_API_URL",
        default_value = "https://api.polar.sh"
    )]
    pub api_url: String,
}

impl PolarConfig {
    /// Whether overage billing is configured.
    pub fn enabled(&self) -> bool {
        !self.access_token.is_empty() && !self.meter_publish.is_empty()
    }
}

/// The arguments every service binary takes besides its port: the bind address and the hub,
/// MySQL, RabbitMQ and blob store fragments. Each service flattens it next to its own port
/// variable (`PERRY_INGEST_PORT`, `PERRY_DISPATCHER_PORT`, ...), so `--help` lists every setting.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Address to bind.
    #[arg(long, env = "PERRY_HUB_BIND", default_value = "0.0.0.0")]
    pub bind: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub hub: HubConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub amqp: AmqpConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub blob: BlobConfig,
}

impl ServiceArgs {
    /// Bind `port` on the configured address.
    pub async fn listen(&self, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
        use anyhow::Context;
        tokio::net::TcpListener::bind((self.bind.as_str(), port))
            .await
            .with_context(|| format!("binding {}:{port}", self.bind))
    }
}

/// The public URL used when none is configured (development only).
pub const DEFAULT_PUBLIC_URL: &str = "https://hub.perryts.com";

/// The key used in development mode when PERRY_HUB_CREDENTIALS_KEY is unset. Not secret.
const DEV_CREDENTIALS_KEY: [u8; 32] = *b"perry-hub-development-only-key!!";

impl HubConfig {
    /// The public URL without a trailing slash.
    pub fn public_url(&self) -> String {
        let url = self.public_url.trim().trim_end_matches('/');
        if url.is_empty() {
            DEFAULT_PUBLIC_URL.to_owned()
        } else {
            url.to_owned()
        }
    }

    /// Artifact link lifetime.
    pub fn artifact_ttl(&self) -> Duration {
        Duration::from_secs(self.artifact_ttl_secs)
    }

    /// The credentials key (decoded), or the development key in dev mode.
    pub fn credentials_key(&self) -> Result<[u8; 32], ConfigError> {
        use base64::Engine;
        if self.credentials_key.is_empty() {
            return if self.dev_mode {
                Ok(DEV_CREDENTIALS_KEY)
            } else {
                Err(ConfigError::new(
                    "PERRY_HUB_CREDENTIALS_KEY",
                    "required outside development mode (base64 of 32 random bytes, e.g. `openssl rand -base64 32`)",
                ))
            };
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.credentials_key.expose().trim())
            .map_err(|_| ConfigError::new("PERRY_HUB_CREDENTIALS_KEY", "is not valid base64"))?;
        bytes.try_into().map_err(|_| {
            ConfigError::new(
                "PERRY_HUB_CREDENTIALS_KEY",
                "must decode to exactly 32 bytes",
            )
        })
    }

    /// Check the settings every service needs: public URL and credentials key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.public_url.trim();
        if url.is_empty() && !self.dev_mode {
            return Err(ConfigError::new(
                "PERRY_HUB_PUBLIC_URL",
                "required outside development mode (workers need absolute URLs)",
            ));
        }
        let has_scheme = url.starts_with("http://") || url.starts_with("https://");
        if !url.is_empty() && !has_scheme {
            return Err(ConfigError::new(
                "PERRY_HUB_PUBLIC_URL",
                "must start with http:// or https://",
            ));
        }
        if self.artifact_ttl_secs == 0 || self.artifact_ttl_secs > 7 * 86_400 {
            return Err(ConfigError::new(
                "PERRY_HUB_ARTIFACT_TTL_SECS",
                "must be between 1 and 604800",
            ));
        }
        self.credentials_key()?;
        Ok(())
    }

    /// Require the worker secret (dispatcher).
    pub fn validate_worker_secret(&self) -> Result<(), ConfigError> {
        check_secret(
            "PERRY_HUB_WORKER_SECRET",
            &self.worker_secret,
            self.dev_mode,
        )
    }

    /// Require the admin secret (ingest). Even in dev mode an empty admin secret keeps the admin
    /// endpoints closed (403), never open.
    pub fn validate_admin_secret(&self) -> Result<(), ConfigError> {
        check_secret("PERRY_HUB_ADMIN_SECRET", &self.admin_secret, self.dev_mode)
    }
}

fn check_secret(
    variable: &'static str,
    secret: &Secret,
    dev_mode: bool,
) -> Result<(), ConfigError> {
    if secret.is_empty() {
        if dev_mode {
            return Ok(());
        }
        return Err(ConfigError::new(
            variable,
            "required outside development mode (set PERRY_HUB_DEV_MODE=true only on a development machine)",
        ));
    }
    if secret.expose().len() < 16 && !dev_mode {
        return Err(ConfigError::new(variable, "must be at least 16 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct TestConfig {
        #[command(flatten)]
        db: DbConfig,
        #[command(flatten)]
        amqp: AmqpConfig,
        #[command(flatten)]
        blob: BlobConfig,
        #[command(flatten)]
        hub: HubConfig,
    }

    fn parse(args: &[&str]) -> TestConfig {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        match TestConfig::try_parse_from(all) {
            Ok(c) => c,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    #[test]
    fn empty_secrets_fail_outside_dev_mode_naming_the_variable() {
        let c = parse(&[
            "--public-url",
            "https://hub.example",
            "--credentials-key",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ]);
        let err = c.hub.validate_worker_secret().unwrap_err();
        assert_eq!(err.variable, "PERRY_HUB_WORKER_SECRET");
        assert!(err
            .to_string()
            .contains("required outside development mode"));
        let err = c.hub.validate_admin_secret().unwrap_err();
        assert_eq!(err.variable, "PERRY_HUB_ADMIN_SECRET");
    }

    #[test]
    fn dev_mode_allows_empty_secrets_and_defaults() {
        let c = parse(&["--dev-mode", "true"]);
        c.hub.validate().unwrap();
        c.hub.validate_worker_secret().unwrap();
        assert_eq!(c.hub.public_url(), DEFAULT_PUBLIC_URL);
        assert_eq!(c.hub.credentials_key().unwrap(), DEV_CREDENTIALS_KEY);
    }

    #[test]
    fn short_secret_and_bad_key_are_rejected() {
        let c = parse(&[
            "--public-url",
            "https://h",
            "--worker-secret",
            "short",
            "--credentials-key",
            "bm90LTMyLWJ5dGVz",
        ]);
        assert!(c
            .hub
            .validate_worker_secret()
            .unwrap_err()
            .reason
            .contains("16"));
        let err = c.hub.validate().unwrap_err();
        assert_eq!(err.variable, "PERRY_HUB_CREDENTIALS_KEY");
        assert!(err.reason.contains("32 bytes"));
    }

    #[test]
    fn public_url_is_required_and_checked() {
        let c = parse(&[
            "--credentials-key",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ]);
        assert_eq!(
            c.hub.validate().unwrap_err().variable,
            "PERRY_HUB_PUBLIC_URL"
        );
        let c = parse(&[
            "--public-url",
            "ftp://x",
            "--credentials-key",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ]);
        assert_eq!(
            c.hub.validate().unwrap_err().variable,
            "PERRY_HUB_PUBLIC_URL"
        );
        let c = parse(&[
            "--public-url",
            "https://h.example/",
            "--credentials-key",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ]);
        c.hub.validate().unwrap();
        assert_eq!(c.hub.public_url(), "https://h.example");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = parse(&[
            "--worker-secret",
            "super-secret-worker-value",
            "--db-password",
            "dbpass-xyz",
        ]);
        let debug = format!("{c:?}");
        assert!(!debug.contains("super-secret-worker-value"));
        assert!(!debug.contains("dbpass-xyz"));
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn secret_matching_is_exact() {
        let s = Secret::new("s3cret-s3cret-s3cret");
        assert!(s.matches("s3cret-s3cret-s3cret"));
        assert!(!s.matches("junks3cret-s3cret-s3cret"));
        assert!(!s.matches("s3cret-s3cret-s3cre"));
        assert!(!Secret::default().matches(""));
    }

    #[test]
    fn amqp_url_gets_heartbeat_and_bad_values_fail() {
        let c = parse(&[]);
        assert!(c.amqp.url_with_heartbeat().ends_with("?heartbeat=15"));
        c.amqp.validate().unwrap();
        let c = parse(&["--amqp-url", "http://x", "--amqp-prefix", "a b"]);
        assert_eq!(c.amqp.validate().unwrap_err().variable, "AMQP_URL");
    }

    #[test]
    fn s3_backend_requires_bucket_and_keys() {
        let c = parse(&["--blob-backend", "s3"]);
        assert_eq!(c.blob.validate().unwrap_err().variable, "PERRY_S3_BUCKET");
        let c = parse(&["--blob-backend", "s3", "--s3-bucket", "b"]);
        assert_eq!(
            c.blob.validate().unwrap_err().variable,
            "PERRY_S3_ACCESS_KEY_ID"
        );
    }

    #[test]
    fn database_url_overrides_parts() {
        let c = parse(&["--database-url", "mysql://u:p@db.example:3307/hub"]);
        let opts = c.db.connect_options().unwrap();
        assert_eq!(opts.get_host(), "db.example");
        assert_eq!(opts.get_port(), 3307);
        let c = parse(&["--database-url", "postgres://x"]);
        assert_eq!(c.db.connect_options().unwrap_err().variable, "DATABASE_URL");
    }
}
