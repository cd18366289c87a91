//! Least privilege for workers (DEC-25): individual secrets bound to capabilities, and each
//! job sent only the credentials its target uses.

use perry_hub_tests::{
    attacks::{self, Attack},
    FakeWorker, HubOptions, TestHub,
};
use serde_json::{json, Value};
use shared::config::WorkerSecrets;

const LINUX_SECRET: &str = "linux-box-secret-0123456789";
const MAC_SECRET: &str = "mac-box-secret-0123456789";

async fn hub() -> TestHub {
    let secrets: WorkerSecrets =
        format!("linux-box:{LINUX_SECRET}:linux,android;mac-box:{MAC_SECRET}:ios-sign,macos-sign")
            .parse()
            .expect("secrets");
    TestHub::start_with(HubOptions {
        no_finisher: true,
        hub: Some(Box::new(move |h| h.worker_secrets = secrets)),
        ..HubOptions::default()
    })
    .await
}

async fn connect(hub: &TestHub, name: &str, secret: &str, caps: &[&str]) -> FakeWorker {
    FakeWorker::connect(
        &hub.ws_url(),
        json!({"type":"worker_hello","name":name,"secret":secret,"capabilities":caps,"max_concurrent":1}),
    )
    .await
}

/// Every signing secret the CLI may send.
fn all_credentials() -> Value {
    json!({
        "apple_team_id": "TEAM", "apple_p8_key": "apple-p8-private-key",
        "provisioning_profile_base64": "cHJvZmlsZQ==",
        "android_keystore_base64": "a2V5c3RvcmU=", "android_keystore_password": "ks-pass",
        "google_play_service_account_json": "{\"client_email\":\"x\"}",
        "windows_pfx_base64": "cGZ4", "windows_pfx_password": "pfx-pass",
        "azure_client_secret": "azure-secret"
    })
}

#[tokio::test]
async fn a_build_box_secret_cannot_claim_signing_and_jobs_carry_only_their_credentials() {
    let logs = shared::testing::capture_logs();
    let hub = hub().await;
    let before = attacks::baseline(&hub).await;
    let (_, license) = hub.insert_license("pro").await;
    // The build box's secret, leaked, tries to take signing jobs: refused and closed.
    let mut evil = connect(&hub, "linux-box", LINUX_SECRET, &["linux", "ios-sign"]).await;
    let err = evil.ws.recv().await.expect("error frame");
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("AUTH_FAILED"))
    );
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("ios-sign")),
        "{err}"
    );
    let (code, _) = evil.ws.closed().await.expect("close frame");
    assert_eq!(code, 1008);
    // Within its capabilities it works, and a Linux job carries only Android and Play fields.
    let linux_job = hub
        .insert_job(license, "linux", 10, b"t", all_credentials())
        .await;
    let mut linux = connect(&hub, "linux-box", LINUX_SECRET, &["linux", "android"]).await;
    let assign = linux.assignment().await;
    assert_eq!(assign["job_id"], linux_job.as_str());
    assert_eq!(
        assign["credentials"],
        json!({"android_keystore_base64": "a2V5c3RvcmU=", "android_keystore_password": "ks-pass",
               "google_play_service_account_json": "{\"client_email\":\"x\"}"})
    );
    // The signing box gets the Apple fields of an ios-sign job, and nothing else.
    let sign_job = hub
        .insert_job(license, "ios-sign", 10, b"t", all_credentials())
        .await;
    let mut mac = connect(&hub, "mac-box", MAC_SECRET, &["ios-sign"]).await;
    let assign = mac.assignment().await;
    assert_eq!(assign["job_id"], sign_job.as_str());
    assert_eq!(
        assign["credentials"],
        json!({"apple_team_id": "TEAM", "apple_p8_key": "apple-p8-private-key",
               "provisioning_profile_base64": "cHJvZmlsZQ=="})
    );
    // The shared secret keeps working.
    let shared_worker = hub.worker("old-style", &["windows"], 1).await;
    drop(shared_worker);
    let text = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    for secret in [LINUX_SECRET, MAC_SECRET, "apple-p8-private-key", "pfx-pass"] {
        // tungstenite's own TRACE lines print whole frames (the test's client and the hub's
        // socket alike); only an operator enabling TRACE for that crate sees them.
        let line = text
            .lines()
            .find(|l| l.contains(secret) && !l.contains("tungstenite::"));
        assert!(line.is_none(), "{secret} was logged: {line:?}");
    }
    attacks::record(
        &Attack {
            slug: "worker-secret-escalation",
            request: "`worker_hello` with the Linux build box's own secret claiming `ios-sign`",
            limit: "`PERRY_HUB_WORKER_SECRETS` (`name:secret:linux,android`)",
            response: "`error AUTH_FAILED` \"…does not allow the capability 'ios-sign'\", close 1008; a `linux` job_assign carries only `android_*`/`google_play_*` fields; no secret in the logs (the test keeps every TRACE line in memory to check)",
        },
        before,
    );
    hub.stop().await;
}
