//! The raw form of `POST /api/v1/build` for new clients: `Content-Type:
//! application/octet-stream`, the body is the tarball itself (no base64), and the rest travels
//! in headers, so every check runs before a byte is stored:
//!
//! - `X-Perry-Manifest` (required): the manifest, as JSON or as base64 of JSON (for non-ASCII);
//! - `X-Perry-Credentials` (optional): the credentials object, same encoding;
//! - `X-Perry-License-Key`, or `Authorization: Bearer <api token>`;
//! - `X-Tarball-Sha256` (optional): hex SHA-256 of the body, verified while it streams.

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue},
};
use base64::Engine as _;
use blob::PutOptions;
use protocol::BuildResponse;
use shared::http::{ApiError, ApiResult, ErrorCode};

use super::{submit, Intake, Outcome, Parsed, Tarball};
use crate::{
    access::Principal,
    body, errors,
    manifest::{self, BuildManifest},
};

/// Header carrying the manifest.
pub const MANIFEST_HEADER: &str = "x-perry-manifest";
/// Header carrying the credentials.
pub const CREDENTIALS_HEADER: &str = "x-perry-credentials";
/// Header carrying the licence key.
pub const LICENSE_HEADER: &str = "x-perry-license-key";
/// Header carrying the tarball's SHA-256.
pub const SHA256_HEADER: &str = "x-tarball-sha256";

/// Read a raw submission; see the [module documentation](self).
pub async fn read(
    intake: &mut Intake<'_>,
    bearer: Option<ApiResult<Principal>>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Outcome> {
    let max_body = intake.state.settings.max_body_bytes;
    let checked = match check(intake, bearer, headers).await {
        Ok(Checked::Go(checked)) => checked,
        Ok(Checked::Replay(answer)) => {
            body::drain(body, max_body).await;
            return Ok(Outcome::Replay(answer));
        }
        Err(e) => {
            if e.code != ErrorCode::UploadTooLarge {
                body::drain(body, max_body).await;
            }
            return Err(e);
        }
    };
    let cap = intake
        .state
        .settings
        .tarball_cap(checked.principal.tier())
        .min(max_body);
    let mut options = PutOptions::new(cap);
    if let Some(sha) = checked.sha256 {
        options = options.with_sha256(sha);
    }
    intake.tarball.arm();
    let stream = Box::pin(body::limited_stream(body, max_body));
    let put = intake
        .state
        .deps
        .blob
        .put(intake.tarball.key(), stream, options)
        .await
        .map_err(|e| errors::classify_put_error(e, "tarball").into_api("Tarball"))?;
    if put.size == 0 {
        return Err(ApiError::bad_request("The tarball is empty"));
    }
    Ok(Outcome::Ready(Box::new(Parsed {
        manifest: checked.manifest,
        credentials: checked.credentials,
        principal: checked.principal,
        tarball: Tarball::Stored(put),
    })))
}

/// What the headers said, once checks 1–7 passed.
struct Go {
    manifest: BuildManifest,
    credentials: Option<Vec<u8>>,
    principal: Principal,
    sha256: Option<[u8; 32]>,
}

enum Checked {
    Go(Box<Go>),
    Replay(BuildResponse),
}

/// Checks 1–7 from the headers alone, before a byte of the body is read.
async fn check(
    intake: &Intake<'_>,
    bearer: Option<ApiResult<Principal>>,
    headers: &HeaderMap,
) -> ApiResult<Checked> {
    let text = document(headers.get(MANIFEST_HEADER), "X-Perry-Manifest")?
        .ok_or_else(|| ApiError::bad_request("Missing X-Perry-Manifest header"))?;
    let manifest = manifest::parse_manifest(&text)?;
    let credentials = match document(headers.get(CREDENTIALS_HEADER), "X-Perry-Credentials")? {
        Some(text) => manifest::parse_credentials(&text)?,
        None => None,
    };
    manifest::check_fits_a_frame(&manifest, credentials.as_deref())?;
    let sha256 = sha256(headers.get(SHA256_HEADER))?;
    let principal = match bearer {
        Some(result) => result?,
        None => {
            let key = headers
                .get(LICENSE_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "Missing X-Perry-License-Key header or Authorization header",
                    )
                })?;
            let mut conn = intake.state.deps.pool.acquire().await?;
            intake.key_guard.principal_from_key(&mut conn, key).await?
        }
    };
    if let Some(answer) = submit::gate(intake, &principal, &manifest).await? {
        return Ok(Checked::Replay(answer));
    }
    Ok(Checked::Go(Box::new(Go {
        manifest,
        credentials,
        principal,
        sha256,
    })))
}

/// A JSON document in a header: the JSON itself, or standard base64 of it.
fn document(value: Option<&HeaderValue>, name: &str) -> ApiResult<Option<String>> {
    let Some(value) = value else { return Ok(None) };
    let bad = || {
        ApiError::bad_request(format!(
            "Invalid {name}: expected JSON or base64-encoded JSON"
        ))
    };
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| bad())?
        .trim();
    if text.starts_with('{') {
        return Ok(Some(text.to_owned()));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| bad())?;
    String::from_utf8(decoded).map(Some).map_err(|_| bad())
}

fn sha256(value: Option<&HeaderValue>) -> ApiResult<Option<[u8; 32]>> {
    let Some(text) = value
        .map(|v| v.to_str().unwrap_or("?").trim())
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| {
        ApiError::bad_request("Invalid X-Tarball-Sha256: expected 64 hexadecimal characters")
    })?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_documents_are_json_or_base64_json() {
        let json = HeaderValue::from_static(r#"{"a":1}"#);
        assert_eq!(
            document(Some(&json), "X").unwrap().as_deref(),
            Some(r#"{"a":1}"#)
        );
        let b64 = HeaderValue::from_static("eyJhIjoiw6kifQ==");
        assert_eq!(
            document(Some(&b64), "X").unwrap().as_deref(),
            Some(r#"{"a":"é"}"#)
        );
        assert!(document(Some(&HeaderValue::from_static("%%%")), "X").is_err());
        assert_eq!(document(None, "X").unwrap(), None);
    }

    #[test]
    fn the_tarball_digest_must_be_hex() {
        assert_eq!(sha256(None).unwrap(), None);
        let hex = HeaderValue::from_str(&"00".repeat(32)).unwrap();
        assert_eq!(sha256(Some(&hex)).unwrap(), Some([0u8; 32]));
        assert!(sha256(Some(&HeaderValue::from_static("xyz"))).is_err());
    }
}
