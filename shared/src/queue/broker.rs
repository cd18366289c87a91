//! The lazily (re)connected AMQP connection and the reconnect backoff.

use std::{sync::Arc, time::Duration};

use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::{Error, Result, Topology};
use crate::config::AmqpConfig;

/// A lazily (re)connected AMQP connection. Use one for publishing and another for consuming.
#[derive(Clone)]
pub struct Broker {
    config: AmqpConfig,
    topology: Topology,
    name: &'static str,
    conn: Arc<Mutex<Option<Arc<Connection>>>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("name", &self.name)
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

/// Timeout for connecting and for each broker round trip we await.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

impl Broker {
    /// A broker handle; `name` labels the connection in the management UI.
    pub fn new(config: &AmqpConfig, name: &'static str) -> Self {
        Self {
            topology: Topology::new(&config.prefix),
            config: config.clone(),
            name,
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// Object names.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Open a connection: plain for `amqp://`, TLS (rustls) for `amqps://`, trusting the CA of
    /// `PERRY_AMQP_TLS_CA_FILE` when set, else the public web roots.
    async fn open(&self, props: ConnectionProperties) -> Result<Connection> {
        use lapin::{tcp::OwnedTLSConfig, Connect as _};
        crate::install_tls_provider();
        let url = self.config.url_with_heartbeat();
        let cert_chain = match &self.config.tls_ca_file {
            Some(path) => Some(
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| Error::Tls(format!("reading PERRY_AMQP_TLS_CA_FILE: {e}")))?,
            ),
            None => None,
        };
        let tls = OwnedTLSConfig {
            identity: None,
            cert_chain,
        };
        let runtime = lapin::runtime::default_runtime()?;
        Ok(url
            .as_str()
            .connect_with_config(props, tls, runtime)
            .await?)
    }

    /// The live connection, connecting (and declaring the topology) if needed.
    pub async fn connection(&self) -> Result<Arc<Connection>> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.status().connected() {
                return Ok(c.clone());
            }
        }
        let props = ConnectionProperties::default()
            .with_connection_name(format!("perry-hub-{}", self.name).into());
        let conn = tokio::time::timeout(BROKER_TIMEOUT, self.open(props))
            .await
            .map_err(|_| Error::Timeout("connecting to RabbitMQ"))??;
        let conn = Arc::new(conn);
        let ch = conn.create_channel().await?;
        self.topology.declare(&ch).await?;
        let _ = ch.close(200, "topology declared".into()).await;
        tracing::info!(connection = self.name, "connected to RabbitMQ");
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// A new channel on the live connection.
    pub async fn channel(&self) -> Result<Channel> {
        let conn = self.connection().await?;
        Ok(conn.create_channel().await?)
    }

    /// Messages ready in `queue` (not counting those delivered and not yet acknowledged).
    pub async fn ready_messages(&self, queue: &str) -> Result<u32> {
        let ch = self.channel().await?;
        let declared = ch
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await;
        let _ = ch.close(200, "queue inspected".into()).await;
        Ok(declared?.message_count())
    }

    /// Forget the connection so the next call reconnects.
    pub async fn reset(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), c.close(200, "reconnecting".into()))
                    .await;
        }
    }

    /// Readiness: connected (or able to connect) now.
    pub async fn check(&self) -> Result<()> {
        self.connection().await.map(|_| ())
    }

    /// Close the connection on shutdown.
    pub async fn close(&self) {
        self.reset().await;
    }
}

/// Exponential backoff for reconnect loops: 100 ms doubling up to 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    /// The delay to wait now; grows for the next call.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        d
    }
    /// Back to the shortest delay after a success.
    pub fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(5));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
