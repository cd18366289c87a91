//! Reading the original server's tables as they are, in one read-only snapshot. Columns the
//! original added later (`licenses.account_id`, `device_bound`, `project_bundle_id`) are found
//! through `information_schema` and read as absent on older installs. Values are read loosely
//! (numbers cast to BIGINT, anything nullable as `Option`) and judged by [`crate::map`].

use std::{
    collections::{HashMap, HashSet},
    fmt,
    str::FromStr,
};

use sqlx::{mysql::MySqlConnectOptions, ConnectOptions, Connection, MySqlConnection, Row};

use crate::{Error, Result};

/// Licence columns the original added with `ALTER TABLE` (older installs lack them).
pub const LATER_LICENSE_COLUMNS: [&str; 3] = ["account_id", "device_bound", "project_bundle_id"];

/// Which of the later licence columns the source has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `licenses.account_id` exists.
    pub account_id: bool,
    /// `licenses.device_bound` exists.
    pub device_bound: bool,
    /// `licenses.project_bundle_id` exists.
    pub project_bundle_id: bool,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = [self.account_id, self.device_bound, self.project_bundle_id];
        let missing: Vec<&str> = LATER_LICENSE_COLUMNS
            .iter()
            .zip(present)
            .filter(|(_, p)| !p)
            .map(|(c, _)| *c)
            .collect();
        if missing.is_empty() {
            f.write_str("current layout")
        } else {
            write!(f, "older layout (licenses without {})", missing.join(", "))
        }
    }
}

/// A `licenses` row.
#[derive(Debug, Clone, Default)]
pub struct LegacyLicense {
    /// 1-based position in `createdAt, licenseKey` order.
    pub row: usize,
    pub key: String,
    pub tier: Option<String>,
    pub github_username: Option<String>,
    pub platforms: Option<String>,
    pub created_at: Option<i64>,
    pub account_id: Option<String>,
    pub device_bound: Option<i64>,
    pub project_bundle_id: Option<String>,
}

/// An `accounts` row.
#[derive(Debug, Clone, Default)]
pub struct LegacyAccount {
    /// 1-based position in `created_at, id` order.
    pub row: usize,
    pub id: String,
    pub github_username: Option<String>,
    pub github_id: Option<String>,
    pub email: Option<String>,
    pub tier: Option<String>,
    pub polar_customer_id: Option<String>,
    pub polar_subscription_id: Option<String>,
    pub api_token: Option<String>,
    pub has_payment_method: Option<i64>,
    pub created_at: Option<i64>,
}

/// A `usage_counters` row.
#[derive(Debug, Clone, Default)]
pub struct LegacyUsage {
    /// 1-based position in `license_key, period` order.
    pub row: usize,
    pub license_key: String,
    pub period: String,
    pub publishes: Option<i64>,
    pub deep_verifies: Option<i64>,
}

/// A `builds` row (history only).
#[derive(Debug, Clone, Default)]
pub struct LegacyBuild {
    /// 1-based position in `queuedAt, id` order.
    pub row: usize,
    pub id: String,
    pub license_key: Option<String>,
    pub tier: Option<String>,
    pub targets: Option<String>,
    pub status: Option<String>,
    pub queued_at: Option<i64>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub worker_name: Option<String>,
    pub error_message: Option<String>,
}

/// Everything read from the source.
#[derive(Debug, Clone)]
pub struct LegacyData {
    /// Which later columns exist.
    pub layout: Layout,
    pub licenses: Vec<LegacyLicense>,
    pub accounts: Vec<LegacyAccount>,
    pub usage: Vec<LegacyUsage>,
    /// `None` unless build history was asked for.
    pub builds: Option<Vec<LegacyBuild>>,
}

/// Columns every layout has, per table.
const REQUIRED: [(&str, &[&str]); 4] = [
    (
        "licenses",
        &[
            "licenseKey",
            "tier",
            "githubUsername",
            "platforms",
            "createdAt",
        ],
    ),
    (
        "accounts",
        &[
            "id",
            "github_username",
            "github_id",
            "email",
            "tier",
            "polar_customer_id",
            "polar_subscription_id",
            "api_token",
            "has_payment_method",
            "created_at",
        ],
    ),
    (
        "usage_counters",
        &["license_key", "period", "publishes", "deep_verifies"],
    ),
    (
        "builds",
        &[
            "id",
            "licenseKey",
            "tier",
            "targets",
            "status",
            "queuedAt",
            "startedAt",
            "completedAt",
            "workerName",
            "errorMessage",
        ],
    ),
];

/// Connect to `url` and read every table in one consistent, read-only snapshot.
pub async fn read(url: &str, with_builds: bool) -> Result<LegacyData> {
    let scheme_ok = url.starts_with("mysql://") || url.starts_with("mariadb://");
    let options = MySqlConnectOptions::from_str(url)
        .ok()
        .filter(|_| scheme_ok)
        .ok_or(Error::SourceUrl)?;
    let mut conn = options.connect().await.map_err(Error::Source)?;
    sqlx::raw_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .execute(&mut conn)
        .await
        .map_err(Error::Source)?;
    let result = read_all(&mut conn, with_builds).await;
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
    let _ = conn.close().await;
    result
}

