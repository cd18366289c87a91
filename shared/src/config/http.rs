//! [`HttpLimits`]: what every HTTP listener enforces on its connections (issue 15, DEC-22).

use std::time::Duration;

use clap::Args;

use super::ConfigError;

/// Timeouts and connection caps of every HTTP listener (the API port, the legacy WebSocket
/// port, and each service's port when run alone).
#[derive(Debug, Clone, Args)]
pub struct HttpLimits {
    /// Seconds a client has to send a request's headers (also how long an idle keep-alive
    /// connection is kept).
    #[arg(
        id = "http-header-timeout-secs",
        long = "http-header-timeout-secs",
        env = "PERRY_HUB_HTTP_HEADER_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub header_timeout_secs: u64,
    /// Seconds a request body may go without a byte arriving, and a response may wait for the
    /// client to take a byte, before the connection is closed (uploads and downloads have no
    /// overall limit, only this one).
    #[arg(
        id = "http-idle-timeout-secs",
        long = "http-idle-timeout-secs",
        env = "PERRY_HUB_HTTP_IDLE_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub idle_timeout_secs: u64,
    /// Seconds a request to a small JSON endpoint (everything but uploads, downloads and the
    /// WebSocket) may take from its headers to its answer.
    #[arg(
        id = "http-request-timeout-secs",
        long = "http-request-timeout-secs",
        env = "PERRY_HUB_HTTP_REQUEST_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub request_timeout_secs: u64,
    /// Open connections per listener, WebSockets included (0: no cap).
    #[arg(
        id = "max-connections",
        long = "max-connections",
        env = "PERRY_HUB_MAX_CONNECTIONS",
        default_value_t = 16_384
    )]
    pub max_connections: u32,
    /// Open connections per client address (IPv6: per /64) per listener (0: no cap). The
    /// address is the TCP peer: behind a proxy that is the proxy, so set 0 there and cap at the
    /// proxy.
    #[arg(
        id = "max-connections-per-addr",
        long = "max-connections-per-addr",
        env = "PERRY_HUB_MAX_CONNECTIONS_PER_ADDR",
        default_value_t = 128
    )]
    pub max_connections_per_addr: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            request_timeout_secs: 30,
            max_connections: 16_384,
            max_connections_per_addr: 128,
        }
    }
}

impl HttpLimits {
    /// Time to send the request headers.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    /// Longest pause in a request or response body.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// Longest small request.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// Timeouts must be positive: a zero would cut every request.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (variable, secs) in [
            (
                "PERRY_HUB_HTTP_HEADER_TIMEOUT_SECS",
                self.header_timeout_secs,
            ),
            ("PERRY_HUB_HTTP_IDLE_TIMEOUT_SECS", self.idle_timeout_secs),
            (
                "PERRY_HUB_HTTP_REQUEST_TIMEOUT_SECS",
                self.request_timeout_secs,
            ),
        ] {
            if secs == 0 || secs > 86_400 {
                return Err(ConfigError::new(variable, "must be between 1 and 86400"));
            }
        }
        Ok(())
    }
}
