//! The multipart form of `POST /api/v1/build`, parsed as a stream (D23): text parts are read
//! with small caps, the tarball part streams through the base64 decoder into the blob store, and
//! unknown parts are skipped without being buffered. The whole body is capped at
//! `PERRY_HUB_MAX_BODY_BYTES`, the bytes that are not field data (preamble, part headers) at
//! [`framing::MAX_OVERHEAD_BYTES`], and the number of parts at [`MAX_PARTS`] (DEC-17).

use std::io;

use axum::body::Body;
use blob::b64;
use blob::{ByteStream, PutOptions};
use futures_util::TryStreamExt;
use protocol::BuildResponse;
use shared::http::{ApiError, ApiResult};

use super::{framing::Framing, submit, Intake, Outcome, Parsed, Tarball};
use crate::{
    access::Principal,
    errors::{self, UploadError},
    manifest::{self, BuildManifest},
};

/// Cap on the `manifest` part.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Cap on the `credentials` part (certificates and keystores travel base64-encoded in it).
pub const MAX_CREDENTIALS_BYTES: usize = 8 * 1024 * 1024;
/// Cap on the `license_key` part.
pub const MAX_LICENSE_KEY_BYTES: usize = 1024;
/// Most parts in one form (the CLI sends four).
pub const MAX_PARTS: usize = 16;

/// Read the form; see the [module documentation](super).
pub async fn read(
    intake: &mut Intake<'_>,
    bearer: Option<ApiResult<Principal>>,
    body: Body,
    boundary: String,
) -> ApiResult<Outcome> {
    let limit = multer::SizeLimit::new().whole_stream(intake.state.settings.max_body_bytes);
    let mut framing = Framing::new(&boundary, super::framing::MAX_OVERHEAD_BYTES);
    let guarded = body
        .into_data_stream()
        .map_err(io::Error::other)
        .and_then(move |chunk| {
            let checked = framing
                .feed(&chunk)
                .map(|()| chunk)
                .map_err(io::Error::other);
            std::future::ready(checked)
        });
    let mut multipart = multer::Multipart::with_constraints(
        guarded,
        boundary,
        multer::Constraints::new().size_limit(limit),
    );
    let mut form = Form {
        bearer,
        principal: None,
        license_key: None,
        manifest: None,
        credentials: None,
        tarball: None,
        replay: None,
    };
    let result = read_parts(intake, &mut multipart, &mut form).await;
    let result = match result {
        Ok(()) => form.finish(intake).await,
        Err(e) => Err(e),
    };
    if super::should_drain(&result) {
        drain(&mut multipart).await;
    }
    result
}

/// Every part, in order, into `form`; stops early once an idempotent replay is found.
async fn read_parts(
    intake: &mut Intake<'_>,
    multipart: &mut multer::Multipart<'static>,
    form: &mut Form,
) -> Result<(), ApiError> {
    let mut parts = 0;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| errors::multipart_error(&e).into_api("Part"))?
    {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(ApiError::bad_request(format!(
                "Too many parts in the form (at most {MAX_PARTS})"
            )));
        }
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        match name.as_str() {
            "manifest" => {
                once(form.manifest.is_some(), &name)?;
                let text = read_text(&mut field, &name, MAX_MANIFEST_BYTES).await?;
                form.manifest = Some(manifest::parse_manifest(&text)?);
                form.check_fit()?;
            }
            "credentials" => {
                once(form.credentials.is_some(), &name)?;
                let text = read_text(&mut field, &name, MAX_CREDENTIALS_BYTES).await?;
                form.credentials = Some(manifest::parse_credentials(&text)?);
                form.check_fit()?;
            }
            "license_key" => {
                once(form.license_key.is_some(), &name)?;
                let text = read_text(&mut field, &name, MAX_LICENSE_KEY_BYTES).await?;
                form.license_key = Some(text.trim().to_owned()).filter(|k| !k.is_empty());
            }
            "tarball_b64" | "tarball" => {
                once(form.tarball.is_some(), "tarball")?;
                if let Some(answer) = form.gate(intake).await? {
                    form.replay = Some(answer);
                    return Ok(());
                }
                let stream: ByteStream = Box::pin(field.map_err(io::Error::other));
                let stream: ByteStream = if name == "tarball" {
                    stream
                } else {
                    Box::pin(b64::decode_stream(stream))
                };
                form.tarball = Some(store(intake, stream, &name, form.principal.as_ref()).await?);
            }
            // Unknown parts are ignored (§2.1); the parser skips their bytes.
            _ => {}
        }
    }
    Ok(())
}

/// Read and discard the rest of the body (bounded by the body limit), so the client, still
/// sending, gets to read the answer instead of a reset connection.
async fn drain(multipart: &mut multer::Multipart<'static>) {
    while let Ok(Some(field)) = multipart.next_field().await {
        drop(field);
    }
}

