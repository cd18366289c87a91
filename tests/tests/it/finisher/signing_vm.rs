//! The Azure signing VM: starts, retries, deallocation and token caching against a fake Azure.

use std::time::Duration;

use super::support::*;
use finisher::vm::{Plan, VmController};
use perry_hub_tests::{
    fake_azure::{FakeAzure, Reply},
    HubOptions, TestHub,
};
use serde_json::json;
use shared::clock::now_ms;

#[tokio::test]
async fn the_signing_vm_is_started_exactly_once_when_concurrent_triggers_race() {
    let azure = FakeAzure::start(3600).await;
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("pro").await;
    for _ in 0..2 {
        hub.insert_job(license, "windows-sign", 10, b"bundle", json!({}))
            .await;
    }
    let s = settings(&azure.args());
    let a = VmController::new(&hub.deps, &s)
        .unwrap()
        .expect("azure enabled");
    let b = VmController::new(&hub.deps, &s)
        .unwrap()
        .expect("azure enabled");

    let ticks =
        futures_util::future::join_all(
            (0..8).map(|i| if i % 2 == 0 { a.tick() } else { b.tick() }),
        )
        .await;
    let plans: Vec<Plan> = ticks.into_iter().map(|t| t.unwrap().plan).collect();
    assert_eq!(
        plans.iter().filter(|p| **p == Plan::Start).count(),
        1,
        "{plans:?}"
    );
    assert_eq!(a.tick().await.unwrap().plan, Plan::Nothing);
    assert_eq!(b.tick().await.unwrap().plan, Plan::Nothing);

    assert_eq!(azure.vm_calls("start"), 1);
    assert_eq!(azure.token_requests(), 1);
    assert!(
        azure
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/operations/")),
        "the async operation was polled"
    );
    assert_eq!(azure.problems(), Vec::<String>::new());
    let (state, attempts, error, _) = vm_row(&hub).await;
    assert_eq!((state.as_str(), attempts, error), ("starting", 1, None));
    hub.stop().await;
}

#[tokio::test]
async fn no_vm_start_while_a_connected_sign_worker_has_a_free_slot_or_azure_is_unset() {
    let azure = FakeAzure::start(3600).await;
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("pro").await;
    // A connected sign worker with free slots.
    let _signer = hub.worker("sign-1", &["windows-sign"], 2).await;
    eventually("the worker row", || async {
        hub.db().count("workers", "disconnected_ms IS NULL").await == 1
    })
    .await;
    sqlx::query("INSERT INTO jobs (id, license_id, project, original_target, target, state, priority, manifest, enqueued_ms, created_ms) \
                 VALUES (UUID(), ?, 'p', 'windows', 'windows-sign', 'queued', 10, '{}', ?, ?)")
        .bind(license)
        .bind(now_ms())
        .bind(now_ms())
        .execute(hub.pool())
        .await
        .unwrap();
    let controller = VmController::new(&hub.deps, &settings(&azure.args()))
        .unwrap()
        .unwrap();
    assert_eq!(controller.tick().await.unwrap().plan, Plan::Nothing);
    assert_eq!(azure.vm_calls("start"), 0);
    // Without all six AZURE_* settings there is no controller at all.
    let partial = settings(&flags(&["--azure-tenant-id", "t", "--azure-vm-name", "vm"]));
    assert!(VmController::new(&hub.deps, &partial).unwrap().is_none());
    hub.stop().await;
}

#[tokio::test]
async fn two_finishers_start_the_vm_once_and_deallocate_it_once_after_the_idle_window() {
    let azure = FakeAzure::start(3600).await;
    let mut extra = azure.args();
    extra.extend(flags(&["--azure-idle-secs", "2"]));
    let hub = hub_with(&extra).await;
    let replica = TestHub::start_with(HubOptions {
        replica_of: Some((
            hub.db().config.clone(),
            hub.amqp.clone(),
            hub.blob_config.clone(),
        )),
        finisher: Some(settings(&extra)),
        ..HubOptions::default()
    })
    .await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "windows-sign", 10, b"bundle", json!({}))
        .await;

    eventually("the VM start", || async { azure.vm_calls("start") == 1 }).await;
    let mut signer = hub.worker("sign-1", &["windows-sign"], 1).await;
    assert_eq!(signer.assignment().await["job_id"], job.as_str());
    eventually("the VM to be seen running", || async {
        vm_row(&hub).await.0 == "running"
    })
    .await;
    hub.insert_artifact(&job, "app-setup.exe", "windows", b"signed")
        .await;
    signer.send(json!({"type": "complete", "job_id": job, "success": true, "duration_secs": 1.0, "artifacts": []})).await;
    hub.wait_state(&job, "completed").await;

    eventually("the VM to be deallocated", || async {
        vm_row(&hub).await.0 == "deallocated"
    })
    .await;
    let finished: i64 = scalar_i64(&hub, "SELECT finished_ms FROM jobs WHERE id = ?", &job).await;
    let stopped = vm_row(&hub).await.3.expect("last_stop_ms");
    // Work is observed once per sweep (1 s), so the idle window (2 s) ends at least 1 s after.
    assert!(
        stopped - finished >= 1000,
        "deallocated {} ms after the last work",
        stopped - finished
    );
    // The signer is still connected (it connected before the deallocate): no restart, no
    // second deallocate.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(azure.vm_calls("start"), 1);
    assert_eq!(azure.vm_calls("deallocate"), 1);
    assert_eq!(azure.vm_calls("powerOff"), 0);
    assert_eq!(azure.problems(), Vec::<String>::new());
    replica.stop().await;
    hub.stop().await;
}

