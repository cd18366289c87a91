//! Admin view of licences, accounts and API tokens (issue 17): list licences with this month's
//! publishes, one licence with its usage history and tokens, change a licence's tier, list
//! accounts, revoke an API token.

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    Json,
};
use protocol::Tier;
use serde::{Deserialize, Serialize};
use shared::{
    clock::{current_period, now_ms},
    http::{ApiError, ApiJson, ApiResult},
};

use super::params::Params;
use crate::{access::Admin, AppState};

/// A licence in the admin list.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct LicenceSummary {
    /// Licence id.
    pub id: i64,
    /// `free` or `pro`.
    pub tier: String,
    /// Linked account.
    pub account_id: Option<String>,
    /// The account's GitHub user, else the one recorded on the licence.
    pub github_username: Option<String>,
    /// Bound to one project until linked.
    #[sqlx(try_from = "shared::db::Flag")]
    pub device_bound: bool,
    /// The project it is bound to.
    pub bound_project: Option<String>,
    /// Creation time (epoch ms).
    pub created_ms: i64,
    /// Publishes counted this month.
    pub publishes_this_period: i64,
}

const COLUMNS: &str = "l.id, l.tier, l.account_id, COALESCE(a.github_username, l.github_username) AS github_username, \
    l.device_bound, l.bound_project, l.created_ms, CAST(COALESCE(u.publishes, 0) AS SIGNED) AS publishes_this_period";
const FROM: &str = "FROM licenses l LEFT JOIN accounts a ON a.id = l.account_id \
    LEFT JOIN license_usage u ON u.license_id = l.id AND u.period = ?";

/// A page of licences.
#[derive(Debug, Serialize)]
pub struct LicencePage {
    /// Newest first.
    pub licenses: Vec<LicenceSummary>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/admin/licenses?tier=&account_id=&limit=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<LicencePage>> {
    let mut p = Params::new(query, &["tier", "account_id", "limit", "cursor"])?;
    let tier = p.take("tier").map(|t| parse_tier(&t)).transpose()?;
    let account = p.take("account_id");
    let cursor = p.int("cursor")?;
    let limit = p.limit(50, super::jobs::MAX_PAGE)?;
    let sql = format!(
        "SELECT {COLUMNS} {FROM} WHERE (? IS NULL OR l.tier = ?) AND (? IS NULL OR l.account_id = ?) \
         AND (? IS NULL OR l.id < ?) ORDER BY l.id DESC LIMIT ?"
    );
    let tier = tier.map(|t| t.as_str().to_owned());
    let mut licenses: Vec<LicenceSummary> = sqlx::query_as(&sql)
        .bind(current_period())
        .bind(&tier)
        .bind(&tier)
        .bind(&account)
        .bind(&account)
        .bind(cursor)
        .bind(cursor)
        .bind(i64::from(limit) + 1)
        .fetch_all(&state.deps.pool)
        .await?;
    let next_cursor = if licenses.len() > limit as usize {
        licenses.truncate(limit as usize);
        licenses.last().map(|l| l.id.to_string())
    } else {
        None
    };
    Ok(Json(LicencePage {
        licenses,
        next_cursor,
    }))
}

/// An account in the admin list.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct AccountSummary {
    /// Account id.
    pub id: String,
    /// GitHub user name.
    pub github_username: String,
    /// E-mail address.
    pub email: Option<String>,
    /// `free` or `pro` (wins over its licences' for token builds).
    pub tier: String,
    /// Billing has a payment method.
    #[sqlx(try_from = "shared::db::Flag")]
    pub has_payment_method: bool,
    /// Creation time (epoch ms).
    pub created_ms: i64,
    /// Deletion time, if deleted.
    pub deleted_ms: Option<i64>,
    /// Linked licences.
    pub licenses: i64,
    /// API tokens not revoked.
    pub active_tokens: i64,
}

