//! Judging one source row at a time: what it becomes in the hub, or why it cannot be imported
//! faithfully. Pure functions; the hub's current state is [`crate::plan`]'s business.

use protocol::Tier;
use shared::auth;

use crate::source::{LegacyAccount, LegacyLicense, LegacyUsage};

/// A licence as the hub stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    /// SHA-256 of the trimmed key (the hub looks keys up trimmed).
    pub key_hash: [u8; 32],
    /// The tier; it alone decides the platforms (§6).
    pub tier: Tier,
    /// The original's account id, when linked.
    pub legacy_account_id: Option<String>,
    /// Bound to its first project (until an account is linked).
    pub device_bound: bool,
    /// The project it is bound to.
    pub bound_project: Option<String>,
    /// Owner's GitHub user name, when known.
    pub github_username: Option<String>,
    /// Creation time (ms).
    pub created_ms: i64,
    /// The stored `platforms` disagreed with the tier (the tier wins).
    pub platforms_disagree: bool,
}

/// An account as the hub stores it (its token separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Id (kept as in the original, so licence links stay valid).
    pub id: String,
    pub github_id: String,
    pub github_username: String,
    pub email: Option<String>,
    pub tier: Tier,
    pub has_payment_method: bool,
    pub polar_customer_id: Option<String>,
    pub polar_subscription_id: Option<String>,
    /// Creation time (ms).
    pub created_ms: i64,
    /// SHA-256 of its API token, if it has one.
    pub token_hash: Option<[u8; 32]>,
}

/// A month of usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The licence, by key hash.
    pub key_hash: [u8; 32],
    /// UTC month `YYYY-MM`.
    pub period: String,
    /// Completed publishes that month.
    pub publishes: i32,
}

/// Short, non-secret name of a key or token: the first 8 hex digits of its SHA-256 (find it in
/// the original with `WHERE SHA2(licenseKey, 256) LIKE '<prefix>%'`).
pub fn fingerprint(hash: &[u8; 32]) -> String {
    format!("sha256 {}", hex::encode(&hash[..4]))
}

/// The key hash the hub will look a presented key up by.
pub fn key_hash(key: &str) -> Option<[u8; 32]> {
    let key = key.trim();
    (!key.is_empty()).then(|| auth::hash_token(key))
}

/// `free` or `pro`, in any case and with stray spaces; anything else is unknown.
pub fn tier(value: Option<&str>) -> Result<Tier, String> {
    let raw = value.unwrap_or("").trim();
    Tier::parse(&raw.to_ascii_lowercase()).ok_or_else(|| format!("unknown tier {raw:?}"))
}

/// Whether a `platforms` value differs from what its tier decides (`Err` when malformed: not a
/// JSON array of strings). An absent or empty value is no disagreement.
pub fn platforms_disagree(value: Option<&str>, tier: Tier) -> Result<bool, String> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(false);
    };
    let list: Vec<String> =
        serde_json::from_str(text).map_err(|_| "malformed platforms JSON".to_owned())?;
    let mut got: Vec<&str> = list.iter().map(String::as_str).collect();
    let mut want = tier.platforms();
    got.sort_unstable();
    got.dedup();
    want.sort_unstable();
    Ok(got != want)
}

/// A text value trimmed, empty as absent.
pub fn text(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A `licenses` row. Without `device_bound` (older layout) a key is not bound: the original
/// never bound it, and the import keeps it working as it did.
pub fn license(row: &LegacyLicense, now_ms: i64) -> Result<License, String> {
    let key_hash = key_hash(row.key.expose()).ok_or("empty licence key")?;
    let tier = tier(row.tier.as_deref())?;
    let platforms_disagree = platforms_disagree(row.platforms.as_deref(), tier)?;
    Ok(License {
        key_hash,
        tier,
        legacy_account_id: text(row.account_id.as_deref()),
        device_bound: row.device_bound.is_some_and(|b| b != 0),
        bound_project: text(row.project_bundle_id.as_deref()),
        github_username: text(row.github_username.as_deref()),
        created_ms: positive_or(row.created_at, now_ms),
        platforms_disagree,
    })
}

/// An `accounts` row with its token.
pub fn account(row: &LegacyAccount, now_ms: i64) -> Result<Account, String> {
    let id = text(Some(&row.id)).ok_or("empty account id")?;
    if id.len() > 36 {
        return Err("account id longer than 36 characters".into());
    }
    let github_id = text(row.github_id.as_deref()).ok_or("missing github_id")?;
    Ok(Account {
        id,
        github_id,
        github_username: text(row.github_username.as_deref()).unwrap_or_default(),
        email: text(row.email.as_deref()),
        tier: tier(row.tier.as_deref())?,
        has_payment_method: row.has_payment_method.is_some_and(|b| b != 0),
        polar_customer_id: text(row.polar_customer_id.as_deref()),
        polar_subscription_id: text(row.polar_subscription_id.as_deref()),
        created_ms: positive_or(row.created_at, now_ms),
        token_hash: row.api_token.as_ref().and_then(|t| key_hash(t.expose())),
    })
}

/// A `usage_counters` row (`deep_verifies` are reported only and not kept).
pub fn usage(row: &LegacyUsage) -> Result<Usage, String> {
    let key_hash = key_hash(row.license_key.expose()).ok_or("empty licence key")?;
    let period = row.period.trim();
    if !valid_period(period) {
        return Err(format!("malformed period {period:?} (want YYYY-MM)"));
    }
    let publishes = i32::try_from(row.publishes.unwrap_or(0))
        .ok()
        .filter(|n| *n >= 0)
        .ok_or("publishes out of range")?;
    Ok(Usage {
        key_hash,
        period: period.to_owned(),
        publishes,
    })
}

/// `YYYY-MM` with a month of 01 to 12.
pub fn valid_period(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit)
        && matches!(p[5..].parse::<u8>(), Ok(1..=12))
}

