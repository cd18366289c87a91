//! [`S3BlobStore`]: objects in an S3 bucket through `aws-sdk-s3`.
//!
//! - `settings` — [`S3Settings`], the static connection settings.
//! - `multipart` — multipart uploads for objects larger than one part, aborted on any failure.
//! - `partials` — the sweep of multipart uploads a killed process left incomplete.
//! - `store` — the [`BlobStore`](crate::BlobStore) implementation, presigned GETs included.

mod multipart;
mod partials;
mod settings;
mod store;

use std::fmt;
#[cfg(feature = "testing")]
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use crate::{validate_key, BlobError, Result};

pub use settings::S3Settings;

/// Size of one S3 multipart part, and the largest object sent with a single `PutObject`.
pub const S3_PART_SIZE: usize = 8 * 1024 * 1024;

/// S3 allows at most this many parts per multipart upload (80 GiB with 8 MiB parts).
const S3_MAX_PARTS: i32 = 10_000;

/// Blob store in an S3 bucket. Cheap to clone (the SDK client is reference counted).
#[derive(Clone)]
pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    region: String,
    endpoint: Option<String>,
    prefix: String,
    checksum_when_required: bool,
    /// Ids of every multipart upload started, so tests can prove they were aborted.
    #[cfg(feature = "testing")]
    started_uploads: Arc<Mutex<Vec<String>>>,
}

impl fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("key_prefix", &self.prefix)
            .field("checksum_when_required", &self.checksum_when_required)
            .finish_non_exhaustive()
    }
}

fn backend_err<E, R>(op: &str, err: &SdkError<E, R>) -> BlobError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    BlobError::Backend(format!("{op}: {}", DisplayErrorContext(err)))
}

/// HTTP status of a failed SDK call, when the server answered.
fn http_status<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

impl S3BlobStore {
    /// Builds the client with the static keys of `settings`. No network traffic happens here;
    /// see [`S3BlobStore::ensure_bucket`] and [`BlobStore::check`](crate::BlobStore::check).
    pub fn new(settings: S3Settings) -> Result<Self> {
        let credentials = Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.clone(),
            None,
            None,
            "perry-hub-static",
        );
        Self::with_provider(settings, SharedCredentialsProvider::new(credentials))
    }

    /// Builds the client with the static keys of `settings` when it has them, otherwise with
    /// the standard AWS credential chain: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, the
    /// shared config files, web identity (EKS service accounts), ECS task roles and the EC2
    /// instance role. Credentials are fetched (and refreshed) when first needed.
    pub async fn from_settings(settings: S3Settings) -> Result<Self> {
        if !settings.access_key_id.is_empty() || !settings.secret_access_key.is_empty() {
            return Self::new(settings);
        }
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .region(Region::new(settings.region.clone()))
            .build()
            .await;
        Self::with_provider(settings, SharedCredentialsProvider::new(chain))
    }

    fn with_provider(settings: S3Settings, credentials: SharedCredentialsProvider) -> Result<Self> {
        let S3Settings {
            bucket,
            endpoint,
            region,
            access_key_id: _,
            secret_access_key: _,
            key_prefix,
            checksum_when_required,
        } = settings;
        if bucket.is_empty() {
            return Err(BlobError::Backend("S3 bucket name is empty".into()));
        }
        if region.is_empty() {
            return Err(BlobError::Backend("S3 region is empty".into()));
        }
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .credentials_provider(credentials);
        if let Some(endpoint) = endpoint.as_deref().filter(|e| !e.is_empty()) {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        if checksum_when_required {
            builder = builder
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        let client = aws_sdk_s3::Client::from_conf(builder.build());
        let prefix = key_prefix.trim_start_matches('/');
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        Ok(Self {
            client,
            bucket,
            region,
            endpoint,
            prefix,
            checksum_when_required,
            #[cfg(feature = "testing")]
            started_uploads: Arc::default(),
        })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The underlying SDK client (for tooling and tests).
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The key prefix every object is stored under: empty, or ending in `/`.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// Ids of every multipart upload this store (and its clones) started, in order.
    #[cfg(feature = "testing")]
    pub fn started_uploads(&self) -> Vec<String> {
        self.started_uploads
            .lock()
            .map(|ids| ids.clone())
            .unwrap_or_default()
    }

    /// Creates the bucket if it does not exist (for `make run`, compose and tests; production
    /// buckets are usually provisioned separately).
    pub async fn ensure_bucket(&self) -> Result<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(err) => {
                let missing = err.as_service_error().is_some_and(|e| e.is_not_found())
                    || http_status(&err) == Some(404);
                if !missing {
                    return Err(backend_err("HeadBucket", &err));
                }
            }
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        if self.region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => {
                tracing::info!(bucket = %self.bucket, "created S3 bucket");
                Ok(())
            }
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(err) => Err(backend_err("CreateBucket", &err)),
        }
    }

    /// Size and ETag of an object (full key), or `None` when it does not exist.
    async fn head(&self, full_key: &str) -> Result<Option<(u64, Option<String>)>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(full_key)
            .send()
            .await
        {
            Ok(out) => {
                let size = out
                    .content_length()
                    .and_then(|l| u64::try_from(l).ok())
                    .ok_or_else(|| BlobError::Backend("HeadObject: no Content-Length".into()))?;
                Ok(Some((size, out.e_tag().map(str::to_owned))))
            }
            Err(err)
                if err.as_service_error().is_some_and(|e| e.is_not_found())
                    || http_status(&err) == Some(404) =>
            {
                Ok(None)
            }
            Err(err) => Err(backend_err("HeadObject", &err)),
        }
    }

    fn full_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }
}

#[cfg(test)]
mod tests;
