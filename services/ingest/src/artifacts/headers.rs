//! The upload headers of §3.9: `x-artifact-name` (checked per D5; storage keys are ours, the
//! name is only shown), `x-artifact-sha256` (hex of the decoded bytes, optional) and
//! `x-artifact-target` (what was built; `*-precompiled` bundles are hidden from the CLI).

use axum::http::{HeaderMap, HeaderValue};
use shared::{
    http::{ApiError, ApiResult},
    queue::TARGETS,
};

/// Longest accepted artifact name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Intermediate bundles a stage-1 worker uploads for a signing stage.
pub const INTERMEDIATE_TARGETS: &[&str] = &[
    "windows-precompiled",
    "ios-precompiled",
    "macos-precompiled",
];

/// What the headers of an upload say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactHeaders {
    /// User-visible file name.
    pub name: String,
    /// Declared SHA-256 of the decoded bytes.
    pub sha256: Option<[u8; 32]>,
    /// Target, lower-cased; `None` when not given.
    pub target: Option<String>,
}

/// Parse and check the three headers (400 with the reason otherwise).
pub fn parse(headers: &HeaderMap) -> ApiResult<ArtifactHeaders> {
    let name = match headers.get("x-artifact-name") {
        Some(v) => text(v, "x-artifact-name")?,
        None => "artifact".to_owned(),
    };
    check_name(&name)
        .map_err(|why| ApiError::bad_request(format!("Invalid x-artifact-name: {why}")))?;
    let sha256 = match headers
        .get("x-artifact-sha256")
        .map(|v| text(v, "x-artifact-sha256"))
        .transpose()?
    {
        Some(hex) if !hex.trim().is_empty() => Some(parse_sha256(hex.trim())?),
        _ => None,
    };
    let target = match headers
        .get("x-artifact-target")
        .map(|v| text(v, "x-artifact-target"))
        .transpose()?
    {
        Some(t) if !t.trim().is_empty() => Some(parse_target(&t)?),
        _ => None,
    };
    Ok(ArtifactHeaders {
        name,
        sha256,
        target,
    })
}

fn text(value: &HeaderValue, name: &str) -> ApiResult<String> {
    std::str::from_utf8(value.as_bytes())
        .map(str::to_owned)
        .map_err(|_| ApiError::bad_request(format!("Invalid {name}: not UTF-8")))
}

/// D5: not empty, not `.` or `..`, no `/`, `\` or control characters, at most
/// [`MAX_NAME_BYTES`] bytes.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.trim().is_empty() {
        return Err("must not be empty");
    }
    if name == "." || name == ".." {
        return Err("must not be '.' or '..'");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("must be at most 255 bytes");
    }
    if name.contains(['/', '\\']) {
        return Err("must not contain path separators");
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

fn parse_sha256(hex: &str) -> ApiResult<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).map_err(|_| {
        ApiError::bad_request("Invalid x-artifact-sha256: expected 64 hexadecimal characters")
    })?;
    Ok(out)
}

fn parse_target(raw: &str) -> ApiResult<String> {
    let t = raw.trim().to_ascii_lowercase();
    if TARGETS.contains(&t.as_str()) || INTERMEDIATE_TARGETS.contains(&t.as_str()) {
        return Ok(t);
    }
    Err(ApiError::bad_request(format!(
        "Unknown x-artifact-target {raw:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn defaults_apply_when_headers_are_absent() {
        let parsed = parse(&HeaderMap::new()).unwrap();
        assert_eq!(
            parsed,
            ArtifactHeaders {
                name: "artifact".into(),
                sha256: None,
                target: None
            }
        );
    }

    #[test]
    fn names_with_path_tricks_are_rejected() {
        for bad in [
            "",
            " ",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "..\\..\\x",
            "a\u{7}b",
            "a\u{85}b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"a".repeat(256)).is_err());
        for good in [
            "app-j1.tar.gz",
            "My App.dmg",
            "..hidden-but-fine",
            "ünïcode.apk",
            &"a".repeat(255),
        ] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn utf8_names_are_accepted_and_other_bytes_are_not() {
        let ok = parse(&headers(&[("x-artifact-name", "Café.apk".as_bytes())])).unwrap();
        assert_eq!(ok.name, "Café.apk");
        assert!(parse(&headers(&[("x-artifact-name", b"\xff\xfe")])).is_err());
    }

    #[test]
    fn sha_and_target_are_validated() {
        let sha = "AB".repeat(32);
        let ok = parse(&headers(&[
            ("x-artifact-sha256", sha.as_bytes()),
            ("x-artifact-target", b"Windows-Precompiled"),
        ]));
        let ok = ok.unwrap();
        assert_eq!(ok.sha256, Some([0xab; 32]));
        assert_eq!(ok.target.as_deref(), Some("windows-precompiled"));
        assert!(parse(&headers(&[("x-artifact-sha256", b"abc")])).is_err());
        assert!(parse(&headers(&[("x-artifact-target", b"../etc")])).is_err());
        assert!(parse(&headers(&[("x-artifact-sha256", b"")]))
            .unwrap()
            .sha256
            .is_none());
    }
}
