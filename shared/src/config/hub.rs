//! The fragment every hub service shares: public URL, secrets, limits.

use std::time::Duration;

use clap::Args;

use super::{parse_bool_flag, ConfigError, HttpLimits, Secret, WorkerSecrets};

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
    /// Individual worker secrets bound to capabilities: `name:secret:cap1,cap2;name2:…`. A
    /// worker holding one may claim only its capabilities; the shared secret keeps working.
    #[arg(
        id = "worker-secrets",
        long = "worker-secrets",
        env = "PERRY_HUB_WORKER_SECRETS",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub worker_secrets: WorkerSecrets,
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
    /// Server pepper of stored licence keys (HMAC-SHA256); empty keeps bare SHA-256 hashes.
    /// Keep it out of the database and never change it.
    #[arg(
        id = "license-pepper",
        long = "license-pepper",
        env = "PERRY_HUB_LICENSE_PEPPER",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub license_pepper: Secret,
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
    /// Reads a download link allows before it is spent, complete or not (an incomplete read
    /// gives the link back for another try, until this many).
    #[arg(
        id = "download-max-attempts",
        long = "download-max-attempts",
        env = "PERRY_HUB_DOWNLOAD_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub download_max_attempts: u32,
    /// Seconds an unfinished download holds its link. A live download renews its claim every
    /// third of this; a claim whose download process died lapses after it, and the link can be
    /// read again (DEC-30).
    #[arg(
        id = "download-claim-secs",
        long = "download-claim-secs",
        env = "PERRY_HUB_DOWNLOAD_CLAIM_SECS",
        default_value_t = 60
    )]
    pub download_claim_secs: u64,
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
    /// Timeouts and connection caps of the HTTP listeners.
    #[command(flatten)]
    pub http: HttpLimits,
}

/// The public URL used when none is configured (development only).
pub const DEFAULT_PUBLIC_URL: &str = "https://hub.perryts.com";

/// The key used in development mode when PERRY_HUB_CREDENTIALS_KEY is unset. Not secret.
pub(super) const DEV_CREDENTIALS_KEY: [u8; 32] = *b"perry-hub-development-only-key!!";

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

    /// How long an unfinished download holds its link (DEC-30).
    pub fn download_claim(&self) -> Duration {
        Duration::from_secs(self.download_claim_secs)
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
        if self.download_max_attempts == 0 {
            return Err(ConfigError::new(
                "PERRY_HUB_DOWNLOAD_MAX_ATTEMPTS",
                "must be at least 1",
            ));
        }
        if self.download_claim_secs == 0 || self.download_claim_secs > 3_600 {
            return Err(ConfigError::new(
                "PERRY_HUB_DOWNLOAD_CLAIM_SECS",
                "must be between 1 and 3600",
            ));
        }
        if !self.license_pepper.is_empty() && self.license_pepper.expose().len() < 16 {
            return Err(ConfigError::new(
                "PERRY_HUB_LICENSE_PEPPER",
                "must be at least 16 characters (e.g. `openssl rand -base64 32`)",
            ));
        }
        self.credentials_key()?;
        self.http.validate()?;
        Ok(())
    }

    /// Require a worker secret (dispatcher): the shared one, or individual ones
    /// (`PERRY_HUB_WORKER_SECRETS`), or both.
    pub fn validate_worker_secret(&self) -> Result<(), ConfigError> {
        self.worker_secrets.validate(crate::queue::TARGETS)?;
        if self.worker_secret.is_empty() && !self.worker_secrets.is_empty() {
            return Ok(());
        }
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