async fn read_all(conn: &mut MySqlConnection, with_builds: bool) -> Result<LegacyData> {
    let columns = columns(conn).await?;
    for (table, required) in REQUIRED {
        if table == "builds" && !with_builds {
            continue;
        }
        let have = columns.get(table);
        let missing: Vec<&str> = required
            .iter()
            .filter(|c| !have.is_some_and(|h| h.contains(&c.to_ascii_lowercase())))
            .copied()
            .collect();
        if have.is_none() {
            return Err(Error::NotLegacy(format!("table `{table}` is missing")));
        }
        if !missing.is_empty() {
            return Err(Error::NotLegacy(format!(
                "`{table}` lacks {}",
                missing.join(", ")
            )));
        }
    }
    let has = |c: &str| columns.get("licenses").is_some_and(|h| h.contains(c));
    let layout = Layout {
        account_id: has("account_id"),
        device_bound: has("device_bound"),
        project_bundle_id: has("project_bundle_id"),
    };
    Ok(LegacyData {
        layout,
        licenses: licenses(conn, layout).await?,
        accounts: accounts(conn).await?,
        usage: usage(conn).await?,
        builds: match with_builds {
            true => Some(builds(conn).await?),
            false => None,
        },
    })
}

/// Lower-cased column names per table of the current schema.
async fn columns(conn: &mut MySqlConnection) -> Result<HashMap<String, HashSet<String>>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE()",
    )
    .fetch_all(conn)
    .await
    .map_err(Error::Source)?;
    let mut map: HashMap<String, HashSet<String>> = HashMap::new();
    for (table, column) in rows {
        map.entry(table)
            .or_default()
            .insert(column.to_ascii_lowercase());
    }
    Ok(map)
}

async fn licenses(conn: &mut MySqlConnection, layout: Layout) -> Result<Vec<LegacyLicense>> {
    let optional = |present: bool, expr: &str, name: &str| match present {
        true => format!("{expr} AS {name}"),
        false => format!("NULL AS {name}"),
    };
    let sql = format!(
        "SELECT licenseKey, tier, githubUsername, platforms, CAST(createdAt AS SIGNED) AS createdAt, \
         {}, {}, {} FROM licenses ORDER BY createdAt, licenseKey",
        optional(layout.account_id, "account_id", "account_id"),
        optional(layout.device_bound, "CAST(device_bound AS SIGNED)", "device_bound"),
        optional(layout.project_bundle_id, "project_bundle_id", "project_bundle_id"),
    );
    let rows = sqlx::query(&sql)
        .fetch_all(conn)
        .await
        .map_err(Error::Source)?;
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(LegacyLicense {
                row: i + 1,
                key: r.try_get("licenseKey")?,
                tier: r.try_get("tier")?,
                github_username: r.try_get("githubUsername")?,
                platforms: r.try_get("platforms")?,
                created_at: r.try_get("createdAt")?,
                account_id: r.try_get("account_id")?,
                device_bound: r.try_get("device_bound")?,
                project_bundle_id: r.try_get("project_bundle_id")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::Source)
}

async fn accounts(conn: &mut MySqlConnection) -> Result<Vec<LegacyAccount>> {
    let rows = sqlx::query(
        "SELECT id, github_username, CAST(github_id AS CHAR) AS github_id, email, tier, \
         polar_customer_id, polar_subscription_id, api_token, \
         CAST(has_payment_method AS SIGNED) AS has_payment_method, \
         CAST(created_at AS SIGNED) AS created_at FROM accounts ORDER BY created_at, id",
    )
    .fetch_all(conn)
    .await
    .map_err(Error::Source)?;
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(LegacyAccount {
                row: i + 1,
                id: r.try_get("id")?,
                github_username: r.try_get("github_username")?,
                github_id: r.try_get("github_id")?,
                email: r.try_get("email")?,
                tier: r.try_get("tier")?,
                polar_customer_id: r.try_get("polar_customer_id")?,
                polar_subscription_id: r.try_get("polar_subscription_id")?,
                api_token: r.try_get("api_token")?,
                has_payment_method: r.try_get("has_payment_method")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::Source)
}

async fn usage(conn: &mut MySqlConnection) -> Result<Vec<LegacyUsage>> {
    let rows = sqlx::query(
        "SELECT license_key, period, CAST(publishes AS SIGNED) AS publishes, \
         CAST(deep_verifies AS SIGNED) AS deep_verifies FROM usage_counters \
         ORDER BY license_key, period",
    )
    .fetch_all(conn)
    .await
    .map_err(Error::Source)?;
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(LegacyUsage {
                row: i + 1,
                license_key: r.try_get("license_key")?,
                period: r.try_get("period")?,
                publishes: r.try_get("publishes")?,
                deep_verifies: r.try_get("deep_verifies")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::Source)
}

async fn builds(conn: &mut MySqlConnection) -> Result<Vec<LegacyBuild>> {
    let rows = sqlx::query(
        "SELECT CAST(id AS CHAR) AS id, licenseKey, tier, targets, status, \
         CAST(queuedAt AS SIGNED) AS queuedAt, CAST(startedAt AS SIGNED) AS startedAt, \
         CAST(completedAt AS SIGNED) AS completedAt, workerName, errorMessage \
         FROM builds ORDER BY queuedAt, id",
    )
    .fetch_all(conn)
    .await
    .map_err(Error::Source)?;
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(LegacyBuild {
                row: i + 1,
                id: r.try_get("id")?,
                license_key: r.try_get("licenseKey")?,
                tier: r.try_get("tier")?,
                targets: r.try_get("targets")?,
                status: r.try_get("status")?,
                queued_at: r.try_get("queuedAt")?,
                started_at: r.try_get("startedAt")?,
                completed_at: r.try_get("completedAt")?,
                worker_name: r.try_get("workerName")?,
                error_message: r.try_get("errorMessage")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::Source)
}
