//! A cold two-stage Windows build against [`FakeAzure`]: stage 1 on a Linux builder for a given
//! time, then stage 2 on the sign worker of the VM, which connects once the fake VM has booted.
//! Used by the prewarm scenarios and by `make bench` (`PERRY_BENCH=windows`).

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::{fake_azure::FakeAzure, TestHub};

/// Timings of one cold build, from the submission.
#[derive(Debug, Clone, Copy)]
pub struct ColdBuild {
    /// The first VM start request.
    pub vm_start: Option<Duration>,
    /// Stage 1's `complete`.
    pub stage_one: Duration,
    /// The VM's sign worker connected (the VM is up).
    pub vm_up: Duration,
    /// The job completed with its signed artifact.
    pub signed: Duration,
}

/// Submit a Windows build while the VM is deallocated and follow it to its signed artifact:
/// the Linux builder takes `cross_compile` for stage 1; the sign worker connects when `azure`
/// reports the VM up (give `azure` its boot time with [`FakeAzure::set_boot`]). Waits at most
/// `limit` for the VM.
pub async fn cold_build(
    hub: &TestHub,
    azure: &FakeAzure,
    cross_compile: Duration,
    limit: Duration,
) -> ColdBuild {
    let (_, license) = hub.insert_license("pro").await;
    let submitted = Instant::now();
    let job = hub
        .insert_job(license, "windows", 10, b"stage one source", json!({}))
        .await;
    let mut builder = hub.worker("linux-1", &["windows"], 1).await;
    assert_eq!(builder.assignment().await["job_id"], job.as_str());
    tokio::time::sleep(cross_compile).await;
    hub.insert_artifact(&job, "bundle.tar.gz", "windows-precompiled", b"bundle")
        .await;
    builder
        .send(json!({"type": "complete", "job_id": job, "success": true, "duration_secs": 1.0, "needs_finishing": "windows", "artifacts": []}))
        .await;
    let stage_one = submitted.elapsed();

    let deadline = Instant::now() + limit;
    while !azure.is_up() {
        assert!(Instant::now() < deadline, "the signing VM never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut signer = hub.worker("sign-1", &["windows-sign"], 1).await;
    let vm_up = submitted.elapsed();
    assert_eq!(signer.assignment().await["job_id"], job.as_str());
    let signed = b"signed installer".to_vec();
    hub.insert_artifact(&job, "app-setup.exe", "windows", &signed)
        .await;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&signed));
    signer
        .send(
            json!({"type": "complete", "job_id": job, "success": true, "duration_secs": 1.0,
            "artifacts": [{"name": "app-setup.exe", "size": signed.len(), "sha256": sha}]}),
        )
        .await;
    hub.wait_state(&job, "completed").await;
    ColdBuild {
        vm_start: azure
            .vm_call_times("start")
            .first()
            .map(|at| at.saturating_duration_since(submitted)),
        stage_one,
        vm_up,
        signed: submitted.elapsed(),
    }
}
