//! The [`BlobStore`] implementation of [`S3BlobStore`].

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use tokio_util::io::ReaderStream;

use super::multipart::PartReader;
use super::{backend_err, http_status, S3BlobStore};
use crate::key::validate_prefix;
use crate::range::parse_content_range;
use crate::{
    content_disposition, BlobError, BlobObject, BlobStore, ByteRange, ByteStream, PutOptions,
    PutResult, Result, READ_BUF,
};

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, body: ByteStream, opts: PutOptions) -> Result<PutResult> {
        let full_key = self.full_key(key)?;
        let mut reader = PartReader::new(body, opts.max_bytes);
        let first = reader.next_part(READ_BUF).await?;
        if reader.is_done() {
            // Fits in one part: everything is known before a single byte is sent.
            let result = reader.finish(opts.expected_sha256)?;
            let len = first.len() as i64;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&full_key)
                .content_length(len)
                .body(S3Body::from(first))
                .send()
                .await
                .map_err(|e| backend_err("PutObject", &e))?;
            tracing::debug!(key, size = result.size, "blob stored (s3, single part)");
            return Ok(result);
        }
        let result = self
            .put_multipart(&full_key, first, &mut reader, opts.expected_sha256)
            .await?;
        tracing::debug!(key, size = result.size, "blob stored (s3, multipart)");
        Ok(result)
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobObject> {
        let full_key = self.full_key(key)?;
        let mut req = self.client.get_object().bucket(&self.bucket).key(&full_key);
        match range {
            None => {}
            Some(ByteRange::Suffix(n)) => {
                // Suffix ranges are resolved here: some S3-compatible servers mishandle a suffix
                // longer than the object (s3s-fs answers 500). `If-Match` pins the object that
                // was measured.
                let head = self.head(&full_key).await?.ok_or(BlobError::NotFound)?;
                let (first, last) = ByteRange::Suffix(n).resolve(head.0)?;
                let explicit = ByteRange::From {
                    start: first,
                    end: Some(last),
                };
                req = req.range(explicit.to_header());
                if let Some(etag) = head.1 {
                    req = req.if_match(etag);
                }
            }
            Some(range) => req = req.range(range.to_header()),
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(err) => {
                let status = http_status(&err);
                if err.as_service_error().is_some_and(|e| e.is_no_such_key()) || status == Some(404)
                {
                    return Err(BlobError::NotFound);
                }
                if status == Some(416) || err.code() == Some("InvalidRange") {
                    return Err(BlobError::RangeNotSatisfiable);
                }
                return Err(backend_err("GetObject", &err));
            }
        };
        let length = out.content_length().and_then(|l| u64::try_from(l).ok());
        let (size, served) = match out.content_range() {
            Some(value) => {
                let (size, span) = parse_content_range(value).ok_or_else(|| {
                    BlobError::Backend(format!("GetObject: bad Content-Range {value:?}"))
                })?;
                (size, Some(span))
            }
            None => (
                length.ok_or_else(|| BlobError::Backend("GetObject: no Content-Length".into()))?,
                None,
            ),
        };
        let body = ReaderStream::with_capacity(out.body.into_async_read(), READ_BUF);
        Ok(BlobObject {
            size,
            range: served,
            body: Box::pin(body),
        })
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        let full_key = self.full_key(key)?;
        Ok(self.head(&full_key).await?.map(|(size, _etag)| size))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full_key = self.full_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if http_status(&err) == Some(404) && err.code() != Some("NoSuchBucket") => {
                Ok(())
            }
            Err(err) => Err(backend_err("DeleteObject", &err)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        let full_prefix = format!("{}{prefix}", self.prefix);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| backend_err("ListObjectsV2", &e))?;
            for object in out.contents() {
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    keys.push(key.to_owned());
                }
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
        filename: &str,
    ) -> Result<Option<String>> {
        let full_key = self.full_key(key)?;
        let config = PresigningConfig::expires_in(ttl)
            .map_err(|e| BlobError::Backend(format!("presigning config: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .response_content_disposition(content_disposition(filename))
            .presigned(config)
            .await
            .map_err(|e| backend_err("presign GetObject", &e))?;
        Ok(Some(request.uri().to_owned()))
    }

    async fn check(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| backend_err("HeadBucket", &e))?;
        Ok(())
    }

    async fn sweep_partial_uploads(&self, older_than: Duration) -> Result<u64> {
        self.sweep_multipart(older_than).await
    }

    fn backend(&self) -> &'static str {
        "s3"
    }
}
