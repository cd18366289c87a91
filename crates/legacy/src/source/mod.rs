//! Reading the original server's tables as they are, in one read-only snapshot. Columns the
//! original added later (`licenses.account_id`, `device_bound`, `project_bundle_id`) are found
//! through `information_schema` and read as absent on older installs. Values are read loosely
//! (numbers cast to BIGINT, anything nullable as `Option`) and judged by [`crate::map`].

use std::{
    collections::{HashMap, HashSet},
    fmt,
    str::FromStr,
};

use sqlx::{mysql::MySqlConnectOptions, ConnectOptions, Connection, MySqlConnection};

use crate::{Error, Result};

mod rows;

pub use rows::{LegacyAccount, LegacyBuild, LegacyLicense, LegacyUsage};

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
    shared::install_tls_provider();
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
        licenses: rows::licenses(conn, layout).await?,
        accounts: rows::accounts(conn).await?,
        usage: rows::usage(conn).await?,
        builds: match with_builds {
            true => Some(rows::builds(conn).await?),
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
