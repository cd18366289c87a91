//! Test harness for Perry Hub: an in-process hub (all four services) on a random port against
//! real MariaDB, RabbitMQ (or the in-process queue, [`QueueKind`]) and S3, with a fresh
//! database, queue prefix and bucket per test; plus simulated workers and CLIs that speak the
//! wire protocol over real sockets.
//!
//! The hub is composed by `standalone::start` and served by `standalone::serve`, exactly as
//! `perry-hub` does; [`api`] adds one typed method per HTTP endpoint; [`fake_azure`] stands in
//! for Azure (token endpoint and VM start/deallocate) with a configurable boot time.

pub mod api;
pub mod attacks;
pub mod browser;
pub mod chaos;
pub mod fake_azure;
pub mod fault_log;
mod process;
mod seed;
mod settings;
pub mod sim;
mod ws;

pub use process::HubProcess;
pub use settings::{
    finisher_settings, fs_blob_config, ingest_settings, init_tracing, put_bytes, sha256_hex,
};
pub use ws::{FakeWorker, WsClient};
pub mod windows;

use std::time::Duration;

use serde_json::json;
use shared::{
    config::{AmqpConfig, BlobConfig, HubConfig},
    runtime::Deps,
    testing::{self, TestDb},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long tests wait for an expected event before failing.
pub const WAIT: Duration = Duration::from_secs(20);

/// A change to the hub configuration of a test hub.
pub type HubAdjust = Box<dyn FnOnce(&mut HubConfig) + Send>;

/// Which queue a test hub runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueueKind {
    /// The shared RabbitMQ (a unique prefix per test).
    #[default]
    RabbitMq,
    /// The in-process queue, as `perry-hub all` without `AMQP_URL`.
    InProcess,
    /// One box with nothing installed, as a bare `perry-hub`: the embedded SQLite database,
    /// the in-process queue and filesystem blobs.
    OneBox,
}

impl QueueKind {
    /// Default hub options on this queue.
    pub fn options(self) -> HubOptions {
        HubOptions {
            queue: self,
            ..HubOptions::default()
        }
    }
}

/// Options of a test hub.
#[derive(Default)]
pub struct HubOptions {
    /// RabbitMQ (the default) or the in-process queue.
    pub queue: QueueKind,
    /// Use the filesystem store instead of S3.
    pub fs_blobs: bool,
    /// Dispatcher timing.
    pub dispatcher: Option<dispatcher::Settings>,
    /// Finisher settings (None: defaults).
    pub finisher: Option<finisher::Settings>,
    /// Do not start the finisher.
    pub no_finisher: bool,
    /// Share the database, queue prefix and bucket of another hub (a second replica).
    pub replica_of: Option<(shared::config::DbConfig, AmqpConfig, BlobConfig)>,
    /// Adjust the hub configuration.
    pub hub: Option<HubAdjust>,
    /// Ingest settings (None: [`ingest_settings`]).
    pub ingest: Option<ingest::Settings>,
    /// A RabbitMQ other than the shared one (the fault suite's private node).
    pub amqp_url: Option<String>,
}

/// A running in-process hub.
pub struct TestHub {
    /// The test database (None for a replica, which shares its primary's).
    pub db: Option<TestDb>,
    /// Shared handles (pool, blob store, brokers).
    pub deps: Deps,
    /// AMQP settings (unique prefix).
    pub amqp: AmqpConfig,
    /// Blob settings.
    pub blob_config: BlobConfig,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// The dispatcher context.
    pub dispatcher: dispatcher::AppState,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _fs_dir: Option<tempdir::TempDir>,
}

