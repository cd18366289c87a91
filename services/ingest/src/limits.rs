//! Quotas and rate limits (PROTOCOL.md §6), kept in MySQL so every replica sees the same
//! window (D26): monthly publishes (`license_usage`, plus builds still in flight: D21), and
//! rolling windows of accepted hits per bucket (`rate_events`: `build:<license_id>`,
//! `register:addr:<ip or /64>`, `register:device:<sha256>`, `register:all`). Hits are recorded
//! only on acceptance. An admission that must not race (registration) first locks its buckets'
//! rows with [`lock_buckets`], then counts and records under the lock (DEC-17).

use protocol::Tier;
use shared::{clock, http::ApiResult};
use sqlx::AnyConnection;

use crate::{access::LicenseRow, errors};

/// One hour in milliseconds (the build-rate window).
pub const HOUR_MS: i64 = 3_600_000;

/// Job states that count as in flight toward the monthly quota.
const IN_FLIGHT: &str = "'queued', 'assigned', 'running', 'finishing'";

/// Rate bucket of a licence's build submissions.
pub fn build_bucket(license_id: i64) -> String {
    format!("build:{license_id}")
}

/// Accepted hits of `bucket` after `since_ms`.
pub async fn hits_since(
    conn: &mut AnyConnection,
    bucket: &str,
    since_ms: i64,
) -> Result<u64, sqlx::Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM rate_events WHERE bucket = ? AND at_ms > ?")
            .bind(bucket)
            .bind(since_ms)
            .fetch_one(conn)
            .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Lock the rows of `buckets` until the transaction ends, creating missing ones, in name order
/// (so two admissions sharing buckets never wait on each other crosswise). Concurrent
/// admissions of a bucket then count and record their hits one after the other.
pub async fn lock_buckets(
    conn: &mut AnyConnection,
    buckets: &[&str],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let mut sorted = buckets.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for bucket in sorted {
        // On a duplicate key, ON DUPLICATE KEY UPDATE takes the row's exclusive lock at once
        // (a plain INSERT IGNORE would take a shared one and deadlock on the upgrade).
        sqlx::query(&shared::db::sql(
            shared::db::Dialect::of(conn),
            "INSERT INTO rate_buckets (bucket, touched_ms) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE touched_ms = VALUES(touched_ms)",
        ))
        .bind(bucket)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Record an accepted hit.
pub async fn record_hit(
    conn: &mut AnyConnection,
    bucket: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO rate_events (bucket, at_ms) VALUES (?, ?)")
        .bind(bucket)
        .bind(at_ms)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Publishes counted for a licence in `period`.
pub async fn publishes(
    conn: &mut AnyConnection,
    license_id: i64,
    period: &str,
) -> Result<u32, sqlx::Error> {
    let n: Option<i32> = sqlx::query_scalar(
        "SELECT publishes FROM license_usage WHERE license_id = ? AND period = ?",
    )
    .bind(license_id)
    .bind(period)
    .fetch_optional(conn)
    .await?;
    Ok(n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0))
}

/// Builds of a licence that have not ended yet.
pub async fn in_flight(conn: &mut AnyConnection, license_id: i64) -> Result<u32, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM jobs WHERE license_id = ? AND state IN ({IN_FLIGHT})"
    ))
    .bind(license_id)
    .fetch_one(conn)
    .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Whether the monthly publish limit applies: not self-hosted, and not a pro licence linked to
/// an account (those continue with billed overage, §6).
pub fn monthly_limit_applies(tier: Tier, license: &LicenseRow, self_hosted: bool) -> bool {
    if self_hosted {
        return false;
    }
    !(tier == Tier::Pro && license.account_id.is_some())
}

/// Whether a device-bound licence refuses `project` (§6 device binding). Account-linked
/// licences are never bound.
pub fn binding_refuses(license: &LicenseRow, project: &str) -> bool {
    license.device_bound
        && license.account_id.is_none()
        && license
            .bound_project
            .as_deref()
            .is_some_and(|bound| bound != project)
}

/// Checks 6 and 7 of §3.7, in order: device binding (403 `ACCOUNT_REQUIRED`), then the monthly
/// quota (429 `PUBLISH_LIMIT_REACHED`), then the hourly limit (429 `RATE_LIMITED`). Records
/// nothing.
pub async fn admit(
    conn: &mut AnyConnection,
    license: &LicenseRow,
    tier: Tier,
    project: &str,
    self_hosted: bool,
) -> ApiResult<()> {
    if binding_refuses(license, project) {
        return Err(errors::account_required());
    }
    if self_hosted {
        return Ok(());
    }
    let now = clock::now_ms();
    if monthly_limit_applies(tier, license, self_hosted) {
        let period = clock::period_of(now);
        let counted = publishes(conn, license.id, &period).await?;
        let pending = in_flight(conn, license.id).await?;
        let limit = tier.monthly_publish_limit();
        if counted.saturating_add(pending) >= limit {
            return Err(errors::publish_limit(
                tier, counted, pending, limit, &period,
            ));
        }
    }
    let limit = tier.hourly_build_limit();
    if hits_since(conn, &build_bucket(license.id), now - HOUR_MS).await? >= u64::from(limit) {
        return Err(errors::hourly_limit(limit));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license(account: bool, bound: Option<&str>) -> LicenseRow {
        LicenseRow {
            id: 7,
            tier: "free".into(),
            account_id: account.then(|| "acc".to_owned()),
            device_bound: true,
            bound_project: bound.map(str::to_owned),
        }
    }

    #[test]
    fn a_device_licence_is_held_to_its_first_project() {
        assert!(!binding_refuses(&license(false, None), "com.a"));
        assert!(!binding_refuses(&license(false, Some("com.a")), "com.a"));
        assert!(binding_refuses(&license(false, Some("com.a")), "com.b"));
        assert!(!binding_refuses(&license(true, Some("com.a")), "com.b"));
        let mut unbound = license(false, Some("com.a"));
        unbound.device_bound = false;
        assert!(!binding_refuses(&unbound, "com.b"));
    }

    #[test]
    fn pro_accounts_and_self_hosted_hubs_skip_the_monthly_limit() {
        assert!(monthly_limit_applies(
            Tier::Free,
            &license(false, None),
            false
        ));
        assert!(monthly_limit_applies(
            Tier::Free,
            &license(true, None),
            false
        ));
        assert!(monthly_limit_applies(
            Tier::Pro,
            &license(false, None),
            false
        ));
        assert!(!monthly_limit_applies(
            Tier::Pro,
            &license(true, None),
            false
        ));
        assert!(!monthly_limit_applies(
            Tier::Free,
            &license(false, None),
            true
        ));
    }

    #[test]
    fn build_buckets_name_the_licence() {
        assert_eq!(build_bucket(42), "build:42");
    }
}
