//! `GET /api/v1/tarball/{job_id}`: a worker fetches its job's input (PROTOCOL.md §3.8).
//!
//! Authorised by `Authorization: Bearer <auth_token>` of the job's *current* attempt (the hash
//! is compared in constant time; a revoked or older token no longer matches), and only while
//! the job is `assigned` or `running`. The storage key always comes from the job row
//! (`input_key`): for a stage-2 `windows-sign` job the finisher points it at the stage-1
//! `windows-precompiled` bundle. The job id itself never reaches the store, and anything that
//! is not a canonical lower-case UUID is a 404 before the database is asked (text columns
//! compare case-insensitively, so this also keeps an upper-cased id from matching).
//!
//! A successful fetch moves the job `assigned` → `running` (`started_ms`) and is recorded in
//! `downloads`.

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::{header, HeaderMap},
    response::Response,
};
use shared::{
    auth,
    http::{ApiError, PeerAddr},
};

use crate::{
    audit::{self, Client, Completion},
    body::{self, Encoding, Meta, TARBALL_SHA256},
    tokens, AppState, Refusal,
};

/// Metric label of tarball fetches.
const KIND: &str = "tarball";

/// What the fetch needs to know about the job.
#[derive(Debug, sqlx::FromRow)]
struct JobInput {
    state: job::JobState,
    attempt: i32,
    #[sqlx(try_from = "shared::db::OptHex")]
    token_hash: Option<Vec<u8>>,
    input_key: Option<String>,
    input_size: Option<i64>,
    input_sha256: Option<String>,
}

impl JobInput {
    /// Whether `authorization` carries the current attempt's token of an active job.
    fn authorises(&self, authorization: Option<&str>) -> bool {
        let Some(token) = auth::bearer(authorization) else {
            return false;
        };
        let presented = auth::hash_token(token);
        let current = self.token_hash.as_deref().unwrap_or_default();
        let token_ok = auth::constant_time_eq(&presented, current);
        token_ok && self.state.is_held()
    }
}

/// `GET /api/v1/tarball/{job_id}`.
pub async fn get_tarball(
    State(state): State<AppState>,
    job_id: Result<Path<String>, PathRejection>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> Response {
    let job_id = job_id
        .ok()
        .map(|Path(id)| id)
        .filter(|id| tokens::is_canonical_uuid(id));
    let Some(job_id) = job_id else {
        return not_found("malformed").respond(KIND);
    };
    let client = Client::new(peer, &headers, state.trust_forwarded_for);
    match serve(&state, &job_id, &client, &headers).await {
        Ok(resp) => resp,
        Err(refusal) => refusal.respond(KIND),
    }
}

fn not_found(outcome: &'static str) -> Refusal {
    Refusal::new(outcome, missing())
}

fn missing() -> ApiError {
    ApiError::not_found("Tarball not found")
}

async fn serve(
    state: &AppState,
    job_id: &str,
    client: &Client,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let deps = &state.deps;
    let job: Option<JobInput> = sqlx::query_as(
        "SELECT state, attempt, HEX(token_hash) AS token_hash, input_key, input_size, input_sha256 \
         FROM jobs WHERE id = ?",
    )
    .bind(job_id)
    .fetch_optional(&deps.pool)
    .await?;
    // An unknown job is answered like a wrong token (§3.8 checks the token first), so the
    // endpoint does not tell which job ids exist.
    let Some(job) = job else {
        return Err(Refusal::new(
            "forbidden",
            ApiError::forbidden("Invalid job token"),
        ));
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !job.authorises(authorization) {
        return Err(Refusal::new(
            "forbidden",
            ApiError::forbidden("Invalid job token"),
        ));
    }
    let Some(key) = job.input_key.as_deref() else {
        return Err(not_found("missing_blob"));
    };
    let encoding = Encoding::negotiate(headers);
    let range = body::requested_range(headers, encoding);
    let size = job.input_size.and_then(|s| u64::try_from(s).ok());
    let object = deps
        .blob
        .get(key, range)
        .await
        .map_err(|e| Refusal::open_failed(e, missing, size))?;
    let mut conn = deps.pool.acquire().await?;
    job::transition::start(&mut conn, job_id, job.attempt).await?;
    drop(conn);
    let entry = audit::Entry {
        kind: KIND,
        job_id,
        artifact_id: None,
        attempt: Some(job.attempt),
        client,
        bytes: body::length(&object, encoding),
    };
    let audit_id = audit::record(&deps.pool, &entry).await?;
    let completion = Completion {
        kind: KIND,
        pool: deps.pool.clone(),
        tracker: deps.tracker.clone(),
        audit_id,
        claim: None,
    };
    let meta = Meta {
        kind: KIND,
        filename: None,
        sha256: job.input_sha256.as_deref().map(|hex| (TARBALL_SHA256, hex)),
    };
    Ok(body::respond(object, encoding, &meta, completion))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: &str, token: Option<&str>) -> JobInput {
        JobInput {
            state: state.parse().unwrap(),
            attempt: 1,
            token_hash: token.map(|t| auth::hash_token(t).to_vec()),
            input_key: Some("tarballs/x".to_owned()),
            input_size: Some(1),
            input_sha256: None,
        }
    }

    #[test]
    fn only_the_current_token_of_an_active_job_authorises() {
        let t = "0b6f3c1e-6a9e-4c8e-9d2a-5f1e2d3c4b5a";
        let bearer = format!("Bearer {t}");
        assert!(job("assigned", Some(t)).authorises(Some(&bearer)));
        assert!(job("running", Some(t)).authorises(Some(&format!("bearer  {t} "))));
        assert!(!job("running", Some(t)).authorises(None));
        assert!(!job("running", Some(t)).authorises(Some(t)));
        assert!(!job("running", Some(t)).authorises(Some(&format!("Basic {t}"))));
        assert!(!job("running", Some(t)).authorises(Some(&format!("Bearer junk{t}"))));
        assert!(!job("running", None).authorises(Some(&bearer)));
        assert!(!job("queued", Some(t)).authorises(Some(&bearer)));
        assert!(!job("completed", Some(t)).authorises(Some(&bearer)));
        assert!(!job("finishing", Some(t)).authorises(Some(&bearer)));
    }
}
