//! Helpers for integration tests (feature `testing`): a fresh MySQL database per test, a unique
//! RabbitMQ prefix per test, and a fresh S3 bucket per test, all against the real services that
//! `scripts/ensure-services.sh --s3` starts.

use std::sync::Arc;

use clap::Parser;
use sqlx::AnyPool;

use crate::{
    clock::now_ms,
    config::{AmqpConfig, BlobConfig, DbConfig, HubConfig, Secret},
};
use blob::{S3BlobStore, S3Settings};

#[derive(Parser, Debug)]
struct EnvConfig {
    #[command(flatten)]
    db: DbConfig,
    #[command(flatten)]
    amqp: AmqpConfig,
}

fn env_config() -> EnvConfig {
    EnvConfig::try_parse_from(["test"]).unwrap_or_else(|e| panic!("test configuration: {e}"))
}

/// A short random suffix.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A fresh, migrated database (`scripts/test.sh` drops those of earlier runs before a run).
pub struct TestDb {
    /// Pool on the new database.
    pub pool: AnyPool,
    /// Settings pointing at it (for services under test).
    pub config: DbConfig,
    /// Its name.
    pub name: String,
}

impl TestDb {
    /// Create and migrate.
    pub async fn new() -> Self {
        let base = env_config().db;
        let admin = crate::db::connect(
            &base.with_database(&base.name),
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("connect to MySQL (run scripts/ensure-services.sh): {e:#}"));
        let now_s = now_ms() / 1000;
        let name = format!(
            "perry_test_{now_s}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        sqlx::query(&format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("create test database: {e}"));
        admin.close().await;
        let config = base.with_database(&name);
        let pool = crate::db::connect(&config, std::time::Duration::from_secs(10))
            .await
            .expect("connect test db");
        crate::db::migrate(&pool).await.expect("migrate test db");
        Self { pool, config, name }
    }

    /// A fresh, migrated embedded SQLite database in a folder of its own (the one-box hub);
    /// needs no server.
    pub async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(unique("perry-sqlite-"));
        let mut config = env_config().db;
        config.url = None;
        config.kind = crate::config::DbKind::Sqlite;
        config.sqlite_path = dir.join("hub.db");
        config.embedded_allowed = true;
        let pool = crate::db::connect(&config, std::time::Duration::from_secs(10))
            .await
            .expect("open the SQLite test database");
        crate::db::migrate(&pool).await.expect("migrate test db");
        let name = dir.display().to_string();
        Self { pool, config, name }
    }

    /// Count rows of a table (optionally filtered by a WHERE clause).
    pub async fn count(&self, table: &str, filter: &str) -> i64 {
        let sql = if filter.is_empty() {
            format!("SELECT COUNT(*) FROM {table}")
        } else {
            format!("SELECT COUNT(*) FROM {table} WHERE {filter}")
        };
        sqlx::query_scalar(&sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Drop the database.
    pub async fn drop_db(self) {
        let name = self.name.clone();
        self.pool.close().await;
        if self.config.kind == crate::config::DbKind::Sqlite {
            let _ = std::fs::remove_dir_all(&name);
            return;
        }
        let base = env_config().db;
        if let Ok(admin) = crate::db::connect(&base, std::time::Duration::from_secs(5)).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                .execute(&admin)
                .await;
        }
    }
}

/// The shared test broker, used when `AMQP_URL` is not set.
pub const TEST_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// RabbitMQ settings (`AMQP_URL`, else [`TEST_AMQP_URL`]) with a unique prefix, so parallel
/// tests never share queues.
pub fn amqp_config() -> AmqpConfig {
    let mut c = env_config().amqp;
    if !c.configured() {
        c.url = Secret::new(TEST_AMQP_URL);
    }
    c.prefix = unique("t");
    c
}

/// Delete every queue and exchange of a test prefix (nothing for the in-process queue).
pub async fn cleanup_amqp(config: &AmqpConfig) {
    if !config.configured() {
        return;
    }
    let broker = crate::queue::Broker::new(config, "cleanup");
    let Ok(ch) = broker.channel().await else {
        return;
    };
    let t = broker.topology();
    for target in crate::queue::TARGETS {
        let _ = ch
            .queue_delete(t.target_queue(target).into(), Default::default())
            .await;
    }
    let _ = ch
        .queue_delete(t.finisher_queue().into(), Default::default())
        .await;
    let _ = ch
        .queue_delete(t.dead_letter_queue().into(), Default::default())
        .await;
    for e in [crate::queue::Exchange::Jobs, crate::queue::Exchange::Events] {
        let _ = ch
            .exchange_delete(t.exchange(e).into(), Default::default())
            .await;
    }
    let _ = ch
        .exchange_delete(t.dead_letter_exchange().into(), Default::default())
        .await;
    broker.close().await;
}

/// S3 settings of the local test server with a fresh bucket.
pub async fn s3_store() -> (Arc<S3BlobStore>, S3Settings) {
    let settings = S3Settings {
        bucket: unique("perry-test-"),
        endpoint: Some(
            std::env::var("PERRY_TEST_S3_ENDPOINT")
                .unwrap_or_else(|_| "http://127.0.0.1:8014".into()),
        ),
        region: "us-east-1".into(),
        access_key_id: std::env::var("PERRY_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| "perry".into()),
        secret_access_key: std::env::var("PERRY_TEST_S3_SECRET_KEY")
            .unwrap_or_else(|_| "perrysecret".into()),
        key_prefix: String::new(),
        checksum_when_required: false,
    };
    let store = S3BlobStore::new(settings.clone()).expect("S3 client");
    store
        .ensure_bucket()
        .await
        .unwrap_or_else(|e| panic!("create test bucket (is s3s-fs running?): {e}"));
    (Arc::new(store), settings)
}

/// Blob settings pointing at an S3 test bucket.
pub fn s3_blob_config(settings: &S3Settings) -> BlobConfig {
    BlobConfig {
        backend: crate::config::BlobBackend::S3,
        dir: std::path::PathBuf::from("./unused"),
        s3_bucket: settings.bucket.clone(),
        s3_endpoint: settings.endpoint.clone(),
        s3_region: settings.region.clone(),
        s3_access_key_id: settings.access_key_id.clone(),
        s3_secret_access_key: Secret::new(settings.secret_access_key.clone()),
        s3_key_prefix: settings.key_prefix.clone(),
        s3_checksum_when_required: settings.checksum_when_required,
        s3_presign_downloads: false,
    }
}

/// Hub settings for tests: real (non-dev) secrets and a fixed public URL.
pub fn hub_config(public_url: &str) -> HubConfig {
    HubConfig {
        dev_mode: false,
        public_url: public_url.to_owned(),
        worker_secret: Secret::new("test-worker-secret-0123456789"),
        worker_secrets: crate::config::WorkerSecrets::default(),
        admin_secret: Secret::new("test-admin-secret-0123456789"),
        license_pepper: Secret::default(),
        credentials_key: Secret::new("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
        artifact_ttl_secs: 600,
        download_max_attempts: 5,
        download_claim_secs: 60,
        self_hosted: false,
        expected_version: String::new(),
        http: crate::config::HttpLimits::default(),
    }
}

/// Capture the output of the global tracing subscriber into a shared buffer (for tests that
/// assert no secret is logged). Installs a subscriber at TRACE level for this process.
pub fn capture_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::Mutex;
    #[derive(Clone)]
    struct Writer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let w = Writer(buf.clone());
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || w.clone())
        .with_ansi(false)
        .try_init();
    buf
}