/// Minimal temporary directory (removed on drop).
pub mod tempdir {
    /// A directory removed on drop.
    #[derive(Debug)]
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        /// Create a fresh directory under the system temp dir.
        pub fn new(prefix: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&p).expect("create temp dir");
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl TestHub {
    /// A hub with the S3 store and default settings.
    pub async fn start() -> Self {
        Self::start_with(HubOptions::default()).await
    }

    /// A hub with options.
    pub async fn start_with(opts: HubOptions) -> Self {
        init_tracing();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let mut hub_config = testing::hub_config(&base_url);
        if let Some(f) = opts.hub {
            f(&mut hub_config);
        }
        let mut fs_dir = None;
        let (db, db_config, amqp, blob_config) = match opts.replica_of {
            Some((db, amqp, blob)) => (None, db, amqp, blob),
            None => {
                let one_box = opts.queue == QueueKind::OneBox;
                let db = if one_box {
                    TestDb::sqlite().await
                } else {
                    TestDb::new().await
                };
                let cfg = db.config.clone();
                let blob = if opts.fs_blobs || one_box {
                    let dir = tempdir::TempDir::new("perry-blobs");
                    let b = fs_blob_config(&dir.0);
                    fs_dir = Some(dir);
                    b
                } else {
                    let (_, settings) = testing::s3_store().await;
                    testing::s3_blob_config(&settings)
                };
                let mut amqp = testing::amqp_config();
                if let Some(url) = opts.amqp_url {
                    amqp.url = shared::config::Secret::new(url);
                }
                if matches!(opts.queue, QueueKind::InProcess | QueueKind::OneBox) {
                    amqp.url = shared::config::Secret::default();
                }
                (Some(db), cfg, amqp, blob)
            }
        };
        let cancel = CancellationToken::new();
        let pool = shared::db::connect(&db_config, Duration::from_secs(10))
            .await
            .expect("pool");
        let store = blob_config.build().await.expect("blob store");
        let deps = Deps::from_parts(
            pool,
            store,
            &amqp,
            &blob_config,
            &hub_config,
            cancel.clone(),
        );
        assert_eq!(
            deps.queue.is_in_process(),
            amqp.url.is_empty(),
            "the in-process queue exactly when no AMQP_URL is given"
        );
        if deps.queue.is_in_process() || shared::db::Dialect::of_pool(&deps.pool).is_sqlite() {
            standalone::queue_lock::hold(&deps)
                .await
                .expect("the in-process queue's lock");
        }
        deps.spawn_relay();
        let services = standalone::Services {
            ingest: opts.ingest.unwrap_or_else(ingest_settings),
            // Without a finisher nothing requeues lost jobs unless a test asks for it: tests
            // that run the reaper's sweeps by hand expect to be the only ones.
            dispatcher: opts.dispatcher.unwrap_or_else(|| dispatcher::Settings {
                reap_lost_jobs: !opts.no_finisher,
                ..dispatcher::Settings::default()
            }),
            finisher: (!opts.no_finisher).then(|| opts.finisher.unwrap_or_else(finisher_settings)),
        };
        let app = standalone::start(&deps, services).expect("compose the hub");
        let dispatch = app.dispatcher.clone();
        let listeners = standalone::Listeners {
            http: listener,
            legacy_ws: None,
        };
        let server = tokio::spawn(standalone::serve(app, listeners, cancel.clone()));
        Self {
            db,
            deps,
            amqp,
            blob_config,
            base_url,
            http: reqwest::Client::new(),
            dispatcher: dispatch,
            cancel,
            server,
            _fs_dir: fs_dir,
        }
    }

    /// Start a second replica sharing this hub's database, broker prefix and bucket.
    pub async fn replica(&self) -> Self {
        assert!(
            !self.deps.queue.is_in_process(),
            "replicas need RabbitMQ: an in-process queue serves one process"
        );
        Self::start_with(HubOptions {
            replica_of: Some((
                self.db().config.clone(),
                self.amqp.clone(),
                self.blob_config.clone(),
            )),
            ..HubOptions::default()
        })
        .await
    }

    /// Stop this hub and start it again on the same database, queue settings and blob store,
    /// as a restart of the process: an in-process queue starts empty, RabbitMQ's queues keep
    /// their messages.
    pub async fn restart(mut self, mut opts: HubOptions) -> Self {
        let db = self.db.take().expect("restart the primary hub");
        let fs_dir = self._fs_dir.take();
        opts.replica_of = Some((
            db.config.clone(),
            self.amqp.clone(),
            self.blob_config.clone(),
        ));
        self.stop().await;
        let mut hub = Self::start_with(opts).await;
        hub.db = Some(db);
        hub._fs_dir = fs_dir;
        hub
    }

    /// The test database.
    pub fn db(&self) -> &TestDb {
        self.db
            .as_ref()
            .expect("replicas share their primary's database")
    }

    /// The pool.
    pub fn pool(&self) -> &sqlx::AnyPool {
        &self.deps.pool
    }

    /// Absolute URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `ws://.../ws`.
    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.base_url.replacen("http://", "ws://", 1))
    }

    /// The worker secret.
    pub fn worker_secret(&self) -> String {
        self.deps.hub.worker_secret.expose().to_owned()
    }

    /// The admin secret.
    pub fn admin_secret(&self) -> String {
        self.deps.hub.admin_secret.expose().to_owned()
    }

    /// Stop the hub and drop its resources (database and broker objects for a primary).
    pub async fn stop(self) {
        self.deps.shutdown(Duration::from_secs(5)).await;
        self.cancel.cancel();
        let _ = self.server.await;
        if let Some(db) = self.db {
            testing::cleanup_amqp(&self.amqp).await;
            db.drop_db().await;
        }
    }

    /// Wait until every outbox row is published.
    pub async fn outbox_drained(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let pending: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_ms IS NULL")
                    .fetch_one(self.pool())
                    .await
                    .expect("count");
            if pending == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "outbox not drained: {pending} pending"
            );
            self.deps.notify_outbox();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A job's state.
    pub async fn job_state(&self, job_id: &str) -> String {
        sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
            .bind(job_id)
            .fetch_one(self.pool())
            .await
            .expect("job state")
    }

    /// Wait until a job reaches `state`.
    pub async fn wait_state(&self, job_id: &str, state: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.job_state(job_id).await;
            if s == state {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {job_id} stuck in {s}, expected {state}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Connect a worker with the right secret.
    pub async fn worker(&self, name: &str, caps: &[&str], max: u32) -> FakeWorker {
        FakeWorker::connect(&self.ws_url(), json!({"type":"worker_hello","name":name,"secret":self.worker_secret(),"capabilities":caps,"max_concurrent":max,"perry_version":"0.5.0"})).await
    }

    /// Connect a CLI subscribed to `job_id`.
    pub async fn cli(&self, job_id: &str) -> WsClient {
        let mut c = WsClient::connect(&self.ws_url()).await;
        c.send(json!({"type":"subscribe","job_id":job_id})).await;
        c
    }
}
