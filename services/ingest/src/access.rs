//! Who is calling: the admin secret (exact, constant-time, never open when unset: D2, D4), API
//! tokens and licence keys (looked up by their SHA-256, never stored or logged in clear).

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap},
};
use protocol::Tier;
use shared::{
    auth,
    http::{ApiError, ApiResult},
    license_hash::{self, LicenseHashing},
};
use sqlx::AnyConnection;

use crate::{errors, AppState};

/// The `Authorization: Bearer` token of a request, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    auth::bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Extractor that admits only the admin secret (403 otherwise, and always when it is unset).
/// Placed before a body extractor, it makes 403 win over 400.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match bearer_token(&parts.headers) {
            Some(token) if state.deps.hub.admin_secret.matches(token) => Ok(Self),
            _ => Err(errors::admin_forbidden()),
        }
    }
}

/// An account, as needed by the handlers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    /// Account id.
    pub id: String,
    /// GitHub user name.
    pub github_username: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Stored tier.
    pub tier: String,
    /// Whether billing has a payment method.
    #[sqlx(try_from = "shared::db::Flag")]
    pub has_payment_method: bool,
}

impl AccountRow {
    /// The account's tier (an unknown stored value counts as free).
    pub fn tier(&self) -> Tier {
        Tier::parse(&self.tier).unwrap_or_default()
    }
}

/// A licence, as needed by the handlers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LicenseRow {
    /// Licence id.
    pub id: i64,
    /// Stored tier.
    pub tier: String,
    /// Linked account, if any.
    pub account_id: Option<String>,
    /// Whether the licence is bound to one project until an account is linked.
    #[sqlx(try_from = "shared::db::Flag")]
    pub device_bound: bool,
    /// The project a device-bound licence published first.
    pub bound_project: Option<String>,
}

impl LicenseRow {
    /// The licence's tier (an unknown stored value counts as free).
    pub fn tier(&self) -> Tier {
        Tier::parse(&self.tier).unwrap_or_default()
    }
}

/// Columns of [`LicenseRow`].
pub const LICENSE_COLUMNS: &str = "id, tier, account_id, device_bound, bound_project";

/// Columns of [`AccountRow`] (prefixed with `a.`).
const ACCOUNT_COLUMNS: &str = "a.id, a.github_username, a.email, a.tier, a.has_payment_method";

/// The live account of an API token (not revoked, account not deleted).
pub async fn account_by_token(
    conn: &mut AnyConnection,
    token: &str,
) -> Result<Option<AccountRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM api_tokens t JOIN accounts a ON a.id = t.account_id \
         WHERE t.token_hash = ? AND t.revoked_ms IS NULL AND a.deleted_ms IS NULL"
    );
    sqlx::query_as(&sql)
        .bind(&auth::hash_token(token)[..])
        .fetch_optional(conn)
        .await
}

/// A live account by id.
pub async fn account_by_id(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<AccountRow>, sqlx::Error> {
    let sql =
        format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = ? AND a.deleted_ms IS NULL");
    sqlx::query_as(&sql).bind(id).fetch_optional(conn).await
}

/// The licence with this key, stored keyed or (not converted yet) bare; a bare row found with
/// a pepper configured is converted on the spot (DEC-26).
pub async fn license_by_key(
    conn: &mut AnyConnection,
    hashing: &LicenseHashing,
    key: &str,
) -> Result<Option<LicenseRow>, sqlx::Error> {
    let (bare, stored) = hashing.hashes(key);
    let sql = format!(
        "SELECT {LICENSE_COLUMNS}, key_hash_kind FROM licenses \
         WHERE (key_hash = ? AND key_hash_kind = ?) OR (key_hash = ? AND key_hash_kind = 0) LIMIT 1"
    );
    let found: Option<(LicenseRow, i16)> = sqlx::query_as::<_, LicenseWithKind>(&sql)
        .bind(&stored[..])
        .bind(hashing.kind())
        .bind(&bare[..])
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| (r.license, r.key_hash_kind));
    let Some((license, kind)) = found else {
        return Ok(None);
    };
    if kind == license_hash::BARE {
        license_hash::seal_row(&mut *conn, license.id, &bare, hashing).await?;
    }
    Ok(Some(license))
}

#[derive(sqlx::FromRow)]
struct LicenseWithKind {
    #[sqlx(flatten)]
    license: LicenseRow,
    key_hash_kind: i16,
}

/// The account's licence: its oldest linked one (A12).
pub async fn account_license(
    conn: &mut AnyConnection,
    account_id: &str,
) -> Result<Option<LicenseRow>, sqlx::Error> {
    let sql =
        format!("SELECT {LICENSE_COLUMNS} FROM licenses WHERE account_id = ? ORDER BY id LIMIT 1");
    sqlx::query_as(&sql)
        .bind(account_id)
        .fetch_optional(conn)
        .await
}

/// Who submits a build.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A licence presented by its key.
    Key(LicenseRow),
    /// An account presented by an API token, with its licence if it has one yet (one is created
    /// with the first accepted build).
    Account {
        /// The account.
        account: AccountRow,
        /// Its licence.
        license: Option<LicenseRow>,
    },
}

impl Principal {
    /// The tier that applies: the account's (authoritative for logged-in users), else the
    /// licence's.
    pub fn tier(&self) -> Tier {
        match self {
            Self::Key(l) => l.tier(),
            Self::Account { account, .. } => account.tier(),
        }
    }

    /// The licence, when there is one.
    pub fn license(&self) -> Option<&LicenseRow> {
        match self {
            Self::Key(l) => Some(l),
            Self::Account { license, .. } => license.as_ref(),
        }
    }
}

/// Check 4 of §3.7: an API token (`AUTH_INVALID` when unknown or its account is deleted).
pub async fn principal_from_bearer(conn: &mut AnyConnection, token: &str) -> ApiResult<Principal> {
    let account = account_by_token(conn, token)
        .await?
        .ok_or_else(errors::auth_invalid)?;
    let license = account_license(conn, &account.id).await?;
    Ok(Principal::Account { account, license })
}

/// Check 5 of §3.7: a licence key (`LICENSE_INVALID` when unknown). An API token saved as the
/// key takes the Bearer path (A10).
pub async fn principal_from_key(
    conn: &mut AnyConnection,
    hashing: &LicenseHashing,
    key: &str,
) -> ApiResult<Principal> {
    let key = key.trim();
    if let Some(license) = license_by_key(conn, hashing, key).await? {
        return Ok(Principal::Key(license));
    }
    match account_by_token(conn, key).await? {
        Some(account) => {
            let license = account_license(conn, &account.id).await?;
            Ok(Principal::Account { account, license })
        }
        None => Err(errors::license_invalid()),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn license(tier: &str) -> LicenseRow {
        LicenseRow {
            id: 1,
            tier: tier.into(),
            account_id: None,
            device_bound: true,
            bound_project: None,
        }
    }

    #[test]
    fn the_account_tier_wins_over_its_licence() {
        let account = AccountRow {
            id: "a".into(),
            github_username: "u".into(),
            email: None,
            tier: "pro".into(),
            has_payment_method: false,
        };
        let p = Principal::Account {
            account,
            license: Some(license("free")),
        };
        assert_eq!(p.tier(), Tier::Pro);
        assert_eq!(Principal::Key(license("pro")).tier(), Tier::Pro);
        assert_eq!(Principal::Key(license("gold")).tier(), Tier::Free);
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
    }
}
