//! Incomplete multipart uploads left by a process killed mid-upload: found with
//! `ListMultipartUploads` under the store's prefix and aborted once stale (started before the
//! cutoff and no part received since).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::error::ProvideErrorMetadata;

use super::multipart::abort_upload;
use super::{backend_err, http_status, S3BlobStore};
use crate::{BlobError, Result};

/// Seconds since the epoch of `older_than` ago.
fn cutoff_secs(older_than: Duration) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    i64::try_from(now.saturating_sub(older_than.as_secs())).unwrap_or(i64::MAX)
}

/// Whether an upload started at `initiated` whose newest part arrived at `newest_part` (epoch
/// seconds; `None` when unknown or no part yet) is abandoned at `cutoff`.
pub(super) fn is_stale(initiated: Option<i64>, newest_part: Option<i64>, cutoff: i64) -> bool {
    initiated.is_some_and(|t| t < cutoff) && newest_part.is_none_or(|t| t < cutoff)
}

impl S3BlobStore {
    /// Aborts every multipart upload under the store's prefix that [`Self::abort_if_stale`]
    /// finds abandoned; how many were aborted.
    pub(super) async fn sweep_multipart(&self, older_than: Duration) -> Result<u64> {
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        let mut aborted = 0;
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| {
                    if http_status(&e) == Some(501) || e.code() == Some("NotImplemented") {
                        BlobError::Unsupported("ListMultipartUploads")
                    } else {
                        backend_err("ListMultipartUploads", &e)
                    }
                })?;
            for upload in out.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let initiated = upload.initiated().map(aws_smithy_types::DateTime::secs);
                if self.abort_if_stale(key, id, initiated, older_than).await? {
                    aborted += 1;
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            id_marker = out.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(aborted)
    }

    /// Aborts the multipart upload `upload_id` of `full_key` (the bucket key, prefix included)
    /// when it started (`initiated`, epoch seconds) more than `older_than` ago and none of its
    /// parts arrived within `older_than`; `true` when it was aborted. One step of
    /// [`BlobStore::sweep_partial_uploads`](crate::BlobStore::sweep_partial_uploads), public for
    /// tooling and tests on servers that cannot list uploads.
    pub async fn abort_if_stale(
        &self,
        full_key: &str,
        upload_id: &str,
        initiated: Option<i64>,
        older_than: Duration,
    ) -> Result<bool> {
        let cutoff = cutoff_secs(older_than);
        if !is_stale(initiated, None, cutoff) {
            return Ok(false);
        }
        let newest = self.newest_part(full_key, upload_id).await?;
        if !is_stale(initiated, newest, cutoff) {
            return Ok(false);
        }
        abort_upload(&self.client, &self.bucket, full_key, upload_id).await;
        tracing::info!(
            key = full_key,
            upload_id,
            "aborted an abandoned multipart upload"
        );
        Ok(true)
    }

    /// When the newest part of an upload arrived (epoch seconds), `None` without parts.
    async fn newest_part(&self, full_key: &str, upload_id: &str) -> Result<Option<i64>> {
        let mut newest = None;
        let mut marker = None::<String>;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| backend_err("ListParts", &e))?;
            let page = out
                .parts()
                .iter()
                .filter_map(|p| p.last_modified().map(aws_smithy_types::DateTime::secs))
                .max();
            newest = newest.max(page);
            marker = out.next_part_number_marker().map(str::to_owned);
            if out.is_truncated() != Some(true) || marker.is_none() {
                return Ok(newest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_stale;

    #[test]
    fn an_upload_is_stale_only_when_it_started_and_last_grew_before_the_cutoff() {
        let cutoff = 1_000;
        assert!(is_stale(Some(10), None, cutoff));
        assert!(is_stale(Some(10), Some(999), cutoff));
        assert!(!is_stale(Some(10), Some(1_000), cutoff), "a recent part");
        assert!(!is_stale(Some(1_000), None, cutoff), "started recently");
        assert!(!is_stale(None, None, cutoff), "no start time: left alone");
    }
}
