//! `import-legacy` against a real MariaDB database laid out exactly like the original server's
//! (the current layout and the older one without the three later licence columns), then the
//! imported keys and tokens used through the CLI's real requests.

mod history;
mod import;
mod layouts;
mod peppered;

use base64::Engine as _;
use perry_hub_tests::TestHub;
use serde_json::{json, Value};
use sqlx::{AnyPool, Row};

/// The original server's tables as it creates them at start (before its later `ALTER TABLE`s).
const LEGACY_TABLES: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS licenses (licenseKey VARCHAR(64) PRIMARY KEY, \
     tier VARCHAR(8) NOT NULL DEFAULT 'free', githubUsername VARCHAR(255) NOT NULL DEFAULT '', \
     platforms TEXT NOT NULL, createdAt BIGINT NOT NULL, notes TEXT NULL)",
    "CREATE TABLE IF NOT EXISTS accounts (id VARCHAR(36) PRIMARY KEY, \
     github_username VARCHAR(255) NOT NULL, github_id VARCHAR(64) NOT NULL UNIQUE, \
     email VARCHAR(255) NOT NULL DEFAULT '', tier VARCHAR(8) NOT NULL DEFAULT 'free', \
     polar_customer_id VARCHAR(64) NULL, polar_subscription_id VARCHAR(64) NULL, \
     api_token VARCHAR(64) NULL UNIQUE, has_payment_method BOOLEAN NOT NULL DEFAULT FALSE, \
     created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS usage_counters (license_key VARCHAR(64) NOT NULL, \
     period VARCHAR(7) NOT NULL, publishes INT NOT NULL DEFAULT 0, \
     deep_verifies INT NOT NULL DEFAULT 0, PRIMARY KEY (license_key, period))",
    "CREATE TABLE IF NOT EXISTS builds (id CHAR(36) PRIMARY KEY, licenseKey VARCHAR(64) NOT NULL, \
     tier VARCHAR(8) NOT NULL, targets TEXT NOT NULL, status VARCHAR(16) NOT NULL, \
     queuedAt BIGINT NOT NULL, startedAt BIGINT NULL, completedAt BIGINT NULL, \
     durationSecs DOUBLE NULL, workerName VARCHAR(255) NULL, errorMessage TEXT NULL)",
];

/// The columns the original added later.
const LATER_COLUMNS: [&str; 3] = [
    "ALTER TABLE licenses ADD COLUMN account_id VARCHAR(36) NULL",
    "ALTER TABLE licenses ADD COLUMN device_bound BOOLEAN DEFAULT FALSE",
    "ALTER TABLE licenses ADD COLUMN project_bundle_id VARCHAR(255) NULL",
];

/// A throw-away database laid out like the original server's.
pub struct LegacyDb {
    pub pool: AnyPool,
    name: String,
    url: String,
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn server_url() -> String {
    format!(
        "mysql://{}:{}@{}:{}",
        env("PERRY_DB_USER", "perry"),
        env("PERRY_DB_PASSWORD", ""),
        env("PERRY_DB_HOST", "127.0.0.1"),
        env("PERRY_DB_PORT", "3306"),
    )
}

impl LegacyDb {
    /// A fresh database (`perry_test_legacy_<random>`) with the original's tables; `older`
    /// leaves out the three later licence columns.
    pub async fn create(older: bool) -> Self {
        let name = shared::testing::unique("perry_test_legacy_");
        let base = format!("{}/{}", server_url(), env("PERRY_DB_NAME", "perry_hub"));
        let admin = AnyPool::connect(&base).await.expect("connect to MariaDB");
        sqlx::query(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .execute(&admin)
            .await
            .expect("create legacy database");
        admin.close().await;
        let url = format!("{}/{name}", server_url());
        let pool = AnyPool::connect(&url).await.expect("connect legacy db");
        let later: &[&str] = if older { &[] } else { &LATER_COLUMNS };
        for sql in LEGACY_TABLES.iter().chain(later) {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        Self { pool, name, url }
    }

    /// Import options reading from this database.
    pub fn args(&self) -> ::legacy::Args {
        ::legacy::Args {
            from: shared::config::Secret::new(self.url.clone()),
            with_builds: false,
            update: false,
            dry_run: false,
            allow_skips: false,
            license_pepper: shared::config::Secret::default(),
        }
    }

    /// Run one statement.
    pub async fn exec(&self, sql: &str) {
        sqlx::query(sql).execute(&self.pool).await.expect(sql);
    }

    /// Drop the database.
    pub async fn drop_db(self) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }
}

/// The current UTC month and the one before (`YYYY-MM`).
pub fn this_and_last_month() -> (String, String) {
    let this = shared::clock::current_period();
    let (y, m) = (
        this[..4].parse::<i32>().expect("year"),
        this[5..].parse::<u32>().expect("month"),
    );
    let last = match m {
        1 => format!("{:04}-12", y - 1),
        m => format!("{y:04}-{:02}", m - 1),
    };
    (this, last)
}

/// `POST /api/v1/build` as the CLI sends it (multipart), with a licence key part and/or a
/// Bearer token; (status, JSON body).
pub async fn submit(
    hub: &TestHub,
    project: &str,
    key: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let manifest = json!({
        "app_name": "Demo App", "bundle_id": project, "version": "1.0.0",
        "short_version": null, "entry": "src/main.ts", "icon": null, "targets": ["linux"],
        "category": null, "minimum_os_version": null, "entitlements": null
    });
    let tarball = base64::engine::general_purpose::STANDARD.encode(b"tarball bytes");
    let mut form = reqwest::multipart::Form::new()
        .text("manifest", manifest.to_string())
        .text("credentials", "{}")
        .text("tarball_b64", tarball);
    if let Some(key) = key {
        form = form.text("license_key", key.to_owned());
    }
    let mut request = hub.http.post(hub.url("/api/v1/build")).multipart(form);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("build request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every row of the tables an import writes, as text, for before/after comparisons.
pub async fn snapshot(pool: &AnyPool) -> Vec<String> {
    let queries = [
        "SELECT CONCAT_WS('|', id, github_id, github_username, IFNULL(email, '-'), tier, \
         has_payment_method, IFNULL(polar_customer_id, '-'), created_ms) FROM accounts",
        "SELECT CONCAT_WS('|', account_id, HEX(token_hash), created_ms) FROM api_tokens",
        "SELECT CONCAT_WS('|', id, HEX(key_hash), tier, IFNULL(account_id, '-'), device_bound, \
         IFNULL(bound_project, '-'), IFNULL(github_username, '-'), created_ms) FROM licenses",
        "SELECT CONCAT_WS('|', license_id, period, publishes) FROM license_usage",
        "SELECT CONCAT_WS('|', id, license_id, state, target) FROM jobs",
        "SELECT CONCAT_WS('|', 'outbox', COUNT(*)) FROM outbox",
    ];
    let mut rows = Vec::new();
    for sql in queries {
        for row in sqlx::query(sql).fetch_all(pool).await.expect(sql) {
            rows.push(row.get::<String, _>(0));
        }
    }
    rows.sort();
    rows
}

/// (imported, unchanged, updated, skipped) of one table of a report.
#[track_caller]
pub fn counts(report: &::legacy::Report, table: &str) -> (usize, usize, usize, usize) {
    let t = report
        .table(table)
        .unwrap_or_else(|| panic!("no {table} in the report"));
    (t.imported, t.unchanged, t.updated, t.skipped)
}
