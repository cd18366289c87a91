//! `GET /api/v1/jobs/{job_id}` (*new*): a job's state for a client that lost its socket.
//!
//! Licence-scoped: `Authorization: Bearer <licence key>` of the job's licence, or
//! `Bearer <API token>` of the account that owns it. A job that is unknown or not the caller's
//! answers the same 404, so job ids cannot be probed (D35). Each visible, unexpired artifact
//! comes with a fresh single-use download link, as `artifact_ready` would carry.

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    Json,
};
use serde::Serialize;
use shared::{
    clock::now_ms,
    http::{ApiResult, PeerAddr},
};

use crate::{access, errors, keyguard::KeyGuard, AppState};

/// The answer of `GET /api/v1/jobs/{job_id}`.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// Job id.
    pub job_id: String,
    /// `queued`, `assigned`, `running`, `finishing`, `completed`, `failed` or `cancelled`.
    pub state: String,
    /// The target the CLI asked for.
    pub target: String,
    /// What the current stage builds (`<x>-sign` in stage 2).
    pub stage_target: String,
    /// 1 (build) or 2 (signing).
    pub stage: i16,
    /// Dispatches so far.
    pub attempts: i32,
    /// 1-based place in its queue while queued, else 0.
    pub position: u64,
    /// Creation time (epoch ms).
    pub created_ms: i64,
    /// End time (epoch ms), once terminal.
    pub finished_ms: Option<i64>,
    /// Why it failed: the final message once failed; while it ends, the error its worker reported.
    pub error: Option<String>,
    /// Visible artifacts uploaded so far.
    pub artifacts: Vec<JobArtifact>,
}

/// An artifact in [`JobStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct JobArtifact {
    /// File name.
    pub name: String,
    /// Target it was built for.
    pub target: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex).
    pub sha256: String,
    /// A fresh single-use link, while the artifact is kept.
    pub download_url: Option<String>,
    /// Lifetime of `download_url`.
    pub expires_in_secs: Option<u64>,
}

#[derive(sqlx::FromRow)]
struct ArtifactRow {
    id: String,
    name: String,
    target: String,
    size: i64,
    sha256: String,
    expires_ms: i64,
}

/// `GET /api/v1/jobs/{job_id}`.
pub async fn get_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> ApiResult<Json<JobStatus>> {
    let secret = access::bearer_token(&headers).ok_or_else(errors::auth_required)?;
    let addr = crate::licenses::client_addr(
        peer.map(|p| p.ip()),
        &headers,
        state.settings.trust_forwarded_for,
    );
    let guard = KeyGuard::new(&state, &addr);
    let mut conn = state.deps.pool.acquire().await?;
    guard.check(&mut conn).await?;
    let (license_id, account_id) =
        match access::license_by_key(&mut conn, &state.hashing, secret).await? {
            Some(l) => (Some(l.id), None),
            None => match access::account_by_token(&mut conn, secret).await? {
                Some(a) => (None, Some(a.id)),
                None => {
                    guard.failed(&mut conn).await?;
                    return Err(errors::auth_invalid());
                }
            },
        };
    let owner: Option<(i64, Option<String>)> = sqlx::query_as(
        "SELECT j.license_id, l.account_id FROM jobs j JOIN licenses l ON l.id = j.license_id WHERE j.id = ?",
    )
    .bind(&job_id)
    .fetch_optional(&mut *conn)
    .await?;
    let allowed = owner.is_some_and(|(lic, acc)| {
        license_id == Some(lic) || (account_id.is_some() && acc == account_id)
    });
    let job = if allowed {
        job::load(&mut conn, &job_id).await?
    } else {
        None
    };
    let Some(job) = job else {
        return Err(errors::job_not_found());
    };
    let position = job::position(&mut conn, &job).await?;
    let rows: Vec<ArtifactRow> = sqlx::query_as(
        "SELECT id, name, target, size, sha256, expires_ms FROM artifacts WHERE job_id = ? AND hidden = FALSE ORDER BY created_ms, name",
    )
    .bind(&job.id)
    .fetch_all(&mut *conn)
    .await?;
    let now = now_ms();
    let public = state.deps.hub.public_url();
    let mut artifacts = Vec::with_capacity(rows.len());
    for row in rows {
        let remaining = u64::try_from((row.expires_ms - now) / 1000).unwrap_or(0);
        let link = if remaining > 0 {
            let ttl = state.deps.hub.artifact_ttl_secs.min(remaining);
            let token = job::artifacts::mint_download_token(&mut conn, &row.id, ttl).await?;
            Some((format!("{public}/api/v1/dl/{token}"), ttl))
        } else {
            None
        };
        artifacts.push(JobArtifact {
            name: row.name,
            target: row.target,
            size: u64::try_from(row.size).unwrap_or(0),
            sha256: row.sha256,
            download_url: link.as_ref().map(|(url, _)| url.clone()),
            expires_in_secs: link.map(|(_, ttl)| ttl),
        });
    }
    Ok(Json(JobStatus {
        job_id: job.id,
        state: job.state.as_str().to_owned(),
        target: job.original_target.as_str().to_owned(),
        stage_target: job.target.as_str().to_owned(),
        stage: job.stage,
        attempts: job.attempt,
        position,
        created_ms: job.created_ms,
        finished_ms: job.finished_ms,
        error: job.error_message,
        artifacts,
    }))
}
