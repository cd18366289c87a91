//! [`Secret`]: a string redacted in `Debug` and compared in constant time.

use std::fmt;

/// A secret string: never printed, compared in constant time.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the secret is empty (unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Constant-time comparison with a presented value. An empty secret matches nothing.
    pub fn matches(&self, presented: &str) -> bool {
        !self.0.is_empty() && crate::auth::constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "[unset]"
        } else {
            "[redacted]"
        })
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}
