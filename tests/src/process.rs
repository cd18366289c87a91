//! A replica of a [`TestHub`] in its own process ([`HubProcess`]), for faults an in-process
//! replica cannot show: SIGKILL loses whatever the process held in memory, and runs no
//! shutdown.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use shared::config::BlobBackend;

use crate::{TestHub, WAIT};

/// A hub process sharing a [`TestHub`]'s database, broker prefix and blob store.
pub struct HubProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
}

impl HubProcess {
    /// Start `exe` (the `perry-hub-process` binary: `env!("CARGO_BIN_EXE_perry-hub-process")`
    /// in a test) as a replica of `primary` (its S3 bucket, or its blob directory), and wait
    /// until it is ready.
    pub async fn start(primary: &TestHub, exe: &str) -> Self {
        Self::start_with(primary, exe, &[]).await
    }

    /// [`HubProcess::start`] with `extra` settings in its environment.
    pub async fn start_with(primary: &TestHub, exe: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_role(primary, exe, None, extra).await
    }

    /// One service (`ingest`, `dispatcher`, `finisher` or `download`) of `primary`'s hub in its
    /// own process, or every service when `role` is None.
    pub async fn start_role(
        primary: &TestHub,
        exe: &str,
        role: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let base_url = format!("http://127.0.0.1:{port}");
        let mut cmd = Self::command(primary, exe, role, port, extra);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("start the hub process");
        let process = Self { child, base_url };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ready = client
                .get(format!("{}/readyz", process.base_url))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return process;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the hub process did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The command that runs `exe` as `role` (every service when None) on `port` with
    /// `primary`'s settings, then `extra`, in an otherwise empty environment.
    pub fn command(
        primary: &TestHub,
        exe: &str,
        role: Option<&str>,
        port: u16,
        extra: &[(&str, &str)],
    ) -> Command {
        let base_url = format!("http://127.0.0.1:{port}");
        let db = &primary.db().config;
        let hub = &primary.deps.hub;
        let blob = &primary.blob_config;
        let mut cmd = Command::new(exe);
        let port_setting = match role {
            Some(role) => {
                cmd.arg(role);
                format!("PERRY_{}_PORT", role.to_uppercase())
            }
            None => "PERRY_HUB_HTTP_PORT".to_owned(),
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .env("PERRY_HUB_BIND", "127.0.0.1")
            .env(port_setting, port.to_string())
            .env("PERRY_HUB_WS_PORT", "0")
            .env("PERRY_HUB_PUBLIC_URL", &base_url)
            .env("PERRY_HUB_WORKER_SECRET", hub.worker_secret.expose())
            .env("PERRY_HUB_ADMIN_SECRET", hub.admin_secret.expose())
            .env("PERRY_HUB_CREDENTIALS_KEY", hub.credentials_key.expose())
            .env("PERRY_HUB_SELF_HOSTED", hub.self_hosted.to_string())
            .env(
                "PERRY_HUB_DOWNLOAD_CLAIM_SECS",
                hub.download_claim_secs.to_string(),
            )
            .env("PERRY_DB_HOST", &db.host)
            .env("PERRY_DB_PORT", db.port.to_string())
            .env("PERRY_DB_USER", &db.user)
            .env("PERRY_DB_PASSWORD", db.password.expose())
            .env("PERRY_DB_NAME", &db.name)
            .env("AMQP_URL", primary.amqp.url.expose())
            .env("PERRY_AMQP_PREFIX", &primary.amqp.prefix)
            .env(
                "PERRY_BLOB_BACKEND",
                match blob.backend {
                    BlobBackend::S3 => "s3",
                    BlobBackend::Fs => "fs",
                },
            )
            .env("PERRY_BLOB_DIR", &blob.dir)
            .env("PERRY_S3_BUCKET", &blob.s3_bucket)
            .env(
                "PERRY_S3_ENDPOINT",
                blob.s3_endpoint.clone().unwrap_or_default(),
            )
            .env("PERRY_S3_REGION", &blob.s3_region)
            .env("PERRY_S3_ACCESS_KEY_ID", &blob.s3_access_key_id)
            .env(
                "PERRY_S3_SECRET_ACCESS_KEY",
                blob.s3_secret_access_key.expose(),
            )
            .envs(extra.iter().copied());
        cmd
    }

    /// `ws://…/ws`.
    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.base_url.replacen("http://", "ws://", 1))
    }

    /// SIGKILL: no shutdown, nothing flushed.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("addr").port()
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
