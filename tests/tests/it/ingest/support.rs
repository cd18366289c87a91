//! Helpers of the ingest scenarios: snapshots of everything a request could leave behind, and
//! hubs with adjusted ingest settings. Request bodies and the typed client live in the harness
//! (`perry_hub_tests::api`).

use perry_hub_tests::{HubOptions, TestHub};

pub use perry_hub_tests::api::{assert_error, b64, cli_form, manifest, multipart, BOUNDARY};

/// A hub with adjusted ingest settings.
pub async fn hub_with(adjust: impl FnOnce(&mut ingest::Settings)) -> TestHub {
    let mut settings = perry_hub_tests::ingest_settings();
    adjust(&mut settings);
    TestHub::start_with(HubOptions {
        ingest: Some(settings),
        ..HubOptions::default()
    })
    .await
}

/// Everything a request could leave behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftovers {
    pub jobs: i64,
    pub outbox: i64,
    pub artifacts: i64,
    pub events: i64,
    pub rate_events: i64,
    pub download_tokens: i64,
    pub bound: i64,
    pub blobs: Vec<String>,
}

/// Snapshot of [`Leftovers`].
pub async fn leftovers(hub: &TestHub) -> Leftovers {
    let db = hub.db();
    Leftovers {
        jobs: db.count("jobs", "").await,
        outbox: db.count("outbox", "").await,
        artifacts: db.count("artifacts", "").await,
        events: db.count("job_events", "").await,
        rate_events: db.count("rate_events", "bucket LIKE 'build:%'").await,
        download_tokens: db.count("download_tokens", "").await,
        bound: db.count("licenses", "bound_project IS NOT NULL").await,
        blobs: hub.deps.blob.list("").await.expect("list blobs"),
    }
}
