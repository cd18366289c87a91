//! The RabbitMQ fragment. Without `AMQP_URL`, `perry-hub all` runs on the in-process queue;
//! the split services require it ([`AmqpConfig::require`]).

use clap::Args;

use super::{ConfigError, Secret};

/// RabbitMQ settings.
#[derive(Debug, Clone, Args)]
pub struct AmqpConfig {
    /// AMQP URL of RabbitMQ, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`. Required by the
    /// split services; unset, `perry-hub all` uses an in-process queue instead.
    #[arg(
        id = "amqp-url",
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = "",
        hide_default_value = true,
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
    /// PEM file of the CA that signed the broker's certificate, for an `amqps://` URL whose
    /// certificate is not from a public CA.
    #[arg(
        id = "amqp-tls-ca-file",
        long = "amqp-tls-ca-file",
        env = "PERRY_AMQP_TLS_CA_FILE"
    )]
    pub tls_ca_file: Option<std::path::PathBuf>,
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

    /// Whether a broker is configured (`AMQP_URL` set and not empty).
    pub fn configured(&self) -> bool {
        !self.url.expose().trim().is_empty()
    }

    /// Check the settings of a split service (`role`), which needs RabbitMQ: `AMQP_URL` must
    /// be set (stable code `AMQP_URL_REQUIRED`), then [`AmqpConfig::validate`].
    pub fn require(&self, role: &str) -> Result<(), ConfigError> {
        if !self.configured() {
            return Err(ConfigError::new(
                "AMQP_URL",
                format!(
                    "AMQP_URL_REQUIRED: `perry-hub {role}` talks to the other services through \
                     RabbitMQ; set AMQP_URL (only `perry-hub all` runs without it, on an \
                     in-process queue)"
                ),
            ));
        }
        self.validate()
    }

    /// Check the settings. An unset `AMQP_URL` passes (the in-process queue); a set one must
    /// be an AMQP URL.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.expose();
        if !self.configured() {
            if self.tls_ca_file.is_some() {
                return Err(ConfigError::new(
                    "PERRY_AMQP_TLS_CA_FILE",
                    "is only used with an amqps:// AMQP_URL",
                ));
            }
            return Ok(());
        }
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(ConfigError::new(
                "AMQP_URL",
                "must start with amqp:// or amqps://",
            ));
        }
        if let Some(ca) = &self.tls_ca_file {
            if !url.starts_with("amqps://") {
                return Err(ConfigError::new(
                    "PERRY_AMQP_TLS_CA_FILE",
                    "is only used with an amqps:// AMQP_URL",
                ));
            }
            if !ca.is_file() {
                return Err(ConfigError::new(
                    "PERRY_AMQP_TLS_CA_FILE",
                    "is not a readable file",
                ));
            }
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
