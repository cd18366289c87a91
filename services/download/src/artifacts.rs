//! `GET /api/v1/dl/{token}`: the CLI's single-use, expiring artifact link (PROTOCOL.md §3.10).
//!
//! | case | answer |
//! |---|---|
//! | malformed, unknown or used token | 404 `ARTIFACT_NOT_FOUND`, one fixed message |
//! | token held by a download in progress (DEC-30) | the same 404, with `Retry-After`: the seconds until its claim lapses unless renewed |
//! | unused but expired token | 410 `GONE` |
//! | unused token whose attempts ran out (DEC-23) | 410 `GONE` |
//! | artifact or its bytes gone (retention) | 410 `GONE`; the token is not consumed |
//! | unsatisfiable `Range` (raw only) | 416 `RANGE_NOT_SATISFIABLE` + `Content-Range: bytes */size` |
//! | store or database failure | 500 `INTERNAL_ERROR`; the token stays valid (D29) |
//! | otherwise | 200 base64 text, or raw bytes (200/206), or 307 to a presigned S3 URL |
//!
//! Nothing distinguishes a malformed token from an unknown or a used one, and tokens are looked
//! up by their SHA-256, so responses tell nothing about which tokens exist.

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use shared::{
    clock::now_ms,
    http::{ApiError, ErrorCode, PeerAddr},
};
use sqlx::AnyPool;

use crate::{
    audit::{self, Client, Completion},
    body::{self, Encoding, Meta, ARTIFACT_SHA256},
    tokens::{self, ClaimPolicy, TokenClaim},
    AppState, Refusal, PRESIGN_TTL,
};

/// Metric label of artifact downloads.
const KIND: &str = "artifact";

/// The artifact a token points at.
#[derive(Debug)]
struct Artifact {
    id: String,
    job_id: String,
    attempt: i32,
    name: String,
    size: i64,
    sha256: String,
    blob_key: String,
    expires_ms: i64,
}

