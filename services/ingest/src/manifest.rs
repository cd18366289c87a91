//! What a build submission must contain (PROTOCOL.md §3.7, A8, A9): the manifest is forwarded
//! unchanged, but the hub checks the fields workers require, the one target, the app name's
//! characters and the project it binds; credentials must be a JSON object.

use serde_json::{Map, Value};
use shared::http::{ApiError, ApiResult};

/// The targets the CLI sends (A8), matched after lower-casing (A9).
pub const CLI_TARGETS: &[&str] = &[
    "macos", "ios", "visionos", "watchos", "tvos", "android", "linux", "windows", "web",
];

/// Longest accepted app name, in bytes (as workers count it).
pub const MAX_APP_NAME_BYTES: usize = 200;

/// Longest project identifier (`bundle_id`, else `name`), in bytes (the `jobs.project` column).
pub const MAX_PROJECT_BYTES: usize = 255;

/// A checked manifest.
#[derive(Debug, Clone)]
pub struct BuildManifest {
    /// The manifest text as received (target lower-cased), forwarded to the worker.
    pub text: String,
    /// The one target.
    pub target: job::Target,
    /// What a device-bound licence binds to: `bundle_id`, else `name`.
    pub project: String,
}

/// Parse and check a manifest (400 with the reason otherwise).
pub fn parse_manifest(text: &str) -> ApiResult<BuildManifest> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("Invalid manifest JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::bad_request(
            "Invalid manifest: expected a JSON object",
        ));
    };
    let target = target(&map)?;
    let app_name = required_string(&map, "app_name")?;
    check_app_name(app_name)
        .map_err(|why| ApiError::bad_request(format!("Invalid manifest.app_name: {why}")))?;
    required_string(&map, "version")?;
    required_string(&map, "entry")?;
    let project = project(&map)?;
    // Forward the manifest unchanged, except that a target sent in another case is rewritten
    // in lower case, as workers match it exactly (A9).
    let as_sent = map
        .get("targets")
        .and_then(|t| t.get(0))
        .and_then(Value::as_str)
        == Some(target.as_str());
    let text = if as_sent {
        text.trim().to_owned()
    } else {
        map.insert(
            "targets".into(),
            Value::Array(vec![Value::String(target.as_str().to_owned())]),
        );
        Value::Object(map).to_string()
    };
    Ok(BuildManifest {
        text,
        target,
        project,
    })
}

/// Exactly one target, one of [`CLI_TARGETS`] after lower-casing.
fn target(map: &Map<String, Value>) -> ApiResult<job::Target> {
    let list = match map.get("targets") {
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid manifest.targets: expected an array of one target",
            ))
        }
        None => return Err(ApiError::bad_request("Missing manifest.targets")),
    };
    let [Value::String(one)] = list.as_slice() else {
        let what = if list.is_empty() {
            "no target was given"
        } else {
            "exactly one target is accepted per build"
        };
        return Err(ApiError::bad_request(format!(
            "Invalid manifest.targets: {what}"
        )));
    };
    let target = one.trim().to_ascii_lowercase();
    let unknown = || {
        ApiError::bad_request(format!(
            "Unknown target {one:?}; expected one of: {}",
            CLI_TARGETS.join(", ")
        ))
    };
    if !CLI_TARGETS.contains(&target.as_str()) {
        return Err(unknown());
    }
    job::Target::parse(&target).map_err(|_| unknown())
}

fn required_string<'a>(map: &'a Map<String, Value>, field: &str) -> ApiResult<&'a str> {
    match map.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(ApiError::bad_request(format!(
            "Invalid manifest.{field}: must not be empty"
        ))),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid manifest.{field}: expected a string"
        ))),
        None => Err(ApiError::bad_request(format!("Missing manifest.{field}"))),
    }
}

/// `bundle_id`, else `name`: required, since the licence binds to it.
fn project(map: &Map<String, Value>) -> ApiResult<String> {
    let pick = |field: &str| {
        map.get(field)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let Some(project) = pick("bundle_id").or_else(|| pick("name")) else {
        return Err(ApiError::bad_request("Missing manifest.bundle_id"));
    };
    if project.len() > MAX_PROJECT_BYTES || project.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "Invalid manifest.bundle_id: at most {MAX_PROJECT_BYTES} bytes, no control characters"
        )));
    }
    Ok(project.to_owned())
}

/// App names become file and directory names and shell arguments on workers, which accept
/// exactly this (builder-linux `validate_app_name`): 1 to [`MAX_APP_NAME_BYTES`] bytes of
/// letters and digits (any script), spaces, `-` and `_` (DEC-13). Checking it here turns a late
/// build failure into a 400 at submission.
pub fn check_app_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_APP_NAME_BYTES {
        return Err(format!("must be 1 to {MAX_APP_NAME_BYTES} bytes"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '-' | '_')))
    {
        return Err(format!(
            "character {bad:?} is not allowed (use letters, digits, spaces, '-' and '_')"
        ));
    }
    Ok(())
}

