//! Token and id shapes, and the single-use claim of a download token.
//!
//! A claim is one conditional `UPDATE`: of any number of concurrent requests with the same token
//! exactly one sets `used_ms`. The claim stays *armed* until the read it guards either completes
//! ([`TokenClaim::commit`]: the token is consumed) or fails ([`TokenClaim::release`], or the
//! drop of an armed claim, which releases from a spawned task): then `used_ms` goes back to
//! `NULL`, conditional on still holding this claim's stamp, and the link stays usable, for at
//! most `PERRY_HUB_DOWNLOAD_MAX_ATTEMPTS` claims in all (DEC-23).

use shared::clock::now_ms;
use sqlx::MySqlPool;
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

/// A download token claimed by this request. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct TokenClaim {
    pool: MySqlPool,
    tracker: TaskTracker,
    hash: [u8; 32],
    stamp: i64,
    armed: bool,
}

impl TokenClaim {
    /// Claim the token if it is unused, unexpired and has attempts left, counting one attempt;
    /// `None` when another request has it, it was used, it expired or its attempts ran out in
    /// the meantime.
    pub(crate) async fn acquire(
        pool: &MySqlPool,
        tracker: &TaskTracker,
        hash: [u8; 32],
        max_attempts: u32,
    ) -> Result<Option<Self>, sqlx::Error> {
        let stamp = now_ms();
        let done = sqlx::query(
            "UPDATE download_tokens SET used_ms = ?, attempts = attempts + 1 \
             WHERE token_hash = ? AND used_ms IS NULL AND expires_ms > ? AND attempts < ?",
        )
        .bind(stamp)
        .bind(&hash[..])
        .bind(stamp)
        .bind(max_attempts)
        .execute(pool)
        .await?;
        Ok((done.rows_affected() == 1).then(|| Self {
            pool: pool.clone(),
            tracker: tracker.clone(),
            hash,
            stamp,
            armed: true,
        }))
    }

    /// The read completed: the token is consumed for good.
    pub(crate) fn commit(mut self) {
        self.armed = false;
    }

    /// The read failed: make the token usable again.
    pub(crate) async fn release(mut self) {
        self.armed = false;
        release(&self.pool, self.hash, self.stamp).await;
    }
}

impl Drop for TokenClaim {
    fn drop(&mut self) {
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

async fn release(pool: &MySqlPool, hash: [u8; 32], stamp: i64) {
    let result = sqlx::query(
        "UPDATE download_tokens SET used_ms = NULL WHERE token_hash = ? AND used_ms = ?",
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
