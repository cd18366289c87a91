//! How licence keys are stored (issue 15 item 8, DEC-26): `HMAC-SHA256(pepper, SHA-256(key))`
//! when `PERRY_HUB_LICENSE_PEPPER` is set, the bare SHA-256 otherwise. A key carries only 48
//! random bits, so a leaked table of bare hashes gives up every key to a brute force; with the
//! pepper (kept out of the database) it gives up nothing.
//!
//! Keying the SHA-256 rather than the key lets rows stored before the pepper, and rows the
//! legacy import writes, be converted without knowing their keys: [`seal_all`] rewrites every
//! bare row (`key_hash_kind = 0`) to the keyed form (`1`) at start, and a lookup that finds a
//! bare row converts it on the spot. A fingerprint of the pepper in `settings` refuses a start
//! with a different pepper, which would make every stored key unusable.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::AnyPool;

use crate::{auth, config::Secret};

/// `key_hash_kind` of a bare SHA-256.
pub const BARE: i16 = 0;
/// `key_hash_kind` of the keyed form.
pub const KEYED: i16 = 1;

/// The `settings` row holding the pepper's fingerprint.
const FINGERPRINT_SETTING: &str = "license_pepper_fingerprint";

/// How this process stores and looks up licence keys.
#[derive(Clone)]
pub struct LicenseHashing {
    pepper: Option<Vec<u8>>,
}

impl std::fmt::Debug for LicenseHashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LicenseHashing")
            .field("peppered", &self.pepper.is_some())
            .finish()
    }
}

impl LicenseHashing {
    /// Keyed with `pepper`, or bare when it is empty.
    pub fn new(pepper: &Secret) -> Self {
        Self {
            pepper: (!pepper.is_empty()).then(|| pepper.expose().as_bytes().to_vec()),
        }
    }

    /// Whether keys are stored keyed.
    pub fn peppered(&self) -> bool {
        self.pepper.is_some()
    }

    /// The `key_hash_kind` new rows get.
    pub fn kind(&self) -> i16 {
        if self.peppered() {
            KEYED
        } else {
            BARE
        }
    }

    /// The stored form of a key whose SHA-256 is `sha`.
    pub fn from_sha(&self, sha: &[u8; 32]) -> [u8; 32] {
        match &self.pepper {
            None => *sha,
            Some(pepper) => keyed(pepper, sha),
        }
    }

    /// The bare and the stored hash of a presented key (surrounding space ignored).
    pub fn hashes(&self, key: &str) -> ([u8; 32], [u8; 32]) {
        let sha = auth::hash_token(key.trim());
        (sha, self.from_sha(&sha))
    }

    fn fingerprint(&self) -> Option<String> {
        self.pepper
            .as_ref()
            .map(|p| hex::encode(keyed(p, b"perry-hub licence pepper fingerprint")))
    }
}

fn keyed(pepper: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(pepper).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Errors of [`seal_all`].
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The database's keys were stored with another pepper.
    #[error("invalid configuration: PERRY_HUB_LICENSE_PEPPER: differs from the pepper the stored licence keys use (restore the previous value)")]
    WrongPepper,
    /// The database's keys are keyed but this process has no pepper.
    #[error("invalid configuration: PERRY_HUB_LICENSE_PEPPER: the stored licence keys are keyed with a pepper; set it")]
    MissingPepper,
    /// MySQL failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Check, without writing, that `hashing` fits the database: the same pepper, or none when the
/// stored keys are bare.
pub async fn check(pool: &AnyPool, hashing: &LicenseHashing) -> Result<(), SealError> {
    let stored = crate::db::get_setting(pool, FINGERPRINT_SETTING).await?;
    match (stored, hashing.fingerprint()) {
        (Some(_), None) => Err(SealError::MissingPepper),
        (Some(theirs), Some(mine))
            if !auth::constant_time_eq(theirs.as_bytes(), mine.as_bytes()) =>
        {
            Err(SealError::WrongPepper)
        }
        _ => Ok(()),
    }
}

/// Check the pepper against the database's and convert every bare row to the keyed form.
/// Returns the rows converted. Safe to run concurrently (each row is converted once).
pub async fn seal_all(pool: &AnyPool, hashing: &LicenseHashing) -> Result<u64, SealError> {
    check(pool, hashing).await?;
    let stored = crate::db::get_setting(pool, FINGERPRINT_SETTING).await?;
    let Some(mine) = hashing.fingerprint() else {
        return Ok(0);
    };
    match stored {
        Some(_) => {}
        None => {
            sqlx::query(&crate::db::sql(
                crate::db::Dialect::of_pool(pool),
                "INSERT IGNORE INTO settings (name, value, updated_ms) VALUES (?, ?, ?)",
            ))
            .bind(FINGERPRINT_SETTING)
            .bind(&mine)
            .bind(crate::clock::now_ms())
            .execute(pool)
            .await?;
            // Another process may have raced us with another pepper.
            let won = crate::db::get_setting(pool, FINGERPRINT_SETTING).await?;
            if won.as_deref() != Some(mine.as_str()) {
                return Err(SealError::WrongPepper);
            }
        }
    }
    let mut converted = 0;
    loop {
        let rows: Vec<(i64, crate::db::OptHex)> = sqlx::query_as(
            "SELECT id, HEX(key_hash) FROM licenses WHERE key_hash_kind = 0 ORDER BY id LIMIT 500",
        )
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            break;
        }
        for (id, bare) in rows {
            let bare = bare.0.unwrap_or_default();
            let Ok(sha) = <[u8; 32]>::try_from(bare.as_slice()) else {
                continue;
            };
            converted += seal_row(pool, id, &sha, hashing).await?;
        }
    }
    if converted > 0 {
        tracing::info!(converted, "licence keys converted to the keyed hash");
    }
    Ok(converted)
}

/// Convert one bare row (found by id and its bare hash); 1 when this call converted it.
pub async fn seal_row<'c, E>(
    conn: E,
    id: i64,
    sha: &[u8; 32],
    hashing: &LicenseHashing,
) -> Result<u64, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if !hashing.peppered() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE licenses SET key_hash = ?, key_hash_kind = 1 WHERE id = ? AND key_hash = ? AND key_hash_kind = 0",
    )
    .bind(&hashing.from_sha(sha)[..])
    .bind(id)
    .bind(&sha[..])
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyed_form_depends_on_the_pepper_and_the_bare_form_is_sha256() {
        let bare = LicenseHashing::new(&Secret::default());
        let a = LicenseHashing::new(&Secret::new("pepper-a"));
        let b = LicenseHashing::new(&Secret::new("pepper-b"));
        let (sha, stored) = bare.hashes(" FREE-1234-5678-9ABC ");
        assert_eq!(sha, auth::hash_token("FREE-1234-5678-9ABC"));
        assert_eq!(stored, sha);
        let (sha_a, keyed_a) = a.hashes("FREE-1234-5678-9ABC");
        assert_eq!(sha_a, sha);
        assert_ne!(keyed_a, sha);
        assert_ne!(keyed_a, b.hashes("FREE-1234-5678-9ABC").1);
        assert_eq!(a.from_sha(&sha), keyed_a);
        assert_eq!((bare.kind(), a.kind()), (BARE, KEYED));
        assert!(!format!("{a:?}").contains("pepper-a"));
    }
}