fn positive_or(ms: Option<i64>, fallback: i64) -> i64 {
    ms.filter(|v| *v > 0).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use shared::config::Secret;

    use super::*;

    fn row(tier: &str, platforms: &str) -> LegacyLicense {
        LegacyLicense {
            row: 1,
            key: Secret::new(" FREE-AAAA-BBBB-CCCC "),
            tier: Some(tier.into()),
            platforms: Some(platforms.into()),
            created_at: Some(5),
            ..LegacyLicense::default()
        }
    }

    #[test]
    fn keys_are_hashed_trimmed_like_the_hub_looks_them_up() {
        let l = license(&row("free", r#"["macos"]"#), 9).unwrap();
        assert_eq!(l.key_hash, auth::hash_token("FREE-AAAA-BBBB-CCCC"));
        assert_eq!(
            (l.tier, l.created_ms, l.device_bound),
            (Tier::Free, 5, false)
        );
        assert!(!l.platforms_disagree);
        assert_eq!(key_hash("  "), None);
        assert!(!format!("{:?}", row("free", "[]")).contains("AAAA"));
    }

    #[test]
    fn the_tier_decides_and_bad_values_are_reasons_to_skip() {
        assert_eq!(license(&row(" Pro", "[]"), 0).unwrap().tier, Tier::Pro);
        assert!(license(&row("pro", "[]"), 0).unwrap().platforms_disagree);
        assert!(license(&row("free", ""), 0).is_ok_and(|l| !l.platforms_disagree));
        assert_eq!(
            license(&row("gold", "[]"), 0).unwrap_err(),
            "unknown tier \"gold\""
        );
        assert_eq!(
            license(&row("free", "macos,ios"), 0).unwrap_err(),
            "malformed platforms JSON"
        );
        assert!(license(&row("free", "[1]"), 0).is_err());
        let pro = r#"["linux","macos","ios","android","windows"]"#;
        assert!(!platforms_disagree(Some(pro), Tier::Pro).unwrap());
    }

    #[test]
    fn periods_are_utc_months() {
        assert!(valid_period("2026-05"));
        assert!(!valid_period("2026-13"));
        assert!(!valid_period("2026-5"));
        assert!(!valid_period("26-05-01"));
        let mut u = LegacyUsage {
            license_key: Secret::new("K"),
            period: "2026-05".into(),
            publishes: Some(-1),
            ..LegacyUsage::default()
        };
        assert!(usage(&u).is_err());
        u.publishes = None;
        assert_eq!(usage(&u).unwrap().publishes, 0);
    }

    #[test]
    fn accounts_need_an_id_and_a_github_id() {
        let mut a = LegacyAccount {
            id: "acc-1".into(),
            github_id: Some(" 42 ".into()),
            tier: Some("free".into()),
            email: Some(String::new()),
            api_token: Some(Secret::new("tok")),
            ..LegacyAccount::default()
        };
        let got = account(&a, 7).unwrap();
        assert_eq!(
            (got.github_id.as_str(), got.email, got.created_ms),
            ("42", None, 7)
        );
        assert_eq!(got.token_hash, Some(auth::hash_token("tok")));
        a.github_id = None;
        assert_eq!(account(&a, 7).unwrap_err(), "missing github_id");
    }

    #[test]
    fn fingerprints_show_only_a_hash_prefix() {
        let f = fingerprint(&auth::hash_token("PRO-SECRET"));
        assert!(f.starts_with("sha256 ") && f.len() == 15 && !f.contains("SECRET"));
    }
}
