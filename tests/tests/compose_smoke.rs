//! One build through a running stack, from outside, as the CLI and a worker see it: the
//! compose smoke test (`make compose-smoke`, scripts/compose-smoke.sh) starts the stack and runs
//! this with the proxy's address. Ignored in ordinary runs.
//!
//! - `PERRY_SMOKE_URL`: the public origin (the proxy), e.g. `http://127.0.0.1:27466`.
//! - `PERRY_SMOKE_WORKER_SECRET`: the stack's worker secret.
//! - `PERRY_SMOKE_RESTART`: a shell command run while the worker holds the job (it restarts a
//!   service container); the build must still finish.

use std::time::{Duration, Instant};

use base64::Engine as _;
use perry_hub_tests::{
    api::{cli_form, manifest},
    sha256_hex, FakeWorker, WsClient,
};
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(120);

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} must be set (see scripts/compose-smoke.sh)"))
}

/// Poll `GET /api/v1/status` through the proxy until it answers 200.
async fn wait_until_served(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = http.get(format!("{base}/api/v1/status")).send().await;
        if status.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never answered /api/v1/status"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn json_reply(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
#[ignore = "needs a running stack: make compose-smoke"]
async fn a_build_goes_through_the_proxy_while_a_service_restarts() {
    let base = env("PERRY_SMOKE_URL");
    let secret = env("PERRY_SMOKE_WORKER_SECRET");
    let restart = std::env::var("PERRY_SMOKE_RESTART").unwrap_or_default();
    let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("client");
    wait_until_served(&http, &base).await;

    // A worker on /ws, then a free licence and a build submitted as the CLI does (multipart,
    // base64 tarball).
    let name = format!("smoke-{}", uuid::Uuid::new_v4().simple());
    let mut worker = FakeWorker::connect(
        &ws_url,
        json!({"type":"worker_hello","name":name,"secret":secret,
        "capabilities":["linux"],"max_concurrent":1,"perry_version":"0.5.0"}),
    )
    .await;
    let (status, body) = json_reply(
        http.post(format!("{base}/api/v1/license/register"))
            .json(&json!({}))
            .send()
            .await
            .expect("register"),
    )
    .await;
    assert_eq!(status, 200, "register: {body}");
    let key = body["license_key"]
        .as_str()
        .expect("license_key")
        .to_owned();
    let tarball = b"compose smoke tarball".repeat(1000);
    let form = cli_form(
        &manifest("linux", "com.example.smoke"),
        &json!({}),
        &tarball,
        &key,
    );
    let (status, body) = json_reply(
        http.post(format!("{base}/api/v1/build"))
            .header(
                "content-type",
                format!(
                    "multipart/form-data; boundary={}",
                    perry_hub_tests::api::BOUNDARY
                ),
            )
            .body(form)
            .send()
            .await
            .expect("submit"),
    )
    .await;
    assert_eq!(status, 200, "submit: {body}");
    let job_id = body["job_id"].as_str().expect("job_id").to_owned();
    let mut cli = WsClient::connect(&ws_url).await;
    cli.send(json!({"type":"subscribe","job_id":job_id})).await;

    let assign = worker.assignment().await;
    assert_eq!(assign["job_id"], job_id.as_str());
    let auth = format!(
        "Bearer {}",
        assign["auth_token"].as_str().expect("auth_token")
    );

    // Mid-flow: a service container restarts while the worker holds the job.
    if !restart.is_empty() {
        let started = Instant::now();
        let ok = tokio::process::Command::new("sh")
            .args(["-c", &restart])
            .status()
            .await
            .expect("restart command");
        assert!(ok.success(), "{restart}");
        wait_until_served(&http, &base).await;
        eprintln!("restarted ({restart}) in {:?}", started.elapsed());
    }

    // The worker's HTTP half: tarball through the download service, artifact to ingest.
    let fetched = http
        .get(format!("{base}/api/v1/tarball/{job_id}"))
        .header("authorization", &auth)
        .send()
        .await
        .expect("tarball");
    assert_eq!(fetched.status(), 200);
    // Served base64-encoded, as workers expect it.
    let body = fetched.text().await.expect("tarball body");
    let fetched = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .expect("base64 tarball");
    assert_eq!(fetched, tarball);
    let artifact: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let sha256 = sha256_hex(&artifact);
    let (status, body) = json_reply(
        http.post(format!("{base}/api/v1/artifact/upload/{job_id}"))
            .header("authorization", &auth)
            .header("content-type", "text/plain")
            .header("x-artifact-name", "app-linux.tar.gz")
            .header("x-artifact-sha256", &sha256)
            .header("x-artifact-target", "linux")
            .body(base64::engine::general_purpose::STANDARD.encode(&artifact))
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_eq!(status, 200, "upload: {body}");
    worker
        .send(json!({"type":"complete","job_id":job_id,"success":true,"duration_secs":0.1,
            "needs_finishing":null,"artifacts":[{"name":"app-linux.tar.gz","size":artifact.len(),"sha256":sha256}]}))
        .await;

    // The CLI's half: artifact_ready, complete, then the single-use link through the proxy.
    let mut link = None;
    loop {
        let frame = cli.recv().await.expect("CLI socket closed before complete");
        match frame["type"].as_str() {
            Some("artifact_ready") => link = frame["download_url"].as_str().map(str::to_owned),
            Some("complete") => {
                assert_eq!(frame["success"], true, "{frame}");
                break;
            }
            Some("error") => panic!("build failed: {frame}"),
            _ => {}
        }
    }
    let link = link.expect("artifact_ready with a download_url");
    let got = http.get(&link).send().await.expect("download");
    assert_eq!(got.status(), 200, "download {link}");
    let text = got.text().await.expect("download body");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .expect("base64 artifact");
    assert_eq!(sha256_hex(&bytes), sha256, "artifact SHA-256");
    // Single use: the same link again is refused.
    assert_eq!(http.get(&link).send().await.expect("again").status(), 404);
    cli.close().await;
    println!(
        "compose smoke: job {job_id} built, downloaded and verified ({} bytes)",
        bytes.len()
    );
}
