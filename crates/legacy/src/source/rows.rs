//! The four source tables, row by row, in a stable order (row positions in the report follow it).

use shared::config::Secret;
use sqlx::{MySqlConnection, Row};

use super::Layout;
use crate::{Error, Result};

/// A `licenses` row.
#[derive(Debug, Clone, Default)]
pub struct LegacyLicense {
    /// 1-based position in `createdAt, licenseKey` order.
    pub row: usize,
    /// `licenseKey` (a secret: redacted in `Debug`).
    pub key: Secret,
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
    /// The Bearer token (a secret: redacted in `Debug`).
    pub api_token: Option<Secret>,
    pub has_payment_method: Option<i64>,
    pub created_at: Option<i64>,
}

/// A `usage_counters` row.
#[derive(Debug, Clone, Default)]
pub struct LegacyUsage {
    /// 1-based position in `license_key, period` order.
    pub row: usize,
    /// The licence key (a secret: redacted in `Debug`).
    pub license_key: Secret,
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
    /// The licence key (a secret: redacted in `Debug`).
    pub license_key: Option<Secret>,
    pub tier: Option<String>,
    pub targets: Option<String>,
    pub status: Option<String>,
    pub queued_at: Option<i64>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub worker_name: Option<String>,
    pub error_message: Option<String>,
}

pub(super) async fn licenses(
    conn: &mut MySqlConnection,
    layout: Layout,
) -> Result<Vec<LegacyLicense>> {
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
                key: Secret::new(r.try_get::<String, _>("licenseKey")?),
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

pub(super) async fn accounts(conn: &mut MySqlConnection) -> Result<Vec<LegacyAccount>> {
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
                api_token: r
                    .try_get::<Option<String>, _>("api_token")?
                    .map(Secret::new),
                has_payment_method: r.try_get("has_payment_method")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::Source)
}

pub(super) async fn usage(conn: &mut MySqlConnection) -> Result<Vec<LegacyUsage>> {
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
                license_key: Secret::new(r.try_get::<String, _>("license_key")?),
                period: r.try_get("period")?,
                publishes: r.try_get("publishes")?,
                deep_verifies: r.try_get("deep_verifies")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::Source)
}

pub(super) async fn builds(conn: &mut MySqlConnection) -> Result<Vec<LegacyBuild>> {
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
                license_key: r
                    .try_get::<Option<String>, _>("licenseKey")?
                    .map(Secret::new),
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
