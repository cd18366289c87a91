//! [`Redacted`]: secrets that serialize transparently but never show in `Debug` (D3, D9).

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// What `Debug` prints instead of a secret.
pub(crate) const REDACTED: &str = "[redacted]";

/// A value that is serialized transparently but never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Redacted<T>(T);

/// A secret string (worker secret, job token) that `Debug` prints as `[redacted]`.
pub type RedactedString = Redacted<String>;

impl<T> Redacted<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Borrows the secret value. Do not log the result.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Deref for Redacted<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl From<&str> for Redacted<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl AsRef<str> for Redacted<String> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
