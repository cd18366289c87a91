//! [`JobState`]: where a job is in its lifecycle, stored as its lower-case name.

use std::{fmt, str::FromStr};

use sqlx::{
    any::{AnyTypeInfo, AnyValueRef},
    encode::IsNull,
    error::BoxDynError,
    Any, Database, Decode, Encode, Type,
};

/// A job's state (PROTOCOL §5.1, plus `finishing` between the two stages of a signed build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// `job_assign` sent; a token and a lease exist.
    Assigned,
    /// The tarball was fetched or a frame arrived.
    Running,
    /// Stage 1 done; waiting for the finisher to queue stage 2.
    Finishing,
    /// Succeeded (usage counted once).
    Completed,
    /// Failed.
    Failed,
    /// Cancelled (never counted).
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 7] = [
        Self::Queued,
        Self::Assigned,
        Self::Running,
        Self::Finishing,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Assigned => "assigned",
            Self::Running => "running",
            Self::Finishing => "finishing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled: nothing changes it any more.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Assigned or running: a worker holds the current attempt.
    pub const fn is_held(self) -> bool {
        matches!(self, Self::Assigned | Self::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored state name the hub does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown job state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

impl Type<Any> for JobState {
    fn type_info() -> AnyTypeInfo {
        <str as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <str as Type<Any>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Any> for JobState {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <&str as Encode<'q, Any>>::encode(self.as_str(), buf)
    }
}

impl<'r> Decode<'r, Any> for JobState {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(<&str as Decode<'r, Any>>::decode(value)?.parse()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_terminal_states_are_known() {
        for st in JobState::ALL {
            assert_eq!(st.as_str().parse::<JobState>().unwrap(), st);
        }
        assert!("done".parse::<JobState>().is_err());
        let terminal: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [JobState::Completed, JobState::Failed, JobState::Cancelled]
        );
        assert!(!JobState::Finishing.is_terminal());
        assert!(JobState::Assigned.is_held() && JobState::Running.is_held());
        assert!(!JobState::Queued.is_held());
    }
}
