//! `POST /api/v1/artifact/upload/{job_id}` (§3.9): a worker uploads a built artifact with the
//! job-scoped token of the current attempt.
//!
//! Checks, in order: 403 `FORBIDDEN` (no token, or not this job's current token), 404
//! `JOB_NOT_FOUND` (a genuine job token presented for an unknown job), 409 `JOB_NOT_RUNNING`,
//! 400 empty body, 400 bad headers (D5 names, SHA-256 format, target), then while streaming 400
//! bad base64 or SHA-256 mismatch and 413 over the size cap. The body is base64 text, or raw
//! bytes with `Content-Type: application/octet-stream`; it is decoded, hashed and counted as it
//! streams into the blob store under a key of ours. Rejections keep nothing.
//!
//! On success, one transaction records the artifact (for the job's current attempt), moves an
//! `assigned` job to `running`, mints the download token of the response and, unless the target
//! is an intermediate `*-precompiled` bundle, announces it to the dispatcher holding the worker,
//! which puts `artifact_ready` into the job's log after the frames the worker sent before the
//! upload (DEC-14).

pub mod headers;

use axum::{
    extract::{Path, Request, State},
    http::{header, HeaderMap},
    Json,
};
use blob::b64;
use blob::{BlobError, ByteStream, PutOptions, PutResult};
use job::{artifacts, event::ArtifactRecord, transition, JobState};
use protocol::ArtifactUploadResponse;
use shared::{
    auth,
    clock::now_ms,
    http::{ApiError, ApiResult},
    metrics,
};
use sqlx::AnyConnection;

use crate::{access, body, errors, AppState};

/// Allowance for whitespace around a base64 body when checking its declared length.
const BASE64_SLACK: u64 = 1024;

/// The job as the upload sees it.
#[derive(Debug, sqlx::FromRow)]
struct UploadJob {
    id: String,
    state: JobState,
    attempt: i32,
    #[sqlx(try_from = "shared::db::OptHex")]
    token_hash: Option<Vec<u8>>,
    original_target: job::Target,
}

/// `POST /api/v1/artifact/upload/{job_id}`.
pub async fn upload_artifact(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    request: Request,
) -> ApiResult<Json<ArtifactUploadResponse>> {
    let (parts, body) = request.into_parts();
    let token = access::bearer_token(&parts.headers).ok_or_else(errors::invalid_job_token)?;
    let token_hash = auth::hash_token(token);
    let job = {
        let mut conn = state.deps.pool.acquire().await?;
        authorize(&mut conn, &job_id, &token_hash, false).await?
    };
    let raw = is_octet_stream(&parts.headers);
    let limit = state.settings.max_artifact_bytes;
    let wire_limit = if raw {
        limit
    } else {
        b64::encoded_len(limit).saturating_add(BASE64_SLACK)
    };
    let stream = body::limited_stream(body, wire_limit);
    let stream = body::non_empty(stream, !raw)
        .await
        .map_err(|e| {
            errors::classify_put_error(BlobError::Source(e), "artifact").into_api("Artifact")
        })?
        .ok_or_else(|| ApiError::bad_request("Missing artifact data in body"))?;
    let meta = headers::parse(&parts.headers)?;
    body::check_content_length(&parts.headers, wire_limit)?;
    let stream: ByteStream = if raw {
        stream
    } else {
        Box::pin(b64::decode_stream(stream))
    };
    let artifact_id = uuid::Uuid::new_v4().to_string();
    let key = artifacts::artifact_key(&artifact_id);
    let mut options = PutOptions::new(limit);
    if let Some(sha) = meta.sha256 {
        options = options.with_sha256(sha);
    }
    // Deletes the object if the request is dropped (client gone) before the row commits.
    let mut guard = crate::builds::BlobGuard::new(state.deps.blob.clone(), key.clone());
    guard.arm();
    let put = state
        .deps
        .blob
        .put(&key, stream, options)
        .await
        .map_err(|e| errors::classify_put_error(e, "artifact").into_api("Artifact"))?;
    let stored = Stored {
        artifact_id: &artifact_id,
        key: &key,
        put: &put,
        meta: &meta,
    };
    match record(&state, &job, &token_hash, &stored).await {
        Ok(answer) => {
            guard.keep();
            Ok(Json(answer))
        }
        Err(e) => {
            guard.discard().await;
            Err(e)
        }
    }
}

fn is_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/octet-stream")
        })
}

