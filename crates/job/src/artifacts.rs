//! A job's artifacts: what the CLI is shown, where the bytes live, and single-use links.

use shared::{auth, clock::now_ms};
use sqlx::AnyConnection;

/// The stage-1 bundle an attempt uploaded for `bundle_target` (`<x>-precompiled`): its id,
/// storage key, size and SHA-256.
pub async fn bundle(
    conn: &mut AnyConnection,
    job_id: &str,
    attempt: i32,
    bundle_target: &str,
) -> Result<Option<(String, String, i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, blob_key, size, sha256 FROM artifacts WHERE job_id = ? AND attempt = ? AND target = ? \
         ORDER BY created_ms DESC, id LIMIT 1",
    )
    .bind(job_id)
    .bind(attempt)
    .bind(bundle_target)
    .fetch_optional(conn)
    .await
}

/// Mint a single-use download token for an artifact. Returns the token (only its hash is kept).
pub async fn mint_download_token(
    conn: &mut AnyConnection,
    artifact_id: &str,
    ttl_secs: u64,
) -> Result<String, sqlx::Error> {
    let (token, hash) = auth::new_token();
    let now = now_ms();
    let ttl_ms = i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    sqlx::query("INSERT INTO download_tokens (token_hash, artifact_id, created_ms, expires_ms) VALUES (?, ?, ?, ?)")
        .bind(&hash[..])
        .bind(artifact_id)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .execute(conn)
        .await?;
    Ok(token)
}

/// Whether an artifact target is an intermediate bundle hidden from the CLI.
pub fn is_intermediate_target(target: &str) -> bool {
    target.ends_with("-precompiled")
}

/// Storage key of a job's input tarball.
pub fn tarball_key(job_id: &str) -> String {
    format!("tarballs/{job_id}")
}

/// Storage key of an artifact.
pub fn artifact_key(artifact_id: &str) -> String {
    format!("artifacts/{artifact_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intermediates_and_keys() {
        assert!(is_intermediate_target("windows-precompiled"));
        assert!(is_intermediate_target("ios-precompiled"));
        assert!(!is_intermediate_target("windows"));
        assert_eq!(tarball_key("j"), "tarballs/j");
        assert_eq!(artifact_key("a"), "artifacts/a");
    }
}