/// What the form has said so far.
struct Form {
    /// The Bearer path's principal (or its error), resolved before the body was read.
    bearer: Option<ApiResult<Principal>>,
    principal: Option<Principal>,
    license_key: Option<String>,
    manifest: Option<BuildManifest>,
    credentials: Option<Option<Vec<u8>>>,
    tarball: Option<Tarball>,
    /// An idempotent retry's answer, found before the tarball.
    replay: Option<BuildResponse>,
}

impl Form {
    /// Once both are known: the manifest and the credentials fit in a `job_assign`.
    fn check_fit(&self) -> ApiResult<()> {
        match (&self.manifest, &self.credentials) {
            (Some(m), Some(c)) => manifest::check_fits_a_frame(m, c.as_deref()),
            _ => Ok(()),
        }
    }

    /// The principal, once it can be known: the Bearer path always, the key path once the
    /// `license_key` part has arrived. Errors are checks 4 and 5.
    async fn principal(&mut self, intake: &Intake<'_>) -> ApiResult<Option<&Principal>> {
        if self.principal.is_none() {
            if let Some(result) = self.bearer.take() {
                self.principal = Some(result?);
            } else if let Some(key) = &self.license_key {
                let mut conn = intake.state.deps.pool.acquire().await?;
                let principal = intake.key_guard.principal_from_key(&mut conn, key).await?;
                self.principal = Some(principal);
            }
        }
        Ok(self.principal.as_ref())
    }

    /// Before the tarball: with the manifest and the principal known, run checks 4–7 now so a
    /// refused build stores nothing (and answer an idempotent retry at once).
    async fn gate(&mut self, intake: &Intake<'_>) -> ApiResult<Option<protocol::BuildResponse>> {
        if self.manifest.is_none() {
            return Ok(None);
        }
        let Some(principal) = self.principal(intake).await?.cloned() else {
            return Ok(None);
        };
        let Some(manifest) = &self.manifest else {
            return Ok(None);
        };
        submit::gate(intake, &principal, manifest).await
    }

    /// After the last part: checks 2, then 4 and 5.
    async fn finish(&mut self, intake: &Intake<'_>) -> ApiResult<Outcome> {
        if let Some(answer) = self.replay.take() {
            return Ok(Outcome::Replay(answer));
        }
        let manifest = self
            .manifest
            .take()
            .ok_or_else(|| ApiError::bad_request("Missing 'manifest' field"))?;
        let tarball = self
            .tarball
            .take()
            .ok_or_else(|| ApiError::bad_request("Missing 'tarball_b64' field"))?;
        let principal = self.principal(intake).await?.cloned().ok_or_else(|| {
            ApiError::bad_request("Missing 'license_key' field or Authorization header")
        })?;
        Ok(Outcome::Ready(Box::new(Parsed {
            manifest,
            credentials: self.credentials.take().flatten(),
            principal,
            tarball,
        })))
    }
}

/// Stream the tarball into the blob store, capped at the tier's limit when the tier is known,
/// else at the largest cap (the 413 then waits for checks 4–7).
async fn store(
    intake: &mut Intake<'_>,
    stream: ByteStream,
    part: &str,
    principal: Option<&Principal>,
) -> ApiResult<Tarball> {
    let settings = &intake.state.settings;
    let cap = principal.map_or_else(
        || settings.largest_tarball_cap(),
        |p| settings.tarball_cap(p.tier()),
    );
    intake.tarball.arm();
    let put = intake
        .state
        .deps
        .blob
        .put(intake.tarball.key(), stream, PutOptions::new(cap))
        .await;
    match put {
        Ok(put) if put.size == 0 => {
            Err(ApiError::bad_request(format!("The '{part}' part is empty")))
        }
        Ok(put) => Ok(Tarball::Stored(put)),
        Err(e) => match errors::classify_put_error(e, part) {
            UploadError::OverCap(_) if principal.is_none() => Ok(Tarball::OverCap),
            other => Err(other.into_api("Tarball")),
        },
    }
}

fn once(seen: bool, name: &str) -> ApiResult<()> {
    if seen {
        return Err(ApiError::bad_request(format!("Duplicate '{name}' part")));
    }
    Ok(())
}

/// A text part, at most `cap` bytes of UTF-8.
async fn read_text(field: &mut multer::Field<'_>, name: &str, cap: usize) -> ApiResult<String> {
    let mut text = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| errors::multipart_error(&e).into_api("Part"))?
    {
        if text.len().saturating_add(chunk.len()) > cap {
            return Err(errors::too_large(&format!("The '{name}' part"), cap as u64));
        }
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text)
        .map_err(|_| ApiError::bad_request(format!("The '{name}' part is not UTF-8 text")))
}
