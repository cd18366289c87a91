//! Parsing and validation of received frames: every rejection names its reason (§4.2, §4.4).

use serde_json::{Map, Value};

use crate::Incoming;

/// Every `type` accepted by [`parse_incoming`].
pub const INCOMING_TYPES: &[&str] = &[
    "worker_hello",
    "stage",
    "progress",
    "log",
    "published",
    "queue_update",
    "error",
    "complete",
    "update_result",
    "build_complete",
    "artifact_ready",
    "subscribe",
    "cancel",
];

/// Why a received text frame was rejected.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Not parseable as JSON (the serde message, without the input).
    #[error("frame is not valid JSON: {0}")]
    NotJson(String),
    /// Valid JSON but not an object.
    #[error("frame is not a JSON object")]
    NotObject,
    /// No `type` field, or it is not a string.
    #[error("frame has no string `type` field")]
    MissingType,
    /// A `type` the hub does not know (truncated to 64 characters).
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    /// A known type with missing, mistyped or out-of-range fields.
    #[error("invalid `{kind}` frame: {reason}")]
    Invalid {
        /// The frame's `type`.
        kind: String,
        /// What is wrong; names the field.
        reason: String,
    },
}

impl FrameError {
    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "NOT_JSON",
            Self::NotObject => "NOT_OBJECT",
            Self::MissingType => "MISSING_TYPE",
            Self::UnknownType(_) => "UNKNOWN_TYPE",
            Self::Invalid { .. } => "INVALID_FRAME",
        }
    }
}

/// JSON type expected for a frame field.
#[derive(Clone, Copy)]
pub(crate) enum Expect {
    Str,
    Bool,
    Number,
    UInt,
    Int,
    StrArray,
    Array,
}

impl Expect {
    fn matches(self, v: &Value) -> bool {
        match self {
            Self::Str => v.is_string(),
            Self::Bool => v.is_boolean(),
            Self::Number => v.is_number(),
            Self::UInt => v.is_u64(),
            Self::Int => v.is_i64(),
            Self::StrArray => v
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Self::Array => v.is_array(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Str => "a string",
            Self::Bool => "a boolean",
            Self::Number => "a number",
            Self::UInt => "an unsigned integer",
            Self::Int => "an integer",
            Self::StrArray => "an array of strings",
            Self::Array => "an array",
        }
    }
}

/// Field of a received frame: name, JSON type, required (optional ones also accept `null`).
pub(crate) type FieldSpec = (&'static str, Expect, bool);

const R: bool = true;
const O: bool = false;

/// Field table of each known incoming type (`None`: unknown type). Kept in step with
/// [`Incoming`] by the tests; it exists so that every rejection names the offending field.
pub(crate) fn incoming_fields(kind: &str) -> Option<&'static [FieldSpec]> {
    use Expect::{Array, Bool, Int, Number, Str, StrArray, UInt};
    let fields: &'static [FieldSpec] = match kind {
        "worker_hello" => &[
            ("secret", Str, O),
            ("capabilities", StrArray, O),
            ("name", Str, O),
            ("max_concurrent", Int, O),
            ("perry_version", Str, O),
        ],
        "stage" => &[("job_id", Str, R), ("stage", Str, R), ("message", Str, R)],
        "progress" => &[
            ("job_id", Str, R),
            ("stage", Str, R),
            ("percent", Number, R),
            ("message", Str, O),
        ],
        "log" => &[
            ("job_id", Str, R),
            ("stage", Str, R),
            ("line", Str, R),
            ("stream", Str, R),
        ],
        "published" => &[
            ("job_id", Str, R),
            ("platform", Str, R),
            ("message", Str, R),
            ("url", Str, O),
        ],
        "queue_update" => &[
            ("job_id", Str, R),
            ("position", UInt, O),
            ("message", Str, O),
            ("estimated_wait_secs", UInt, O),
        ],
        "error" => &[
            ("job_id", Str, O),
            ("code", Str, R),
            ("message", Str, R),
            ("stage", Str, O),
        ],
        "complete" => &[
            ("job_id", Str, R),
            ("success", Bool, R),
            // Lenient where real workers differ: the hub reads neither (DEC-16).
            ("duration_secs", Number, O),
            ("artifacts", Array, O),
            ("needs_finishing", Str, O),
            ("error", Str, O),
        ],
        "update_result" => &[
            ("success", Bool, R),
            ("old_version", Str, R),
            ("new_version", Str, R),
            ("error", Str, O),
        ],
        "build_complete" => &[
            ("job_id", Str, R),
            ("has_distribution", Bool, R),
            ("duration_secs", Number, R),
        ],
        "artifact_ready" => &[],
        "subscribe" | "cancel" => &[("job_id", Str, R)],
        _ => return None,
    };
    Some(fields)
}

/// Checks presence and JSON type of each listed field.
fn check_fields(obj: &Map<String, Value>, fields: &[FieldSpec]) -> Result<(), String> {
    for &(name, expect, required) in fields {
        match obj.get(name) {
            None if required => return Err(format!("missing field `{name}`")),
            None => {}
            Some(Value::Null) if !required => {}
            Some(v) if expect.matches(v) => {}
            Some(v) => {
                return Err(format!(
                    "field `{name}` must be {}, got {}",
                    expect.describe(),
                    json_type_name(v)
                ))
            }
        }
    }
    Ok(())
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "an integer",
        Value::Number(_) => "a float",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Range checks that serde cannot express.
fn check_values(frame: &Incoming) -> Result<(), String> {
    match frame {
        Incoming::Progress { percent, .. }
            if !(percent.is_finite() && (0.0..=100.0).contains(percent)) =>
        {
            Err(format!(
                "field `percent` must be between 0 and 100, got {percent}"
            ))
        }
        Incoming::Log { stream, .. } if stream != "stdout" && stream != "stderr" => {
            Err("field `stream` must be \"stdout\" or \"stderr\"".to_owned())
        }
        _ => Ok(()),
    }
}

/// The string `job_id` of a frame that may be invalid otherwise (to attribute a frame that
/// [`parse_incoming`] rejected, such as an unreadable `complete`).
pub fn frame_job_id(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("job_id")?.as_str().map(str::to_owned)
}

/// Longest `type` echoed back in [`FrameError::UnknownType`].
pub(crate) const MAX_TYPE_ECHO: usize = 64;

/// Parses and validates one received text frame.
///
/// # Errors
///
/// A [`FrameError`] saying why the frame was rejected; its [`FrameError::code`] is stable.
pub fn parse_incoming(text: &str) -> Result<Incoming, FrameError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let Value::Object(obj) = &value else {
        return Err(FrameError::NotObject);
    };
    let kind = match obj.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => return Err(FrameError::MissingType),
    };
    let Some(fields) = incoming_fields(kind) else {
        return Err(FrameError::UnknownType(
            kind.chars().take(MAX_TYPE_ECHO).collect(),
        ));
    };
    let invalid = |reason: String| FrameError::Invalid {
        kind: kind.to_owned(),
        reason,
    };
    check_fields(obj, fields).map_err(invalid)?;
    let kind = kind.to_owned();
    let frame: Incoming = serde_json::from_value(value).map_err(|e| FrameError::Invalid {
        kind: kind.clone(),
        reason: e.to_string(),
    })?;
    check_values(&frame).map_err(|reason| FrameError::Invalid { kind, reason })?;
    Ok(frame)
}
