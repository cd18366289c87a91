//! The prewarm of the signing VM (DEC-15): a Windows build's stage 1 being assigned starts the
//! VM, once, so its boot overlaps the cross-compile; a failed stage 1 lets it idle out.

use std::time::Duration;

use super::support::*;
use perry_hub_tests::{fake_azure::FakeAzure, windows::cold_build, HubOptions, TestHub};
use serde_json::json;

const BOOT: Duration = Duration::from_secs(2);
const CROSS_COMPILE: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_windows_build_starts_the_vm_during_stage_one_exactly_once_across_two_finishers() {
    let azure = FakeAzure::start(3600).await;
    azure.set_boot(BOOT);
    let hub = hub_with(&azure.args()).await;
    let replica = TestHub::start_with(HubOptions {
        replica_of: Some((
            hub.db().config.clone(),
            hub.amqp.clone(),
            hub.blob_config.clone(),
        )),
        finisher: Some(settings(&azure.args())),
        ..HubOptions::default()
    })
    .await;

    let build = cold_build(&hub, &azure, CROSS_COMPILE, Duration::from_secs(30)).await;

    eprintln!("prewarm on: {build:?}");
    let start = build.vm_start.expect("the VM was started");
    assert!(start < build.stage_one, "started during stage 1: {build:?}");
    assert!(
        build.vm_up <= build.stage_one + Duration::from_millis(500),
        "the VM was up when stage 1 ended: {build:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(azure.vm_calls("start"), 1, "one start, for stage 1");
    assert_eq!(azure.vm_calls("deallocate"), 0);
    assert_eq!(azure.problems(), Vec::<String>::new());
    replica.stop().await;
    hub.stop().await;
}

#[tokio::test]
async fn without_the_prewarm_the_vm_starts_only_when_the_signing_stage_is_queued() {
    let azure = FakeAzure::start(3600).await;
    azure.set_boot(BOOT);
    let mut extra = azure.args();
    extra.extend(flags(&["--azure-prewarm", "false"]));
    let hub = hub_with(&extra).await;

    let build = cold_build(&hub, &azure, CROSS_COMPILE, Duration::from_secs(30)).await;

    eprintln!("prewarm off: {build:?}");
    assert!(
        build.vm_start.expect("the VM was started") >= build.stage_one,
        "{build:?}"
    );
    assert!(build.vm_up >= build.stage_one + BOOT, "{build:?}");
    assert_eq!(azure.vm_calls("start"), 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_queued_windows_build_waits_and_a_failed_stage_one_lets_the_vm_idle_out() {
    let azure = FakeAzure::start(3600).await;
    let mut extra = azure.args();
    extra.extend(flags(&["--azure-idle-secs", "2"]));
    let hub = hub_with(&extra).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "windows", 10, b"src", json!({}))
        .await;

    // Queued without a Linux builder: not yet (the moment is the assignment).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(azure.vm_calls("start"), 0);
    let mut builder = hub.worker("linux-1", &["windows"], 1).await;
    builder.assignment().await;
    eventually("the VM start", || async { azure.vm_calls("start") == 1 }).await;

    builder.send(json!({"type":"error","job_id":job,"code":"INTERNAL_ERROR","message":"Compilation failed"})).await;
    builder.send(json!({"type":"complete","job_id":job,"success":false,"duration_secs":1.0,"artifacts":[]})).await;
    hub.wait_state(&job, "failed").await;
    eventually("the VM to be deallocated", || async {
        vm_row(&hub).await.0 == "deallocated"
    })
    .await;
    let finished = scalar_i64(&hub, "SELECT finished_ms FROM jobs WHERE id = ?", &job).await;
    let stopped = vm_row(&hub).await.3.expect("last_stop_ms");
    assert!(
        stopped - finished >= 1000,
        "deallocated {} ms after stage 1 failed",
        stopped - finished
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(azure.vm_calls("start"), 1, "not started again");
    assert_eq!(azure.vm_calls("deallocate"), 1);
    assert_eq!(azure.problems(), Vec::<String>::new());
    hub.stop().await;
}
