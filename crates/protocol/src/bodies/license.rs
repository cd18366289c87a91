//! License bodies: `POST /license/register` and `POST /license/verify` (§3.2, §3.3).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::redacted::REDACTED;
use crate::Tier;

/// `POST /license/register` request (the CLI sends `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisterRequest {
    /// Optional GitHub user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_username: Option<String>,
    /// Optional device identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// `POST /license/register` response; the CLI requires all three fields.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The new license key (secret).
    pub license_key: String,
    /// Always `free` for a new key.
    pub tier: Tier,
    /// The tier's platforms.
    pub platforms: Vec<String>,
}

impl fmt::Debug for RegisterResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterResponse")
            .field("license_key", &REDACTED)
            .field("tier", &self.tier)
            .field("platforms", &self.platforms)
            .finish()
    }
}

/// `POST /license/verify` request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// The key to check (secret).
    pub license_key: String,
}

impl fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("license_key", &REDACTED)
            .finish()
    }
}

/// `POST /license/verify` response; `tier` and `platforms` are `null` when invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    /// Whether the key exists.
    pub valid: bool,
    /// The key's tier, `null` when invalid.
    pub tier: Option<Tier>,
    /// The key's platforms, `null` when invalid.
    pub platforms: Option<Vec<String>>,
}

impl VerifyResponse {
    /// The answer for an unknown key: `{"valid":false,"tier":null,"platforms":null}`.
    pub fn invalid() -> Self {
        Self {
            valid: false,
            tier: None,
            platforms: None,
        }
    }
}
