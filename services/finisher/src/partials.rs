//! Partial uploads a killed process left in the blob store (DEC-31): a step of the retention
//! sweep, so it runs under the `retention` lock in whichever finisher replica holds it.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use blob::BlobError;

use crate::AppState;

/// Whether this process already said that its store cannot list partial uploads.
static UNSUPPORTED_LOGGED: AtomicBool = AtomicBool::new(false);

/// Remove the partial uploads abandoned for `PERRY_FINISHER_PARTIAL_UPLOAD_AGE_SECS`; how many.
/// Never fails the retention round: an error is logged and the next round tries again.
pub async fn sweep(ctx: &AppState) -> u64 {
    let age = Duration::from_secs(ctx.settings.partial_upload_age_secs);
    match ctx.deps.blob.sweep_partial_uploads(age).await {
        Ok(removed) => {
            if removed > 0 {
                tracing::info!(removed, "removed abandoned partial uploads");
            }
            removed
        }
        Err(BlobError::Unsupported(operation)) => {
            if !UNSUPPORTED_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    operation,
                    "the S3 server cannot list multipart uploads: abandoned ones are not removed \
                     by the hub; give the bucket a lifecycle rule AbortIncompleteMultipartUpload"
                );
            }
            0
        }
        Err(error) => {
            tracing::warn!(%error, "could not sweep partial uploads; retrying next round");
            0
        }
    }
}
