//! `perry-hub admin …` against a running hub: tables for people, `--json` for scripts, and the
//! hub's error code on failure.

use clap::Parser;
use perry_hub_tests::TestHub;
use serde_json::json;
use standalone::admin::{run, AdminArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    admin: AdminArgs,
}

fn args(hub: &TestHub, secret: &str, rest: &[&str]) -> AdminArgs {
    let mut argv = vec!["admin", "--url", &hub.base_url, "--admin-secret", secret];
    argv.extend_from_slice(rest);
    Cli::parse_from(argv).admin
}

#[tokio::test]
async fn the_admin_cli_lists_drains_cancels_and_reports_errors() {
    let hub = TestHub::start().await;
    let secret = hub.admin_secret();
    let (_, license) = hub.insert_license("pro").await;
    let job_id = hub.insert_job(license, "ios", 10, b"t", json!({})).await;
    let _worker = hub.worker("mac-mini-1", &["macos"], 2).await;

    let jobs = run(&args(&hub, &secret, &["jobs"])).await.unwrap();
    let mut lines = jobs.lines();
    assert!(lines.next().unwrap().starts_with("JOB"), "{jobs}");
    let row = lines.next().unwrap();
    assert!(
        row.contains(&job_id) && row.contains("queued") && row.contains("ios"),
        "{jobs}"
    );

    let as_json = run(&args(
        &hub,
        &secret,
        &["--json", "jobs", "--state", "queued"],
    ))
    .await
    .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&as_json).unwrap();
    assert_eq!(parsed["jobs"][0]["job_id"], job_id.as_str());

    let queues = run(&args(&hub, &secret, &["queues"])).await.unwrap();
    let ios = queues
        .lines()
        .find(|l| l.starts_with("ios "))
        .expect("ios row");
    assert_eq!(ios.split_whitespace().nth(1), Some("1"), "{queues}");

    let drained = run(&args(&hub, &secret, &["drain", "mac-mini-1"]))
        .await
        .unwrap();
    assert!(drained.starts_with("mac-mini-1: drained"), "{drained}");
    let workers = run(&args(&hub, &secret, &["workers"])).await.unwrap();
    assert!(workers.contains("drained: mac-mini-1"), "{workers}");

    let cancelled = run(&args(&hub, &secret, &["cancel", &job_id]))
        .await
        .unwrap();
    assert_eq!(cancelled, format!("{job_id}: cancelled (now cancelled)\n"));
    let detail = run(&args(&hub, &secret, &["job", &job_id])).await.unwrap();
    assert!(detail.contains("state: cancelled"), "{detail}");

    // The hub's error code reaches the operator; a wrong secret is refused.
    let again = run(&args(&hub, &secret, &["cancel", &job_id]))
        .await
        .unwrap_err();
    assert!(again.to_string().starts_with("CONFLICT (409)"), "{again}");
    let denied = run(&args(&hub, "not-the-admin-secret", &["workers"]))
        .await
        .unwrap_err();
    assert!(
        denied.to_string().starts_with("FORBIDDEN (403)"),
        "{denied}"
    );
    let unset = run(&args(&hub, "", &["workers"])).await.unwrap_err();
    assert!(
        unset.to_string().contains("PERRY_HUB_ADMIN_SECRET"),
        "{unset}"
    );
    hub.stop().await;
}