/// 403 / 404 / 409 in the order of §3.9. With `lock`, the job row stays locked for the caller's
/// transaction.
async fn authorize(
    conn: &mut AnyConnection,
    job_id: &str,
    token_hash: &[u8; 32],
    lock: bool,
) -> ApiResult<UploadJob> {
    let sql = format!(
        "SELECT id, state, attempt, HEX(token_hash) AS token_hash, original_target FROM jobs WHERE id = ?{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let sql = shared::db::sql(shared::db::Dialect::of(conn), &sql);
    let job: Option<UploadJob> = if looks_like_id(job_id) {
        sqlx::query_as(&sql)
            .bind(job_id)
            .fetch_optional(&mut *conn)
            .await?
    } else {
        None
    };
    let Some(job) = job else {
        // Only a caller holding some job's current token learns that this job does not exist.
        let genuine: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM jobs WHERE token_hash = ? LIMIT 1")
                .bind(&token_hash[..])
                .fetch_optional(&mut *conn)
                .await?;
        return Err(if genuine.is_some() {
            errors::job_not_found()
        } else {
            errors::invalid_job_token()
        });
    };
    if !job
        .token_hash
        .as_deref()
        .is_some_and(|stored| auth::constant_time_eq(stored, token_hash))
    {
        return Err(errors::invalid_job_token());
    }
    if !job.state.is_held() {
        return Err(errors::job_not_running());
    }
    Ok(job)
}

/// A job id is a lower-case UUID; anything else cannot name a job.
fn looks_like_id(id: &str) -> bool {
    id.len() == 36
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}

struct Stored<'a> {
    artifact_id: &'a str,
    key: &'a str,
    put: &'a PutResult,
    meta: &'a headers::ArtifactHeaders,
}

/// Record the stored artifact in one transaction (see the module documentation).
async fn record(
    state: &AppState,
    seen: &UploadJob,
    token_hash: &[u8; 32],
    stored: &Stored<'_>,
) -> ApiResult<ArtifactUploadResponse> {
    let mut tx = shared::db::begin(&state.deps.pool).await?;
    let job = authorize(&mut tx, &seen.id, token_hash, true).await?;
    if job.attempt != seen.attempt {
        return Err(errors::invalid_job_token());
    }
    let target = stored
        .meta
        .target
        .clone()
        .unwrap_or_else(|| job.original_target.as_str().to_owned());
    let hidden = artifacts::is_intermediate_target(&target);
    let now = now_ms();
    let retention = if hidden {
        state.settings.intermediate_retention_secs
    } else {
        state.artifact_retention_secs()
    };
    let expires_ms =
        now.saturating_add(i64::try_from(retention.saturating_mul(1000)).unwrap_or(i64::MAX));
    let size = stored.put.size;
    let sha256 = stored.put.sha256_hex();
    sqlx::query(
        "INSERT INTO artifacts (id, job_id, attempt, name, target, size, sha256, blob_key, hidden, created_ms, expires_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(stored.artifact_id)
    .bind(&job.id)
    .bind(job.attempt)
    .bind(&stored.meta.name)
    .bind(&target)
    .bind(i64::try_from(size).unwrap_or(i64::MAX))
    .bind(&sha256)
    .bind(stored.key)
    .bind(hidden)
    .bind(now)
    .bind(expires_ms)
    .execute(&mut *tx)
    .await?;
    if job.state == JobState::Assigned {
        transition::start(&mut tx, &job.id, job.attempt).await?;
    }
    let ttl = state.deps.hub.artifact_ttl_secs.min(retention);
    let token = artifacts::mint_download_token(&mut tx, stored.artifact_id, ttl).await?;
    if !hidden {
        let record = ArtifactRecord {
            job_id: job.id.clone(),
            artifact_id: stored.artifact_id.to_owned(),
            target: target.clone(),
            artifact_name: stored.meta.name.clone(),
            artifact_size: size,
            sha256: sha256.clone(),
        };
        job::event::announce_artifact(&mut tx, job.attempt, &record).await?;
    }
    tx.commit().await?;
    state.deps.notify_outbox();
    metrics::get()
        .bytes_in
        .get_or_create(&metrics::label("kind", "artifact"))
        .inc_by(size);
    tracing::info!(job_id = %job.id, artifact_id = stored.artifact_id, size, hidden, target = %target, "artifact stored");
    Ok(ArtifactUploadResponse {
        token: token.clone(),
        download_url: format!("{}/api/v1/dl/{token}", state.deps.hub.public_url()),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuid_shaped_ids_are_looked_up() {
        assert!(looks_like_id("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(!looks_like_id("0F8FAD5B-D9CB-469F-A165-70867728950E"));
        assert!(!looks_like_id("../../etc/passwd"));
        assert!(!looks_like_id(""));
    }

    #[test]
    fn raw_uploads_are_recognised_by_content_type() {
        let mut h = HeaderMap::new();
        assert!(!is_octet_stream(&h));
        h.insert(
            header::CONTENT_TYPE,
            "Application/Octet-Stream".parse().unwrap(),
        );
        assert!(is_octet_stream(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_octet_stream(&h));
    }
}