/// Whether the manifest and the sealed credentials fit in the `job_assign` a worker will get
/// (413 otherwise): credentials above that would make the hub drop the worker's socket at
/// dispatch.
pub fn check_fits_a_frame(manifest: &BuildManifest, credentials: Option<&[u8]>) -> ApiResult<()> {
    let credentials = credentials.map_or(0, <[u8]>::len);
    let room = protocol::MAX_JOB_ASSIGN_BYTES - protocol::JOB_ASSIGN_OVERHEAD_BYTES;
    if manifest.text.len().saturating_add(credentials) > room {
        return Err(ApiError::new(
            shared::http::ErrorCode::UploadTooLarge,
            format!(
                "The signing credentials ({credentials} bytes) and the manifest ({} bytes) are too \
                 large to send to a build worker: at most {room} bytes together",
                manifest.text.len()
            ),
        ));
    }
    Ok(())
}

/// Parse the credentials part: a JSON object of nullable signing secrets. Returns the compact
/// JSON to seal, or `None` when there is nothing to keep (`{}`).
pub fn parse_credentials(text: &str) -> ApiResult<Option<Vec<u8>>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    // The error names the position only: serde_json's messages never quote the input.
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("Invalid credentials JSON: {e}")))?;
    match value {
        Value::Object(map) if map.is_empty() => Ok(None),
        Value::Object(map) => serde_json::to_vec(&map)
            .map(Some)
            .map_err(|e| ApiError::internal(&e)),
        _ => Err(ApiError::bad_request(
            "Invalid credentials: expected a JSON object",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"app_name":"My App","bundle_id":"com.example.app","version":"1.0.0","entry":"src/main.ts","targets":["Linux"],"icon":null}"#;

    #[test]
    fn a_cli_manifest_is_accepted_with_its_target_lower_cased() {
        let m = parse_manifest(GOOD).unwrap();
        assert_eq!(m.target, "linux");
        assert_eq!(m.project, "com.example.app");
        let forwarded: Value = serde_json::from_str(&m.text).unwrap();
        let mut expected: Value = serde_json::from_str(GOOD).unwrap();
        expected["targets"] = serde_json::json!(["linux"]);
        assert_eq!(forwarded, expected, "only the target's case changes");
        let lower = GOOD.replace("Linux", "linux");
        assert_eq!(
            parse_manifest(&lower).unwrap().text,
            lower,
            "a lower-case manifest is forwarded byte for byte"
        );
    }

    #[test]
    fn target_rules_follow_a8() {
        let with = |targets: &str| GOOD.replace(r#"["Linux"]"#, targets);
        for bad in [
            r#"[]"#,
            r#"["linux","android"]"#,
            r#"["tvOS2"]"#,
            r#""linux""#,
            r#"[1]"#,
            r#"["windows-sign"]"#,
        ] {
            let e = parse_manifest(&with(bad)).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{bad}");
        }
        for good in CLI_TARGETS {
            assert_eq!(
                parse_manifest(&with(&format!("[\"{good}\"]")))
                    .unwrap()
                    .target,
                *good
            );
        }
    }

    #[test]
    fn required_fields_and_json_shape_are_checked() {
        for bad in [
            "not json",
            "[]",
            r#"{"targets":["linux"]}"#,
            &GOOD.replace(r#""version":"1.0.0""#, r#""version":7"#),
        ] {
            assert!(parse_manifest(bad).is_err(), "{bad}");
        }
        let no_bundle = GOOD.replace(r#""bundle_id":"com.example.app","#, r#""name":"demo","#);
        assert_eq!(parse_manifest(&no_bundle).unwrap().project, "demo");
        let neither = GOOD.replace(r#""bundle_id":"com.example.app","#, "");
        assert!(parse_manifest(&neither).is_err());
    }

    #[test]
    fn app_names_are_checked_as_workers_check_them() {
        for ok in [
            "App",
            "My App 2",
            "weather-app_v1",
            "Café",
            " App",
            &"x".repeat(200),
        ] {
            assert!(check_app_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "a\\b",
            "a;rm -rf",
            "a\"b",
            "a\nb",
            "App.",
            "weather-app_v1.2",
            "$(x)",
            &"x".repeat(201),
            &"é".repeat(101),
        ] {
            assert!(check_app_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credentials_must_be_an_object() {
        assert_eq!(parse_credentials("").unwrap(), None);
        assert_eq!(parse_credentials("{}").unwrap(), None);
        let sealed = parse_credentials(r#"{ "apple_p8_key": "k", "apple_team_id": null }"#)
            .unwrap()
            .unwrap();
        assert_eq!(sealed, br#"{"apple_p8_key":"k","apple_team_id":null}"#);
        assert!(parse_credentials("[1]").is_err());
        assert!(parse_credentials("{oops").is_err());
    }

    #[test]
    fn credential_errors_do_not_echo_the_input() {
        let e = parse_credentials(r#"{"apple_p8_key": "s3cr3t-value" oops}"#).unwrap_err();
        assert!(!e.message.contains("s3cr3t-value"), "{}", e.message);
    }
}
