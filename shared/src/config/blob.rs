//! The blob store fragment (filesystem or S3) and the store it builds.

use std::path::PathBuf;

use clap::Args;

use super::{parse_bool_flag, ConfigError, Secret};

/// Which blob store holds tarballs and artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BlobBackend {
    /// A directory on local disk (one machine).
    Fs,
    /// Any S3-compatible object store.
    S3,
}

/// Blob store settings.
#[derive(Debug, Clone, Args)]
pub struct BlobConfig {
    /// Blob backend: `fs` or `s3`.
    #[arg(
        id = "blob-backend",
        long = "blob-backend",
        env = "PERRY_BLOB_BACKEND",
        value_enum,
        default_value = "fs"
    )]
    pub backend: BlobBackend,
    /// Root directory of the filesystem store.
    #[arg(
        id = "blob-dir",
        long = "blob-dir",
        env = "PERRY_BLOB_DIR",
        default_value = "./data/blobs"
    )]
    pub dir: PathBuf,
    /// S3 bucket.
    #[arg(
        id = "s3-bucket",
        long = "s3-bucket",
        env = "PERRY_S3_BUCKET",
        default_value = ""
    )]
    pub s3_bucket: String,
    /// S3 endpoint for non-AWS stores (path-style addressing is used when set).
    #[arg(id = "s3-endpoint", long = "s3-endpoint", env = "PERRY_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(
        id = "s3-region",
        long = "s3-region",
        env = "PERRY_S3_REGION",
        default_value = "us-east-1"
    )]
    pub s3_region: String,
    /// S3 access key id. Leave both keys empty to use the standard AWS credential chain
    /// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, web identity on EKS, the instance role).
    #[arg(
        id = "s3-access-key-id",
        long = "s3-access-key-id",
        env = "PERRY_S3_ACCESS_KEY_ID",
        default_value = ""
    )]
    pub s3_access_key_id: String,
    /// S3 secret access key.
    #[arg(
        id = "s3-secret-access-key",
        long = "s3-secret-access-key",
        env = "PERRY_S3_SECRET_ACCESS_KEY",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub s3_secret_access_key: Secret,
    /// Prefix for every object key.
    #[arg(
        id = "s3-key-prefix",
        long = "s3-key-prefix",
        env = "PERRY_S3_KEY_PREFIX",
        default_value = ""
    )]
    pub s3_key_prefix: String,
    /// Only send/verify checksums when the API requires them (for stores that reject
    /// aws-chunked uploads).
    #[arg(id = "s3-checksum-when-required", long = "s3-checksum-when-required", env = "PERRY_S3_CHECKSUM_WHEN_REQUIRED", value_parser = parse_bool_flag, action = clap::ArgAction::Set, default_value = "false")]
    pub s3_checksum_when_required: bool,
    /// Answer raw artifact downloads with a redirect to a presigned S3 URL instead of proxying.
    #[arg(id = "s3-presign-downloads", long = "s3-presign-downloads", env = "PERRY_S3_PRESIGN_DOWNLOADS", value_parser = parse_bool_flag, action = clap::ArgAction::Set, default_value = "false")]
    pub s3_presign_downloads: bool,
}

impl BlobConfig {
    /// Check the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backend == BlobBackend::S3 {
            if self.s3_bucket.is_empty() {
                return Err(ConfigError::new(
                    "PERRY_S3_BUCKET",
                    "required with PERRY_BLOB_BACKEND=s3",
                ));
            }
            // Both keys, or neither (then the standard AWS credential chain applies).
            if self.s3_access_key_id.is_empty() != self.s3_secret_access_key.is_empty() {
                return Err(ConfigError::new(
                    "PERRY_S3_ACCESS_KEY_ID",
                    "set both PERRY_S3_ACCESS_KEY_ID and PERRY_S3_SECRET_ACCESS_KEY, or neither to use the AWS credential chain (AWS_* variables, web identity, instance role)",
                ));
            }
        }
        Ok(())
    }

    /// Build the configured store.
    pub async fn build(&self) -> anyhow::Result<std::sync::Arc<dyn blob::BlobStore>> {
        use anyhow::Context;
        Ok(match self.backend {
            BlobBackend::Fs => std::sync::Arc::new(
                blob::FsBlobStore::new(self.dir.clone())
                    .with_context(|| format!("opening blob directory {}", self.dir.display()))?,
            ),
            BlobBackend::S3 => std::sync::Arc::new(
                blob::S3BlobStore::from_settings(blob::S3Settings {
                    bucket: self.s3_bucket.clone(),
                    endpoint: self.s3_endpoint.clone(),
                    region: self.s3_region.clone(),
                    access_key_id: self.s3_access_key_id.clone(),
                    secret_access_key: self.s3_secret_access_key.expose().to_owned(),
                    key_prefix: self.s3_key_prefix.clone(),
                    checksum_when_required: self.s3_checksum_when_required,
                })
                .await
                .context("configuring the S3 client")?,
            ),
        })
    }
}
