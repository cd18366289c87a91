//! Download service scenarios: single-use artifact links (`/api/v1/dl`) and worker tarball
//! fetches (`/api/v1/tarball`) against real MariaDB and the S3 store (plus the filesystem
//! store where it differs). Artifacts and tokens are inserted directly, as ingest and the
//! dispatcher would, so these tests depend on nothing but the download service.

mod alone;
mod attempts;
mod failures;
mod lapse;
mod links;
mod single_use;
mod stores;
mod support;
mod tarballs;
