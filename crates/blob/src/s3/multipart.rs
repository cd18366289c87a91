//! Multipart uploads: the body is read one part at a time, and an upload that fails or is
//! cancelled is aborted so that no pending upload is left behind.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{backend_err, http_status, S3BlobStore, S3_MAX_PARTS, S3_PART_SIZE};
use crate::meter::Meter;
use crate::{BlobError, ByteStream, PutResult, Result};

/// Reads a put body in parts of at most [`S3_PART_SIZE`] bytes, metering as it goes.
pub(super) struct PartReader {
    body: ByteStream,
    meter: Meter,
    /// Bytes already pulled (and metered) but not yet placed in a part.
    leftover: Option<Bytes>,
    /// The body has ended; the next part is the last one.
    eof: bool,
}

impl PartReader {
    /// Reads `body`, failing once more than `max_bytes` arrive.
    pub(super) fn new(body: ByteStream, max_bytes: u64) -> Self {
        Self {
            body,
            meter: Meter::new(max_bytes),
            leftover: None,
            eof: false,
        }
    }

    /// The body has been read completely: the part just returned was the last one.
    pub(super) fn is_done(&self) -> bool {
        self.eof && self.leftover.is_none()
    }

    /// The size and digest of the whole body, checked against the declared digest.
    pub(super) fn finish(&self, expected_sha256: Option<[u8; 32]>) -> Result<PutResult> {
        self.meter.finish(expected_sha256)
    }

    /// Pulls the next chunk from the body, metering it; `None` at the end.
    async fn pull(&mut self) -> Result<Option<Bytes>> {
        if let Some(chunk) = self.leftover.take() {
            return Ok(Some(chunk));
        }
        loop {
            match self.body.next().await {
                None => {
                    self.eof = true;
                    return Ok(None);
                }
                Some(Err(err)) => return Err(BlobError::Source(err)),
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => {
                    self.meter.add(&chunk)?;
                    return Ok(Some(chunk));
                }
            }
        }
    }

    /// Fills the next part. Afterwards [`Self::is_done`] tells whether it was the last one (a full
    /// part peeks one chunk ahead to find out).
    pub(super) async fn next_part(&mut self, initial_capacity: usize) -> Result<Bytes> {
        let mut buf = Vec::with_capacity(initial_capacity.min(S3_PART_SIZE));
        while buf.len() < S3_PART_SIZE {
            let Some(chunk) = self.pull().await? else {
                return Ok(Bytes::from(buf));
            };
            let room = S3_PART_SIZE - buf.len();
            if chunk.len() <= room {
                buf.extend_from_slice(&chunk);
            } else {
                buf.extend_from_slice(&chunk[..room]);
                self.leftover = Some(chunk.slice(room..));
            }
        }
        if self.leftover.is_none() {
            if let Some(chunk) = self.pull().await? {
                self.leftover = Some(chunk);
            }
        }
        Ok(Bytes::from(buf))
    }
}

/// Aborts a multipart upload unless disarmed. Errors are aborted inline with
/// [`MultipartGuard::abort`]; a dropped (cancelled) put aborts from a spawned task.
struct MultipartGuard {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl MultipartGuard {
    fn disarm(&mut self) {
        self.upload_id = None;
    }

    /// Aborts now. Returns true if the upload no longer exists (it was completed after all).
    /// The id stays armed while the request is in flight, so a put cancelled during the abort
    /// still aborts from `Drop`.
    async fn abort(&mut self) -> bool {
        let Some(upload_id) = self.upload_id.clone() else {
            return false;
        };
        let gone = abort_upload(&self.client, &self.bucket, &self.key, &upload_id).await;
        self.upload_id = None;
        gone
    }
}

pub(super) async fn abort_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> bool {
    match client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        Ok(_) => false,
        Err(err) => {
            let gone = err
                .as_service_error()
                .is_some_and(|e| e.is_no_such_upload())
                || http_status(&err) == Some(404);
            if !gone {
                tracing::warn!(bucket, key, upload_id, error = %DisplayErrorContext(&err), "could not abort multipart upload");
            }
            gone
        }
    }
}

impl Drop for MultipartGuard {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    abort_upload(&client, &bucket, &key, &upload_id).await;
                });
            }
            Err(_) => {
                tracing::warn!(
                    bucket,
                    key,
                    upload_id,
                    "multipart upload left pending: no runtime to abort it"
                );
            }
        }
    }
}

impl S3BlobStore {
    /// Uploads `first` and the rest of `reader` as a multipart upload and completes it; on any
    /// failure the upload is aborted.
    pub(super) async fn put_multipart(
        &self,
        full_key: &str,
        first: Bytes,
        reader: &mut PartReader,
        expected_sha256: Option<[u8; 32]>,
    ) -> Result<PutResult> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .send()
            .await
            .map_err(|e| backend_err("CreateMultipartUpload", &e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| BlobError::Backend("CreateMultipartUpload: no upload id".into()))?
            .to_owned();
        #[cfg(feature = "testing")]
        if let Ok(mut ids) = self.started_uploads.lock() {
            ids.push(upload_id.clone());
        }
        let mut guard = MultipartGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: full_key.to_owned(),
            upload_id: Some(upload_id.clone()),
        };
        match self
            .upload_parts(full_key, &upload_id, first, reader, expected_sha256)
            .await
        {
            Ok((parts, result)) => {
                let done = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(full_key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await;
                match done {
                    Ok(_) => {
                        guard.disarm();
                        Ok(result)
                    }
                    Err(err) => {
                        let err = backend_err("CompleteMultipartUpload", &err);
                        if guard.abort().await {
                            // The upload is gone although completion reported an error: it may
                            // have completed. Keys are never reused, so remove the object.
                            let _ = self
                                .client
                                .delete_object()
                                .bucket(&self.bucket)
                                .key(full_key)
                                .send()
                                .await;
                        }
                        Err(err)
                    }
                }
            }
            Err(err) => {
                guard.abort().await;
                Err(err)
            }
        }
    }

    /// Uploads `first` and every following part, then checks the digest: the caller completes
    /// the upload only if this succeeds, so a mismatched object never becomes visible.
    async fn upload_parts(
        &self,
        full_key: &str,
        upload_id: &str,
        first: Bytes,
        reader: &mut PartReader,
        expected_sha256: Option<[u8; 32]>,
    ) -> Result<(Vec<CompletedPart>, PutResult)> {
        let mut parts = Vec::new();
        let mut part = first;
        let mut number: i32 = 1;
        loop {
            if number > S3_MAX_PARTS {
                return Err(BlobError::Backend(format!(
                    "object needs more than {S3_MAX_PARTS} parts"
                )));
            }
            let len = part.len() as i64;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(len)
                .body(S3Body::from(part))
                .send()
                .await
                .map_err(|e| backend_err("UploadPart", &e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag)
                    .build(),
            );
            if reader.is_done() {
                break;
            }
            part = reader.next_part(S3_PART_SIZE).await?;
            if part.is_empty() {
                break;
            }
            number += 1;
        }
        let result = reader.finish(expected_sha256)?;
        Ok((parts, result))
    }
}
