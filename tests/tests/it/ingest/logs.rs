//! No secret, licence key, token or credential ever reaches the logs (D3, D9, D11).

use perry_hub_tests::TestHub;
use serde_json::json;

use super::support::{b64, cli_form, manifest};

#[tokio::test]
async fn a_full_submission_and_upload_log_no_secret() {
    // Installed before the hub starts, at TRACE, so everything every layer logs is captured.
    let logs = shared::testing::capture_logs();
    let hub = TestHub::start().await;
    let (admin_secret, worker_secret) = (hub.admin_secret(), hub.worker_secret());
    let admin = format!("Bearer {admin_secret}");
    let key = hub.registered_license().await;
    let created = hub
        .create_account(
            &json!({"github_id": 8, "github_username": "logcheck"}),
            &[("authorization", &admin)],
        )
        .await;
    let api_token = created.1["api_token"].as_str().expect("token").to_owned();
    let credentials = json!({"apple_p8_key": "P8-KEY-MATERIAL-0xC0FFEE", "android_keystore_password": "keystore-pass-5150"});
    let (status, body) = hub
        .submit_build(
            cli_form(
                &manifest("linux", "com.example.logs"),
                &credentials,
                b"tarball",
                &key,
            ),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let job_id = body["job_id"].as_str().expect("job").to_owned();
    let (status, _) = hub
        .submit_build(
            cli_form(
                &manifest("android", "com.example.logs2"),
                &credentials,
                b"t",
                "",
            ),
            &[("authorization", &format!("Bearer {api_token}"))],
        )
        .await;
    assert_eq!(status, 200);
    let verify = hub.verify_license(&json!({"license_key": key}), &[]).await;
    assert_eq!(verify.1["valid"], true);
    // Assign the job as a dispatcher would, without a WebSocket: the frame dumps of the
    // WebSocket library at TRACE (ours and the fake worker's, in this process) are the
    // dispatcher's concern; this test is about what ingest logs.
    let (job_token, token_hash) = shared::auth::new_token();
    sqlx::query("UPDATE jobs SET state = 'assigned', attempt = 1, token_hash = ? WHERE id = ?")
        .bind(&token_hash[..])
        .bind(&job_id)
        .execute(hub.pool())
        .await
        .expect("assign");
    let up = hub
        .upload_artifact(
            &job_id,
            "text/plain",
            b64(b"artifact").into_bytes(),
            &[("authorization", &format!("Bearer {job_token}"))],
        )
        .await;
    assert_eq!(up.0, 200, "{}", up.1);
    let download_token = up.1["token"].as_str().expect("download token").to_owned();
    let refused = hub
        .submit_build(
            cli_form(
                &manifest("linux", "com.example.other"),
                &credentials,
                b"t",
                &key,
            ),
            &[],
        )
        .await;
    assert_eq!(refused.0, 403);
    hub.stop().await;

    let captured = String::from_utf8_lossy(&logs.lock().expect("log buffer")).into_owned();
    assert!(
        captured.contains(&job_id),
        "the capture works: the job id is logged"
    );
    let secrets = [
        ("licence key", key.as_str()),
        ("API token", api_token.as_str()),
        ("job token", job_token.as_str()),
        ("download token", download_token.as_str()),
        ("apple_p8_key", "P8-KEY-MATERIAL-0xC0FFEE"),
        ("keystore password", "keystore-pass-5150"),
        ("admin secret", admin_secret.as_str()),
        ("worker secret", worker_secret.as_str()),
    ];
    for (what, secret) in secrets {
        let leaks: Vec<String> = captured
            .lines()
            .filter(|l| l.contains(secret))
            .map(|l| l.replace(secret, "<SECRET>").chars().take(300).collect())
            .collect();
        assert!(
            leaks.is_empty(),
            "the {what} appears in the logs:\n{}",
            leaks.join("\n")
        );
    }
}