#[tokio::test]
async fn transient_azure_errors_and_timeouts_are_retried_with_backoff_and_counted() {
    let azure = FakeAzure::start(3600).await;
    azure.script([
        Reply::error(503, "ServiceUnavailable"),
        Reply::error(429, "TooManyRequests"),
        Reply {
            status: 202,
            delay: Duration::from_secs(3),
            body: json!({}),
        },
    ]);
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("pro").await;
    hub.insert_job(license, "windows-sign", 10, b"bundle", json!({}))
        .await;
    let mut extra = azure.args();
    extra.extend(flags(&["--azure-http-timeout-secs", "1"]));
    let controller = VmController::new(&hub.deps, &settings(&extra))
        .unwrap()
        .unwrap();
    let (retries, oks) = (azure_calls("start", "retry"), azure_calls("start", "ok"));

    let tick = controller.tick().await.unwrap();

    assert_eq!((tick.plan, tick.ok), (Plan::Start, true));
    assert_eq!(
        azure.vm_calls("start"),
        4,
        "503, 429, timeout, then accepted"
    );
    let times = azure.vm_call_times("start");
    assert!(
        times[1] - times[0] >= Duration::from_millis(20),
        "backoff after the 503"
    );
    assert!(
        times[3] - times[2] >= Duration::from_secs(1),
        "the slow answer timed out"
    );
    assert_eq!(azure_calls("start", "retry") - retries, 3);
    assert_eq!(azure_calls("start", "ok") - oks, 1);
    let (state, _, error, _) = vm_row(&hub).await;
    assert_eq!((state.as_str(), error), ("starting", None));
    assert_eq!(azure.problems(), Vec::<String>::new());
    hub.stop().await;
}

#[tokio::test]
async fn a_rejected_azure_call_is_not_retried_and_is_logged_with_its_status_but_never_the_secret() {
    let logs = shared::testing::capture_logs();
    let azure = FakeAzure::start(3600).await;
    azure.script([Reply::error(403, "AuthorizationFailed")]);
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("pro").await;
    hub.insert_job(license, "windows-sign", 10, b"bundle", json!({}))
        .await;
    let controller = VmController::new(&hub.deps, &settings(&azure.args()))
        .unwrap()
        .unwrap();
    let errors = azure_calls("start", "error");

    let tick = controller.tick().await.unwrap();

    assert_eq!((tick.plan, tick.ok), (Plan::Start, false));
    assert_eq!(azure.vm_calls("start"), 1);
    assert_eq!(azure_calls("start", "error") - errors, 1);
    let (state, _, error, _) = vm_row(&hub).await;
    assert_eq!(state, "start_failed");
    assert_eq!(
        error.as_deref(),
        Some("start: HTTP 403: AuthorizationFailed")
    );
    // Not again before the failure backoff.
    assert_eq!(controller.tick().await.unwrap().plan, Plan::Nothing);
    assert_eq!(azure.vm_calls("start"), 1);
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("HTTP 403"), "the status is logged: {text}");
    assert!(
        !text.contains(perry_hub_tests::fake_azure::CLIENT_SECRET),
        "the client secret leaked into the logs"
    );
    assert!(
        !text.contains("fake-token-"),
        "the bearer token leaked into the logs"
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_azure_token_is_cached_until_shortly_before_expiry_then_refreshed() {
    let azure = FakeAzure::start(2).await;
    let client = finisher::azure::AzureClient::new(&settings(&azure.args()).azure).unwrap();

    client.start_vm().await.unwrap();
    client.deallocate_vm().await.unwrap();
    assert_eq!(azure.token_requests(), 1, "one token for both calls");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    client.start_vm().await.unwrap();
    assert_eq!(azure.token_requests(), 2, "refreshed after expiry");
    let last = azure
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/start"))
        .unwrap();
    assert_eq!(last.authorization.as_deref(), Some("Bearer fake-token-2"));
    // A token Azure no longer accepts is dropped and fetched again.
    azure.script([Reply::error(401, "InvalidAuthenticationToken")]);
    client.start_vm().await.unwrap();
    assert_eq!(azure.token_requests(), 3);
    assert_eq!(azure.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn sign_jobs_fail_when_the_vm_brings_no_worker_in_time_after_one_retried_start() {
    let azure = FakeAzure::start(3600).await;
    let mut extra = azure.args();
    extra.extend(flags(&[
        "--azure-start-retry-secs",
        "1",
        "--azure-sign-timeout-secs",
        "3",
    ]));
    let hub = hub_with(&extra).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "windows-sign", 10, b"bundle", json!({}))
        .await;
    let mut cli = hub.cli(&job).await;

    let error = cli.expect("error").await;
    assert_eq!(
        error["message"],
        "No Windows signing worker became available within 3 seconds of starting the signing VM"
    );
    assert_eq!(cli.expect("complete").await["success"], false);
    let starts = azure.vm_call_times("start");
    assert_eq!(starts.len(), 2, "the start is retried once");
    // The retry is decided 1 s after the first start was decided; the first call also waited for
    // a token, so the gap seen by the fake server can be shorter by that round trip.
    assert!(
        starts[1] - starts[0] >= Duration::from_millis(500),
        "retried after {:?}",
        starts[1] - starts[0]
    );
    hub.stop().await;
}
