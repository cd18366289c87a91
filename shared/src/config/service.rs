//! [`ServiceArgs`]: the bind address plus every fragment a service binary flattens.

use clap::Args;

use super::{AmqpConfig, BlobConfig, DbConfig, HubConfig};

/// The arguments every service binary takes besides its port: the bind address and the hub,
/// MySQL, RabbitMQ and blob store fragments. Each service flattens it next to its own port
/// variable (`PERRY_INGEST_PORT`, `PERRY_DISPATCHER_PORT`, ...), so `--help` lists every setting.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Address to bind.
    #[arg(long, env = "PERRY_HUB_BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// On SIGTERM, how long open requests and WebSockets may take to finish before the process
    /// exits anyway, in seconds. Keep it below Kubernetes' `terminationGracePeriodSeconds` (and
    /// compose's `stop_grace_period`).
    #[arg(long, env = "PERRY_HUB_SHUTDOWN_GRACE_SECS", default_value_t = 25)]
    pub shutdown_grace_secs: u64,
    /// Check the configuration and every backing service this role needs (print their
    /// versions), then exit: 0 when all are usable.
    #[arg(long)]
    pub check: bool,
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
    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.shutdown_grace_secs)
    }

    /// Bind `port` on the configured address.
    pub async fn listen(&self, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
        use anyhow::Context;
        tokio::net::TcpListener::bind((self.bind.as_str(), port))
            .await
            .with_context(|| format!("binding {}:{port}", self.bind))
    }
}
