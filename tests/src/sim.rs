//! Simulated actors that run whole builds over the real endpoints, for load scenarios and the
//! benchmark: a worker that serves its slots (fetches the tarball, uploads one artifact,
//! completes), a CLI that submits, follows and downloads, and a log stream whose lines carry
//! their send time so the receiving side can measure latency.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    api::{b64, cli_form, manifest, typed},
    FakeWorker, TestHub, WsClient,
};

/// Project of the builds submitted here (one, so a device-bound key stays bound to it).
pub const BUNDLE_ID: &str = "com.example.sim";

impl TestHub {
    /// Submit a linux build through `POST /api/v1/build` as the CLI does; its job id.
    pub async fn submit_linux_build(&self, license_key: &str) -> String {
        let form = cli_form(
            &manifest("linux", BUNDLE_ID),
            &json!({}),
            b"sim-tarball",
            license_key,
        );
        typed::<protocol::BuildResponse>(&self.submit_build(form, &[]).await).job_id
    }
}

/// Do the HTTP part of an assigned build as builder-linux does: fetch the tarball, upload
/// `artifact`; returns the `complete` frame to send.
pub async fn run_assigned_build(hub: &TestHub, assign: &Value, artifact: &[u8]) -> Value {
    let job_id = assign["job_id"].as_str().expect("job_id");
    let auth = format!("Bearer {}", assign["auth_token"].as_str().expect("token"));
    let tarball = hub.fetch_tarball(job_id, &[("authorization", &auth)]).await;
    assert_eq!(tarball.status(), 200, "tarball of {job_id}");
    let _ = tarball.bytes().await;
    let sha256 = hex::encode(Sha256::digest(artifact));
    let name = "app-linux.tar.gz";
    let up = hub
        .upload_artifact(
            job_id,
            "text/plain",
            b64(artifact).into_bytes(),
            &[
                ("authorization", &auth),
                ("x-artifact-name", name),
                ("x-artifact-sha256", &sha256),
                ("x-artifact-target", "linux"),
            ],
        )
        .await;
    assert_eq!(up.0, 200, "upload of {job_id}: {}", up.1);
    json!({"type":"complete","job_id":job_id,"success":true,"duration_secs":0.1,
        "needs_finishing":null,"artifacts":[{"name":name,"size":artifact.len(),"sha256":sha256}]})
}

/// Connect a linux worker with `slots` slots that builds every job it is given (see
/// [`run_assigned_build`]), until the socket closes or the task is aborted.
pub async fn spawn_building_worker(
    hub: Arc<TestHub>,
    name: &str,
    slots: u32,
    artifact: &'static [u8],
) -> JoinHandle<()> {
    let mut worker = hub.worker(name, &["linux"], slots).await;
    tokio::spawn(async move {
        let (done_tx, mut done) = mpsc::unbounded_channel::<Value>();
        loop {
            tokio::select! {
                frame = worker.ws.recv_within(Duration::from_secs(24 * 3600)) => {
                    let Ok(Some(frame)) = frame else { return };
                    if frame["type"] != "job_assign" {
                        continue;
                    }
                    let (hub, done_tx) = (hub.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let _ = done_tx.send(run_assigned_build(&hub, &frame, artifact).await);
                    });
                }
                Some(complete) = done.recv() => worker.send(complete).await,
            }
        }
    })
}

/// What a simulated CLI saw of one build.
#[derive(Debug)]
pub struct CliBuild {
    /// The job.
    pub job_id: String,
    /// The `complete` frame's `success`.
    pub success: bool,
    /// Bytes of the downloaded artifact (decoded), or None without `artifact_ready`.
    pub artifact: Option<Vec<u8>>,
}

/// One build as the CLI runs it: submit, subscribe, wait for `complete`, download the last
/// `artifact_ready`'s link.
pub async fn cli_build(hub: &TestHub, license_key: &str) -> CliBuild {
    let job_id = hub.submit_linux_build(license_key).await;
    let mut cli = hub.cli(&job_id).await;
    let mut ready = None;
    let success = loop {
        let f = cli.recv().await.expect("socket closed before complete");
        match f["type"].as_str() {
            Some("artifact_ready") => ready = Some(f),
            Some("complete") => break f["success"] == true,
            Some("error") => panic!("build {job_id} failed: {f}"),
            _ => {}
        }
    };
    cli.close().await;
    let mut artifact = None;
    if let Some(url) = ready.as_ref().and_then(|r| r["download_url"].as_str()) {
        let resp = hub.http.get(url).send().await.expect("download");
        assert_eq!(resp.status(), 200, "download of {job_id}");
        let text = resp.text().await.expect("download body");
        let decoded = base64::engine::general_purpose::STANDARD.decode(text.trim());
        artifact = Some(decoded.expect("base64 artifact"));
    }
    CliBuild {
        job_id,
        success,
        artifact,
    }
}

/// A `log` frame numbered `seq`, stamped with the time since `base`.
pub fn stamped_log(job_id: &str, seq: usize, base: Instant) -> Value {
    let line = format!("seq={seq} t={}", base.elapsed().as_nanos());
    json!({"type":"log","job_id":job_id,"stage":"compiling","line":line,"stream":"stdout"})
}

/// Send `n` stamped log lines for `job_id`, as fast as the socket takes them, or paced at
/// `every` between lines.
pub async fn send_logs(
    worker: &mut FakeWorker,
    job_id: &str,
    n: usize,
    every: Option<Duration>,
    base: Instant,
) {
    for seq in 0..n {
        worker.send(stamped_log(job_id, seq, base)).await;
        if let Some(every) = every {
            tokio::time::sleep(every).await;
        }
    }
}

/// The stamped log lines one CLI received.
#[derive(Debug, Default)]
pub struct LogTally {
    /// Sequence numbers in arrival order.
    pub seqs: Vec<usize>,
    /// Send-to-receive latency of each line, in arrival order.
    pub latencies: Vec<Duration>,
    /// When the first line was sent and the last received (since the base).
    pub span: Option<(Duration, Duration)>,
}

/// Receive stamped log lines until `n` arrived, `complete` came, the socket closed or
/// `deadline` passed.
pub async fn receive_logs(
    cli: &mut WsClient,
    n: usize,
    deadline: Duration,
    base: Instant,
) -> LogTally {
    let mut tally = LogTally::default();
    let mut first_sent = None;
    while tally.seqs.len() < n {
        let left = deadline.saturating_sub(base.elapsed());
        let Ok(Some(f)) = cli.recv_within(left).await else {
            break;
        };
        if f["type"] == "complete" {
            break;
        }
        let Some((seq, sent)) = f["line"].as_str().and_then(parse_stamp) else {
            continue;
        };
        let now = base.elapsed();
        first_sent = Some(first_sent.map_or(sent, |s: Duration| s.min(sent)));
        tally.seqs.push(seq);
        tally.latencies.push(now.saturating_sub(sent));
        tally.span = first_sent.map(|s| (s, now));
    }
    tally
}

fn parse_stamp(line: &str) -> Option<(usize, Duration)> {
    let (seq, t) = line.strip_prefix("seq=")?.split_once(" t=")?;
    Some((seq.parse().ok()?, Duration::from_nanos(t.parse().ok()?)))
}