/// `GET /api/v1/dl/{token}`.
pub async fn download_artifact(
    State(state): State<AppState>,
    token: Result<Path<String>, PathRejection>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> Response {
    let hash = token
        .ok()
        .and_then(|Path(token)| tokens::download_token_hash(&token));
    let Some(hash) = hash else {
        return not_found("malformed").respond(KIND);
    };
    let client = Client::new(peer, &headers, state.trust_forwarded_for);
    match serve(&state, hash, &client, &headers).await {
        Ok(resp) => resp,
        Err(refusal) => refusal.respond(KIND),
    }
}

fn not_found(outcome: &'static str) -> Refusal {
    Refusal::new(
        outcome,
        ApiError::new(
            ErrorCode::ArtifactNotFound,
            "Download link not found or already used",
        ),
    )
}

fn gone() -> ApiError {
    ApiError::new(ErrorCode::Gone, "The artifact is no longer available")
}

async fn serve(
    state: &AppState,
    hash: [u8; 32],
    client: &Client,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let deps = &state.deps;
    let policy = ClaimPolicy::of(&deps.hub);
    let artifact = check_token(&deps.pool, &hash, policy.max_attempts).await?;
    let Some(claim) = TokenClaim::acquire(&deps.pool, &deps.tracker, hash, policy).await? else {
        // Another request claimed it between the check and now.
        return Err(not_found("used"));
    };
    let encoding = Encoding::negotiate(headers);
    match open(state, &artifact, encoding, client, headers).await {
        Ok(Opened::Redirect(resp)) => {
            if !claim.commit().await {
                return Err(not_found("lapsed"));
            }
            crate::count(KIND, "redirected");
            Ok(resp)
        }
        Ok(Opened::Body(object, audit_id)) => {
            // An empty body has no last byte to hold back: consume the token first.
            let claim = if body::length(&object, encoding) == 0 {
                if !claim.commit().await {
                    return Err(not_found("lapsed"));
                }
                None
            } else {
                Some(claim)
            };
            let completion = Completion {
                kind: KIND,
                pool: deps.pool.clone(),
                tracker: deps.tracker.clone(),
                audit_id,
                claim,
            };
            let meta = Meta {
                kind: KIND,
                filename: Some(&artifact.name),
                sha256: Some((ARTIFACT_SHA256, &artifact.sha256)),
            };
            Ok(body::respond(object, encoding, &meta, completion))
        }
        Err(refusal) => {
            claim.release().await;
            Err(refusal)
        }
    }
}

/// A token's row with its artifact's (when the artifact row still exists), as [`check_token`]
/// reads them in one statement.
#[derive(Debug, sqlx::FromRow)]
struct TokenRow {
    expires_ms: i64,
    used_ms: Option<i64>,
    claim_until_ms: Option<i64>,
    attempts: i32,
    #[sqlx(flatten)]
    artifact: LinkedArtifact,
}

/// The artifact columns of [`TokenRow`]: all null when the artifact row is gone.
#[derive(Debug, sqlx::FromRow)]
struct LinkedArtifact {
    a_id: Option<String>,
    a_job_id: Option<String>,
    a_attempt: Option<i32>,
    a_name: Option<String>,
    a_size: Option<i64>,
    a_sha256: Option<String>,
    a_blob_key: Option<String>,
    a_expires_ms: Option<i64>,
}

impl LinkedArtifact {
    fn found(self) -> Option<Artifact> {
        Some(Artifact {
            id: self.a_id?,
            job_id: self.a_job_id?,
            attempt: self.a_attempt?,
            name: self.a_name?,
            size: self.a_size?,
            sha256: self.a_sha256?,
            blob_key: self.a_blob_key?,
            expires_ms: self.a_expires_ms?,
        })
    }
}

/// The artifact of a usable token, or why the token cannot be used.
async fn check_token(
    pool: &AnyPool,
    hash: &[u8; 32],
    max_attempts: u32,
) -> Result<Artifact, Refusal> {
    let token: Option<TokenRow> = sqlx::query_as(
        "SELECT t.expires_ms, t.used_ms, t.claim_until_ms, t.attempts, \
         a.id AS a_id, a.job_id AS a_job_id, a.attempt AS a_attempt, a.name AS a_name, \
         a.size AS a_size, a.sha256 AS a_sha256, a.blob_key AS a_blob_key, a.expires_ms AS a_expires_ms \
         FROM download_tokens t LEFT JOIN artifacts a ON a.id = t.artifact_id WHERE t.token_hash = ?",
    )
    .bind(&hash[..])
    .fetch_optional(pool)
    .await?;
    let Some(TokenRow {
        expires_ms,
        used_ms,
        claim_until_ms,
        attempts,
        artifact,
    }) = token
    else {
        return Err(not_found("unknown"));
    };
    let now = now_ms();
    match (used_ms, claim_until_ms) {
        (None, _) => {}
        (Some(_), None) => return Err(not_found("used")),
        (Some(_), Some(until)) if until > now => {
            let secs = (until - now + 999).div_euclid(1_000);
            return Err(not_found("in_use").retry_after(secs.unsigned_abs()));
        }
        // The claim lapsed: its download never completed (DEC-30).
        (Some(_), Some(_)) => {}
    }
    if i64::from(attempts) >= i64::from(max_attempts) {
        return Err(Refusal::new(
            "attempts_exhausted",
            ApiError::new(
                ErrorCode::Gone,
                format!("Download link used up: {attempts} incomplete downloads"),
            ),
        ));
    }
    if expires_ms <= now {
        return Err(Refusal::new(
            "expired",
            ApiError::new(ErrorCode::Gone, "Download link expired"),
        ));
    }
    match artifact.found() {
        Some(artifact) if artifact.expires_ms > now => Ok(artifact),
        _ => Err(Refusal::new("missing_artifact", gone())),
    }
}

/// What a claimed token leads to.
enum Opened {
    /// A redirect to a presigned URL (raw download from S3 with presigning on).
    Redirect(Response),
    /// The object to stream, and its audit row.
    Body(blob::BlobObject, i64),
}

/// Open the artifact's bytes (or presign them) and write the audit row. Any error leaves the
/// token claim to the caller, which releases it.
async fn open(
    state: &AppState,
    artifact: &Artifact,
    encoding: Encoding,
    client: &Client,
    headers: &HeaderMap,
) -> Result<Opened, Refusal> {
    let deps = &state.deps;
    let size = u64::try_from(artifact.size).ok();
    let mut entry = audit::Entry {
        kind: KIND,
        job_id: &artifact.job_id,
        artifact_id: Some(&artifact.id),
        attempt: Some(artifact.attempt),
        client,
        bytes: 0,
    };
    if encoding == Encoding::Raw && deps.blob_config.s3_presign_downloads {
        if let Some(url) = presign(state, artifact).await? {
            let resp = redirect(&url, &artifact.sha256)?;
            entry.kind = "presigned";
            entry.bytes = size.unwrap_or(0);
            audit::record(&deps.pool, &entry).await?;
            return Ok(Opened::Redirect(resp));
        }
    }
    let range = body::requested_range(headers, encoding);
    let object = deps
        .blob
        .get(&artifact.blob_key, range)
        .await
        .map_err(|e| Refusal::open_failed(e, gone, size))?;
    entry.bytes = body::length(&object, encoding);
    let audit_id = audit::record(&deps.pool, &entry).await?;
    Ok(Opened::Body(object, audit_id))
}

/// A presigned URL for the artifact, or `None` when the store cannot presign (filesystem).
async fn presign(state: &AppState, artifact: &Artifact) -> Result<Option<String>, Refusal> {
    let blob = &state.deps.blob;
    let filename = body::attachment_filename(&artifact.name);
    let url = blob
        .presign_get(&artifact.blob_key, PRESIGN_TTL, &filename)
        .await
        .map_err(|e| Refusal::open_failed(e, gone, None))?;
    if url.is_none() {
        return Ok(None);
    }
    // Presigning does not look at the object: make sure it is there before spending the token.
    match blob.size(&artifact.blob_key).await {
        Ok(Some(_)) => Ok(url),
        Ok(None) => Err(Refusal::new("missing_blob", gone())),
        Err(e) => Err(Refusal::open_failed(e, gone, None)),
    }
}

fn redirect(url: &str, sha256: &str) -> Result<Response, Refusal> {
    let location = HeaderValue::from_str(url)
        .map_err(|e| Refusal::new("error", ApiError::internal(&format!("presigned URL: {e}"))))?;
    let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(sha256) {
        headers.insert(ARTIFACT_SHA256, value);
    }
    Ok(resp)
}
