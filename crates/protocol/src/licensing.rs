//! License tiers and their limits (§6).

use std::fmt;

use serde::{Deserialize, Serialize};

/// License tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Free, device-bound by default.
    #[default]
    Free,
    /// Paid.
    Pro,
}

impl Tier {
    /// Platforms reported for the tier (reported, not enforced: A13).
    pub fn platforms(&self) -> Vec<&'static str> {
        match self {
            Self::Free => vec!["macos"],
            Self::Pro => vec!["macos", "ios", "android", "windows", "linux"],
        }
    }

    /// Queue priority of the tier's jobs.
    pub fn priority(&self) -> u8 {
        match self {
            Self::Free => 1,
            Self::Pro => 10,
        }
    }

    /// Publishes per UTC month.
    pub fn monthly_publish_limit(&self) -> u32 {
        match self {
            Self::Free => 15,
            Self::Pro => 50,
        }
    }

    /// Submissions per rolling hour, per license.
    pub fn hourly_build_limit(&self) -> u32 {
        match self {
            Self::Free => 5,
            Self::Pro => 30,
        }
    }

    /// Deep verifies per month (reported only).
    pub fn verify_limit(&self) -> u32 {
        match self {
            Self::Free => 2,
            Self::Pro => 20,
        }
    }

    /// Cap on the decoded source tarball, in bytes.
    pub fn tarball_cap_bytes(&self) -> u64 {
        match self {
            Self::Free => 50 * 1024 * 1024,
            Self::Pro => 200 * 1024 * 1024,
        }
    }

    /// Wire form: `"free"` or `"pro"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
        }
    }

    /// Parses the exact wire form; anything else is `None`.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "free" => Some(Self::Free),
            "pro" => Some(Self::Pro),
            _ => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
