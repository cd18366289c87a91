//! Accounts (§3.4–3.6): the CLI reads its account with an API token; the dashboard creates and
//! updates accounts with the admin secret. API tokens are minted here and stored hashed, so an
//! existing account gets an additional token (A11).

use axum::{extract::State, http::HeaderMap, Json};
use protocol::{
    AccountCreateRequest, AccountCreateResponse, AccountResponse, AccountUpdateRequest,
    AccountUsage, OkResponse, Tier,
};
use shared::{
    auth,
    clock::{self, now_ms},
    http::{ApiError, ApiJson, ApiResult},
};
use sqlx::AnyConnection;

use crate::{
    access::{self, Admin},
    errors, limits, AppState,
};

/// Longest accepted GitHub id / user name / Polar id, and e-mail address.
const MAX_NAME: usize = 255;
const MAX_EMAIL: usize = 320;

/// `GET /api/v1/account`.
pub async fn get_account(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<AccountResponse>> {
    let token = access::bearer_token(&headers).ok_or_else(errors::auth_required)?;
    let mut conn = state.deps.pool.acquire().await?;
    let account = access::account_by_token(&mut conn, token)
        .await?
        .ok_or_else(errors::auth_invalid)?;
    let period = clock::current_period();
    let publishes = match access::account_license(&mut conn, &account.id).await? {
        Some(license) => limits::publishes(&mut conn, license.id, &period).await?,
        None => 0,
    };
    let tier = account.tier();
    Ok(Json(AccountResponse {
        id: account.id,
        github_username: account.github_username,
        email: account.email,
        tier,
        has_payment_method: account.has_payment_method,
        usage: AccountUsage {
            publishes,
            publish_limit: tier.monthly_publish_limit(),
            deep_verifies: 0,
            verify_limit: tier.verify_limit(),
            period,
        },
    }))
}

/// `POST /api/v1/account/create` (admin): create the account, or mint another token for it.
pub async fn create_account(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(request): ApiJson<AccountCreateRequest>,
) -> ApiResult<Json<AccountCreateResponse>> {
    let github_id = required(&request.github_id, "github_id")?;
    let username = required(&request.github_username, "github_username")?;
    let email = request
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    if email.is_some_and(|e| e.len() > MAX_EMAIL || e.chars().any(char::is_control)) {
        return Err(ApiError::bad_request("Invalid email"));
    }
    let mut tx = shared::db::begin(&state.deps.pool).await?;
    let existing: Option<(String, String)> = sqlx::query_as(&shared::db::sql(
        shared::db::Dialect::of(&tx),
        "SELECT id, tier FROM accounts WHERE github_id = ? AND deleted_ms IS NULL FOR UPDATE",
    ))
    .bind(github_id)
    .fetch_optional(&mut *tx)
    .await?;
    let now = now_ms();
    let (id, tier, created) = match existing {
        Some((id, tier)) => {
            sqlx::query(
                "UPDATE accounts SET github_username = ?, email = COALESCE(?, email) WHERE id = ?",
            )
            .bind(username)
            .bind(email)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            (id, Tier::parse(&tier).unwrap_or_default(), false)
        }
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            let inserted = sqlx::query(
                "INSERT INTO accounts (id, github_id, github_username, email, tier, created_ms) VALUES (?, ?, ?, ?, 'free', ?)",
            )
            .bind(&id)
            .bind(github_id)
            .bind(username)
            .bind(email)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => (id, Tier::Free, true),
                // A deleted account keeps its GitHub id (unique): it cannot be recreated here.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(ApiError::bad_request(
                        "An account with this github_id was deleted",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let api_token = mint_token(&mut tx, &id, now).await?;
    tx.commit().await?;
    tracing::info!(account_id = %id, created, "API token issued");
    Ok(Json(AccountCreateResponse {
        id,
        api_token,
        github_username: username.to_owned(),
        tier,
        created,
    }))
}

/// `POST /api/v1/account/update` (admin): tier and billing fields; linked licences follow.
pub async fn update_account(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(request): ApiJson<AccountUpdateRequest>,
) -> ApiResult<Json<OkResponse>> {
    let account_id = required(&request.account_id, "account_id")?;
    for (name, value) in [
        ("polar_customer_id", &request.polar_customer_id),
        ("polar_subscription_id", &request.polar_subscription_id),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| v.len() > MAX_NAME || v.chars().any(char::is_control))
        {
            return Err(ApiError::bad_request(format!("Invalid {name}")));
        }
    }
    let mut tx = shared::db::begin(&state.deps.pool).await?;
    if access::account_by_id(&mut tx, account_id).await?.is_none() {
        return Err(ApiError::not_found("Account not found"));
    }
    sqlx::query(
        "UPDATE accounts SET tier = COALESCE(?, tier), polar_customer_id = COALESCE(?, polar_customer_id), \
         polar_subscription_id = COALESCE(?, polar_subscription_id), \
         has_payment_method = COALESCE(?, has_payment_method) WHERE id = ?",
    )
    .bind(request.tier.map(|t| t.as_str()))
    .bind(request.polar_customer_id.as_deref())
    .bind(request.polar_subscription_id.as_deref())
    .bind(request.has_payment_method)
    .bind(account_id)
    .execute(&mut *tx)
    .await?;
    if let Some(tier) = request.tier {
        // Platforms are derived from the tier, so a downgrade drops the pro platforms (D28).
        sqlx::query("UPDATE licenses SET tier = ? WHERE account_id = ?")
            .bind(tier.as_str())
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(account_id, tier = ?request.tier, "account updated");
    Ok(Json(OkResponse { ok: true }))
}

/// A fresh API token for an account (only its hash is stored).
async fn mint_token(
    conn: &mut AnyConnection,
    account_id: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    let (token, hash) = auth::new_token();
    sqlx::query("INSERT INTO api_tokens (account_id, token_hash, created_ms) VALUES (?, ?, ?)")
        .bind(account_id)
        .bind(&hash[..])
        .bind(now)
        .execute(conn)
        .await?;
    Ok(token)
}

/// A required, trimmed, bounded text field (400 otherwise).
fn required<'a>(value: &'a str, name: &str) -> ApiResult<&'a str> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::bad_request(format!("{name} is required")));
    }
    if v.len() > MAX_NAME || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "Invalid {name}: at most {MAX_NAME} bytes, no control characters"
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_are_trimmed_and_checked() {
        assert_eq!(required(" 42 ", "github_id").unwrap(), "42");
        assert!(required("  ", "github_id").is_err());
        assert!(required("a\tb", "github_id").is_err());
        assert!(required(&"x".repeat(256), "github_id").is_err());
    }
}