/// A page of accounts.
#[derive(Debug, Serialize)]
pub struct AccountPage {
    /// Newest first.
    pub accounts: Vec<AccountSummary>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/admin/accounts?limit=&cursor=`.
pub async fn accounts(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<AccountPage>> {
    let mut p = Params::new(query, &["limit", "cursor"])?;
    let cursor = p
        .take("cursor")
        .map(|c| {
            c.split_once('.')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_owned())))
                .ok_or_else(|| ApiError::bad_request("Invalid cursor: pass next_cursor unchanged"))
        })
        .transpose()?;
    let limit = p.limit(50, super::jobs::MAX_PAGE)?;
    let (ms, id) = cursor.map_or((None, None), |(ms, id)| (Some(ms), Some(id)));
    let mut accounts: Vec<AccountSummary> = sqlx::query_as(
        "SELECT a.id, a.github_username, a.email, a.tier, a.has_payment_method, a.created_ms, a.deleted_ms, \
         (SELECT COUNT(*) FROM licenses l WHERE l.account_id = a.id) AS licenses, \
         (SELECT COUNT(*) FROM api_tokens t WHERE t.account_id = a.id AND t.revoked_ms IS NULL) AS active_tokens \
         FROM accounts a WHERE (? IS NULL OR a.created_ms < ? OR (a.created_ms = ? AND a.id < ?)) \
         ORDER BY a.created_ms DESC, a.id DESC LIMIT ?",
    )
    .bind(ms)
    .bind(ms)
    .bind(ms)
    .bind(&id)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.deps.pool)
    .await?;
    let next_cursor = if accounts.len() > limit as usize {
        accounts.truncate(limit as usize);
        accounts
            .last()
            .map(|a| format!("{}.{}", a.created_ms, a.id))
    } else {
        None
    };
    Ok(Json(AccountPage {
        accounts,
        next_cursor,
    }))
}

/// An API token of the licence's account.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TokenRow {
    /// Token id (the secret itself is never stored).
    pub id: i64,
    /// Creation time (epoch ms).
    pub created_ms: i64,
    /// When it was revoked (epoch ms).
    pub revoked_ms: Option<i64>,
}

/// `GET /api/v1/admin/licenses/{id}`.
#[derive(Debug, Serialize)]
pub struct LicenceDetail {
    /// The summary.
    #[serde(flatten)]
    pub licence: LicenceSummary,
    /// Publishes per month, newest first.
    pub usage: Vec<Usage>,
    /// Jobs per state.
    pub jobs: HashMap<String, i64>,
    /// API tokens of its account.
    pub tokens: Vec<TokenRow>,
}

/// Publishes of one month.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Usage {
    /// `YYYY-MM`.
    pub period: String,
    /// Publishes counted.
    pub publishes: i32,
}

/// `GET /api/v1/admin/licenses/{id}`.
pub async fn show(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<LicenceDetail>> {
    let id = parse_id(&id)?;
    let pool = &state.deps.pool;
    let licence: LicenceSummary =
        sqlx::query_as(&format!("SELECT {COLUMNS} {FROM} WHERE l.id = ?"))
            .bind(current_period())
            .bind(id)
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Licence {id} not found")))?;
    let usage = sqlx::query_as(
        "SELECT period, publishes FROM license_usage WHERE license_id = ? ORDER BY period DESC LIMIT 24",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let jobs: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM jobs WHERE license_id = ? GROUP BY state")
            .bind(id)
            .fetch_all(pool)
            .await?;
    let tokens = sqlx::query_as(
        "SELECT id, created_ms, revoked_ms FROM api_tokens WHERE account_id = ? ORDER BY id",
    )
    .bind(&licence.account_id)
    .fetch_all(pool)
    .await?;
    Ok(Json(LicenceDetail {
        licence,
        usage,
        jobs: jobs.into_iter().collect(),
        tokens,
    }))
}

/// Body of the tier change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRequest {
    /// `free` or `pro`.
    pub tier: String,
}

/// `POST /api/v1/admin/licenses/{id}/tier` with `{"tier": "free"|"pro"}`. A linked account's
/// tier still wins for its API-token builds (change it with `/account/update`).
pub async fn set_tier(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<TierRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = parse_id(&id)?;
    let tier = parse_tier(&request.tier)?;
    let done = sqlx::query("UPDATE licenses SET tier = ? WHERE id = ?")
        .bind(tier.as_str())
        .bind(id)
        .execute(&state.deps.pool)
        .await?;
    if done.rows_affected() == 0 {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM licenses WHERE id = ?")
            .bind(id)
            .fetch_optional(&state.deps.pool)
            .await?;
        if exists.is_none() {
            return Err(ApiError::not_found(format!("Licence {id} not found")));
        }
    }
    tracing::info!(
        license_id = id,
        tier = tier.as_str(),
        "admin changed a licence's tier"
    );
    Ok(Json(serde_json::json!({"id": id, "tier": tier.as_str()})))
}

/// `POST /api/v1/admin/tokens/{id}/revoke`: the token stops working at once (idempotent).
pub async fn revoke_token(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenRow>> {
    let id = parse_id(&id)?;
    let pool = &state.deps.pool;
    sqlx::query("UPDATE api_tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL")
        .bind(now_ms())
        .bind(id)
        .execute(pool)
        .await?;
    let token: TokenRow =
        sqlx::query_as("SELECT id, created_ms, revoked_ms FROM api_tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("API token {id} not found")))?;
    tracing::info!(token_id = id, "admin revoked an API token");
    Ok(Json(token))
}

fn parse_tier(tier: &str) -> ApiResult<Tier> {
    Tier::parse(tier.trim())
        .ok_or_else(|| ApiError::bad_request(format!("Invalid tier '{tier}': free or pro")))
}

fn parse_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid id '{id}': a positive integer")))
}
