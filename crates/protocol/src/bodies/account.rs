//! Account bodies: `GET /account`, `POST /account/create` and `POST /account/update` (§3.4–3.6).

use std::fmt;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize};

use crate::redacted::REDACTED;
use crate::Tier;

/// `GET /account` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountResponse {
    /// Account id.
    pub id: String,
    /// GitHub user name.
    pub github_username: String,
    /// E-mail address, `null` if unknown.
    pub email: Option<String>,
    /// Tier of the account's license.
    pub tier: Tier,
    /// Whether billing has a payment method.
    pub has_payment_method: bool,
    /// Usage of the current period.
    pub usage: AccountUsage,
}

/// Usage block of [`AccountResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUsage {
    /// Publishes counted this period.
    pub publishes: u32,
    /// Monthly publish limit.
    pub publish_limit: u32,
    /// Always 0.
    pub deep_verifies: u32,
    /// Monthly verify limit.
    pub verify_limit: u32,
    /// UTC month, `YYYY-MM`.
    pub period: String,
}

/// `POST /account/create` request (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreateRequest {
    /// GitHub numeric id; accepted as a JSON string or integer, kept as a string.
    #[serde(deserialize_with = "string_or_integer")]
    pub github_id: String,
    /// GitHub user name.
    pub github_username: String,
    /// Optional e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// `POST /account/create` response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreateResponse {
    /// Account id.
    pub id: String,
    /// A freshly minted API token (secret).
    pub api_token: String,
    /// GitHub user name.
    pub github_username: String,
    /// Account tier.
    pub tier: Tier,
    /// `false` if the account already existed.
    pub created: bool,
}

impl fmt::Debug for AccountCreateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountCreateResponse")
            .field("id", &self.id)
            .field("api_token", &REDACTED)
            .field("github_username", &self.github_username)
            .field("tier", &self.tier)
            .field("created", &self.created)
            .finish()
    }
}

/// `POST /account/update` request (admin); absent fields are left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUpdateRequest {
    /// Account to update.
    pub account_id: String,
    /// New tier; an unknown value fails deserialization (400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Polar customer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polar_customer_id: Option<String>,
    /// Polar subscription id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polar_subscription_id: Option<String>,
    /// Whether billing has a payment method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_payment_method: Option<bool>,
}

/// Deserializes a JSON string or integer into a `String` (`github_id`, D28).
fn string_or_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct StringOrInteger;

    impl Visitor<'_> for StringOrInteger {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or an integer")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            // `123.0` is an integer too; anything fractional or out of the exact range is not.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if v.is_finite() && v.fract() == 0.0 && v.abs() <= EXACT {
                #[allow(clippy::cast_possible_truncation)]
                let n = v as i64;
                Ok(n.to_string())
            } else {
                Err(E::invalid_type(Unexpected::Float(v), &self))
            }
        }
    }

    deserializer.deserialize_any(StringOrInteger)
}
