//! Token and id shapes, and the single-use claim of a download token.
//!
//! A claim is one conditional `UPDATE`: of any number of concurrent requests with the same token
//! exactly one sets `used_ms` (the claim's stamp) and `claim_until_ms`. The claim stays *armed*
//! until the read it guards either completes or fails:
//!
//! - [`TokenClaim::commit`], awaited *before* the last byte is handed over, sets
//!   `claim_until_ms` to `NULL` on condition that the stamp is still this claim's: the token is
//!   consumed for good. When the condition fails the read must not complete.
//! - [`TokenClaim::release`], or the drop of an armed claim (which releases from a spawned
//!   task), sets `used_ms` back to `NULL` under the same condition: the link stays usable, for
//!   at most `PERRY_HUB_DOWNLOAD_MAX_ATTEMPTS` claims in all (DEC-23).
//! - A claim whose process died does neither. It lapses at `claim_until_ms`, after which the
//!   next request may claim the token again (DEC-30). While a read streams, a task renews the
//!   claim every third of `PERRY_HUB_DOWNLOAD_CLAIM_SECS`, so a live read never lapses; and
//!   because completing needs the conditional commit, a read whose claim lapsed and was taken
//!   over cannot complete. At most one read of a link ever completes.

use std::time::Duration;

use shared::clock::now_ms;
use sqlx::AnyPool;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// Whether `s` is a lower-case, hyphenated UUID, the only shape of tokens and ids the hub
/// issues. Anything else is rejected before a database or store lookup.
pub fn is_canonical_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// The stored hash of a download token, or `None` when `token` cannot be one.
pub fn download_token_hash(token: &str) -> Option<[u8; 32]> {
    is_canonical_uuid(token).then(|| shared::auth::hash_token(token))
}

/// How a token may be claimed: attempts allowed and how long a claim holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimPolicy {
    pub max_attempts: u32,
    pub hold: Duration,
}

impl ClaimPolicy {
    pub(crate) fn of(hub: &shared::config::HubConfig) -> Self {
        Self {
            max_attempts: hub.download_max_attempts,
            hold: hub.download_claim(),
        }
    }

    fn hold_ms(self) -> i64 {
        i64::try_from(self.hold.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A download token claimed by this request. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct TokenClaim {
    pool: AnyPool,
    tracker: TaskTracker,
    hash: [u8; 32],
    stamp: i64,
    armed: bool,
    renewal: JoinHandle<()>,
}

impl TokenClaim {
    /// Claim the token if it is unused (or its last claim lapsed), unexpired and has attempts
    /// left, counting one attempt; `None` when another request holds it, it was used, it
    /// expired or its attempts ran out in the meantime.
    pub(crate) async fn acquire(
        pool: &AnyPool,
        tracker: &TaskTracker,
        hash: [u8; 32],
        policy: ClaimPolicy,
    ) -> Result<Option<Self>, sqlx::Error> {
        let stamp = now_ms();
        // A lapsed claim ends at or before `stamp`, and was stamped a whole hold before that, so
        // a new claim never gets the stamp of an earlier one.
        let done = sqlx::query(
            "UPDATE download_tokens \
             SET used_ms = ?, claim_until_ms = ?, attempts = attempts + 1 \
             WHERE token_hash = ? AND (used_ms IS NULL OR claim_until_ms <= ?) \
             AND expires_ms > ? AND attempts < ?",
        )
        .bind(stamp)
        .bind(stamp.saturating_add(policy.hold_ms()))
        .bind(&hash[..])
        .bind(stamp)
        .bind(stamp)
        .bind(i64::from(policy.max_attempts))
        .execute(pool)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let renewal = tokio::spawn(renew(pool.clone(), hash, stamp, policy));
        Ok(Some(Self {
            pool: pool.clone(),
            tracker: tracker.clone(),
            hash,
            stamp,
            armed: true,
            renewal,
        }))
    }

    /// The read is about to complete: consume the token for good. `false` when this claim is
    /// no longer held (it lapsed and another read took the token) or the database failed; the
    /// read must then not complete. On a database failure the claim is released on drop.
    pub(crate) async fn commit(mut self) -> bool {
        self.renewal.abort();
        let result = sqlx::query(
            "UPDATE download_tokens SET claim_until_ms = NULL \
             WHERE token_hash = ? AND used_ms = ? AND claim_until_ms IS NOT NULL",
        )
        .bind(&self.hash[..])
        .bind(self.stamp)
        .execute(&self.pool)
        .await;
        match result {
            Ok(done) if done.rows_affected() == 1 => {
                self.armed = false;
                true
            }
            Ok(_) => {
                // Nothing of ours left to release.
                self.armed = false;
                tracing::warn!("a download's claim lapsed and was taken over: read not completed");
                false
            }
            Err(error) => {
                tracing::error!(%error, "could not consume a download token: read not completed");
                false
            }
        }
    }

    /// The read failed: make the token usable again.
    pub(crate) async fn release(mut self) {
        self.renewal.abort();
        self.armed = false;
        release(&self.pool, self.hash, self.stamp).await;
    }
}

impl Drop for TokenClaim {
    fn drop(&mut self) {
        self.renewal.abort();
        if !self.armed {
            return;
        }
        self.armed = false;
        let (pool, hash, stamp) = (self.pool.clone(), self.hash, self.stamp);
        shared::runtime::spawn_tracked(&self.tracker, async move {
            release(&pool, hash, stamp).await;
        });
    }
}

/// Keep a claim from lapsing while its read streams: every third of the hold, push its end a
/// whole hold ahead. Stops when the claim is no longer this one (taken over, released,
/// consumed); a failed renewal is retried at the next tick.
async fn renew(pool: AnyPool, hash: [u8; 32], stamp: i64, policy: ClaimPolicy) {
    let period = (policy.hold / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        let result = sqlx::query(
            "UPDATE download_tokens SET claim_until_ms = ? \
             WHERE token_hash = ? AND used_ms = ? AND claim_until_ms IS NOT NULL",
        )
        .bind(now_ms().saturating_add(policy.hold_ms()))
        .bind(&hash[..])
        .bind(stamp)
        .execute(&pool)
        .await;
        match result {
            Ok(done) if done.rows_affected() == 0 => {
                tracing::warn!("a streaming download's claim was taken over");
                return;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not renew a download claim"),
        }
    }
}

async fn release(pool: &AnyPool, hash: [u8; 32], stamp: i64) {
    let result = sqlx::query(
        "UPDATE download_tokens SET used_ms = NULL, claim_until_ms = NULL \
         WHERE token_hash = ? AND used_ms = ? AND claim_until_ms IS NOT NULL",
    )
    .bind(&hash[..])
    .bind(stamp)
    .execute(pool)
    .await;
    match result {
        Ok(_) => tracing::debug!("download token released after an incomplete read"),
        Err(error) => {
            tracing::error!(%error, "could not release a download token after a failed read")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lower_case_hyphenated_uuids_are_accepted() {
        let id = uuid::Uuid::new_v4().to_string();
        assert!(is_canonical_uuid(&id));
        assert!(download_token_hash(&id).is_some());
        for bad in [
            String::new(),
            id.to_uppercase(),
            id.replace('-', ""),
            format!("{{{id}}}"),
            format!("{id}x"),
            format!("../{}", &id[3..]),
            "..%2F..%2Fetc%2Fpasswd".to_owned(),
            "g".repeat(36),
            format!("{}/{}", &id[..17], &id[18..]),
        ] {
            assert!(!is_canonical_uuid(&bad), "{bad:?}");
            assert!(download_token_hash(&bad).is_none(), "{bad:?}");
        }
    }
}
