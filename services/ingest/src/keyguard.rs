//! Failed licence-key lookups, throttled per client address (issue 15 item 7, DEC-24). A key
//! is 48 random bits (`FREE-XXXX-XXXX-XXXX`), too few to face unlimited guessing: every lookup
//! that finds no key (`license/verify`, a build's `license_key`, a key used as the Bearer of
//! `GET /jobs/{id}`) counts in the address's bucket of the rolling window kept in MySQL
//! (`rate_events`), and an address at its limit is refused every key lookup, right or wrong,
//! with 429 `RATE_LIMITED` until its failures age out.

use shared::{clock::now_ms, http::ApiResult, license_hash::LicenseHashing};
use sqlx::AnyConnection;

use crate::{
    access::{self, Principal},
    errors, limits, AppState,
};

/// The throttle of one client address.
#[derive(Debug, Clone)]
pub struct KeyGuard {
    hashing: LicenseHashing,
    bucket: String,
    limit: u32,
    window_ms: i64,
}

impl KeyGuard {
    /// The guard of `addr` (as [`crate::licenses::client_addr`] names it).
    pub fn new(state: &AppState, addr: &str) -> Self {
        let settings = &state.settings;
        Self {
            hashing: state.hashing.clone(),
            bucket: format!("keyfail:{addr}"),
            limit: settings.key_failures_per_addr,
            window_ms: i64::try_from(settings.key_failure_window_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        }
    }

    /// 429 `RATE_LIMITED` when the address has used up its failures.
    pub async fn check(&self, conn: &mut AnyConnection) -> ApiResult<()> {
        if self.limit == 0 {
            return Ok(());
        }
        let since = now_ms().saturating_sub(self.window_ms);
        if limits::hits_since(conn, &self.bucket, since).await? >= u64::from(self.limit) {
            tracing::warn!("licence key lookups throttled after repeated failures");
            return Err(errors::rate_limited(
                "Too many invalid license keys from your address; try again later",
            ));
        }
        Ok(())
    }

    /// Count a lookup that found nothing.
    pub async fn failed(&self, conn: &mut AnyConnection) -> ApiResult<()> {
        if self.limit != 0 {
            limits::record_hit(conn, &self.bucket, now_ms()).await?;
        }
        Ok(())
    }

    /// [`access::principal_from_key`] behind the throttle: refused when throttled, counted
    /// when the key is unknown.
    pub async fn principal_from_key(
        &self,
        conn: &mut AnyConnection,
        key: &str,
    ) -> ApiResult<Principal> {
        self.check(conn).await?;
        let found = access::principal_from_key(conn, &self.hashing, key).await;
        if matches!(&found, Err(e) if e.code == shared::http::ErrorCode::LicenseInvalid) {
            self.failed(conn).await?;
        }
        found
    }
}
