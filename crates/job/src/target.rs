//! [`Target`], [`SignPlatform`] and [`Priority`]: what a job builds, its two-stage pairs, and
//! its place in a queue.

use std::fmt;

use shared::queue::TARGETS;
use sqlx::{
    any::{AnyTypeInfo, AnyValueRef},
    encode::IsNull,
    error::BoxDynError,
    Any, Database, Decode, Encode, Type,
};

/// A build target the hub queues (one queue each): a CLI target or a signing stage, lower-case
/// (A9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target(&'static str);

/// A target name the hub does not queue.
#[derive(Debug, thiserror::Error)]
#[error("unknown target `{0}`")]
pub struct UnknownTarget(pub String);

impl Target {
    /// A known target (case-insensitive, surrounding space ignored).
    pub fn parse(name: &str) -> Result<Self, UnknownTarget> {
        let lower = name.trim().to_ascii_lowercase();
        TARGETS
            .iter()
            .find(|t| **t == lower)
            .map(|t| Self(t))
            .ok_or_else(|| UnknownTarget(name.to_owned()))
    }
    /// The target's name.
    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<str> for Target {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Target {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Type<Any> for Target {
    fn type_info() -> AnyTypeInfo {
        <str as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <str as Type<Any>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Any> for Target {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <&str as Encode<'q, Any>>::encode(self.0, buf)
    }
}

impl<'r> Decode<'r, Any> for Target {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self::parse(<&str as Decode<'r, Any>>::decode(value)?)?)
    }
}

/// The platform of a two-stage build (§5.4): stage 1 uploads `<x>-precompiled` and ends with
/// `needs_finishing: "<x>"`; stage 2 runs on an `<x>-sign` worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignPlatform {
    /// builder-windows on the Azure VM.
    Windows,
    /// builder-macos.
    Ios,
    /// builder-macos.
    Macos,
}

impl SignPlatform {
    /// From a `needs_finishing` value; anything else is not a two-stage platform.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "windows" => Some(Self::Windows),
            "ios" => Some(Self::Ios),
            "macos" => Some(Self::Macos),
            _ => None,
        }
    }
    /// The `needs_finishing` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Windows => "windows",
            Self::Ios => "ios",
            Self::Macos => "macos",
        }
    }
    /// The artifact target of the stage-1 bundle (hidden from the CLI).
    pub fn bundle_target(self) -> String {
        format!("{}-precompiled", self.as_str())
    }
    /// The stage-2 queue.
    pub fn sign_target(self) -> Target {
        Target(match self {
            Self::Windows => "windows-sign",
            Self::Ios => "ios-sign",
            Self::Macos => "macos-sign",
        })
    }
}

/// Queue priority: pro 10 above free 1 (§5.2); a requeued job goes one level above its tier so
/// it keeps its place ahead of jobs submitted after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl Priority {
    /// Free licences.
    pub const FREE: Self = Self(1);
    /// Pro licences.
    pub const PRO: Self = Self(10);

    /// The priority of a job requeued after a lost worker.
    pub const fn requeued(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl Type<Any> for Priority {
    fn type_info() -> AnyTypeInfo {
        <i16 as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i16 as Type<Any>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Any> for Priority {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <i16 as Encode<'q, Any>>::encode(i16::from(self.0), buf)
    }
}

impl<'r> Decode<'r, Any> for Priority {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(u8::try_from(<i16 as Decode<'r, Any>>::decode(
            value,
        )?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_known_lower_case_names() {
        assert_eq!(Target::parse(" Linux ").unwrap().as_str(), "linux");
        assert_eq!(Target::parse("windows-sign").unwrap(), "windows-sign");
        assert!(Target::parse("amiga").is_err());
        assert!(Target::parse("").is_err());
    }

    #[test]
    fn two_stage_pairs() {
        let w = SignPlatform::parse("windows").unwrap();
        assert_eq!(w.bundle_target(), "windows-precompiled");
        assert_eq!(w.sign_target(), "windows-sign");
        assert_eq!(
            SignPlatform::parse("ios").unwrap().sign_target(),
            "ios-sign"
        );
        assert!(SignPlatform::parse("linux").is_none());
        for p in [
            SignPlatform::Windows,
            SignPlatform::Ios,
            SignPlatform::Macos,
        ] {
            assert!(TARGETS.contains(&p.sign_target().as_str()));
        }
    }

    #[test]
    fn requeued_jobs_rank_above_their_tier() {
        assert!(Priority::FREE.requeued() > Priority::FREE);
        assert!(Priority::PRO.requeued() > Priority::PRO);
        assert!(Priority::FREE.requeued() < Priority::PRO);
        assert_eq!(Priority(u8::MAX).requeued(), Priority(u8::MAX));
    }
}
