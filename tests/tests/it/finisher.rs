//! finisher scenarios: two-stage Windows builds, the Azure signing VM against a fake Azure,
//! lost jobs and the attempt cap, wait timeouts, and retention.

mod fake_azure;

use std::{collections::HashSet, future::Future, time::Duration};

use clap::Parser;
use fake_azure::{FakeAzure, Reply};
use finisher::{
    reaper, retention,
    stage2::{self, HandOver},
    vm::{Plan, VmController},
};
use perry_hub_tests::{HubOptions, TestHub, WsClient, WAIT};
use serde_json::{json, Value};
use shared::{
    clock::now_ms,
    queue::{outbox, Message},
};

/// Finisher settings with fast sweeps plus `extra` flags.
fn settings(extra: &[String]) -> finisher::Settings {
    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        s: finisher::Settings,
    }
    let mut args = vec!["test".to_owned(), "--sweep-secs".to_owned(), "1".to_owned()];
    args.extend_from_slice(extra);
    P::parse_from(args).s
}

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

async fn hub_with(extra: &[String]) -> TestHub {
    TestHub::start_with(HubOptions {
        finisher: Some(settings(extra)),
        ..HubOptions::default()
    })
    .await
}

async fn hub_without_finisher() -> TestHub {
    TestHub::start_with(HubOptions {
        no_finisher: true,
        ..HubOptions::default()
    })
    .await
}

/// Poll `check` until it holds, failing after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn frames_until_complete(cli: &mut WsClient) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let f = cli.recv().await.expect("socket closed before complete");
        let done = f["type"] == "complete";
        frames.push(f);
        if done {
            return frames;
        }
    }
}

async fn scalar_i64(hub: &TestHub, sql: &str, id: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(hub.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn exec(hub: &TestHub, sql: &str) {
    sqlx::query(sql)
        .execute(hub.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Put a job in `finishing` after stage 1 (attempt 1), as the dispatcher leaves it.
async fn make_finishing(hub: &TestHub, job: &str) {
    sqlx::query("UPDATE jobs SET state = 'finishing', attempt = 1, needs_finishing = 'windows', assigned_ms = ? WHERE id = ?")
        .bind(now_ms())
        .bind(job)
        .execute(hub.pool())
        .await
        .expect("finishing");
}

async fn send_stage_finished(hub: &TestHub, job: &str, attempt: i32) {
    let mut tx = hub.pool().begin().await.expect("tx");
    outbox::enqueue(
        &mut tx,
        &Message::StageFinished {
            job_id: job.to_owned(),
            attempt,
        },
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
    hub.deps.notify_outbox();
}

fn azure_calls(op: &str, outcome: &str) -> u64 {
    let labels = vec![
        ("op".to_owned(), op.to_owned()),
        ("outcome".to_owned(), outcome.to_owned()),
    ];
    shared::metrics::get()
        .azure_calls
        .get_or_create(&labels)
        .get()
}

async fn vm_row(hub: &TestHub) -> (String, i32, Option<String>, Option<i64>) {
    sqlx::query_as("SELECT state, start_attempts, last_error, last_stop_ms FROM vm_state")
        .fetch_one(hub.pool())
        .await
        .expect("vm_state row")
}

async fn blob_exists(hub: &TestHub, key: &str) -> bool {
    hub.deps.blob.size(key).await.expect("blob size").is_some()
}

// ---------------------------------------------------------------------------------------------
// Two-stage builds

#[tokio::test]
async fn a_windows_build_is_signed_in_stage_two_and_the_cli_follows_one_job_to_one_complete() {
    let hub = hub_with(&[]).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(
            license,
            "windows",
            10,
            b"stage one source",
            json!({"windows": {"pfx": "secret"}}),
        )
        .await;
    let mut cli = hub.cli(&job).await;
    cli.expect("job_created").await;

    // Stage 1 on a Linux builder: the hidden bundle, then complete with needs_finishing.
    let mut builder = hub.worker("linux-1", &["windows"], 1).await;
    let first = builder.assignment().await;
    assert_eq!(first["job_id"], job.as_str());
    let bundle = b"perry-precompiled/metadata.json and objects".to_vec();
    hub.insert_artifact(&job, "bundle.tar.gz", "windows-precompiled", &bundle)
        .await;
    builder
        .send(json!({"type": "complete", "job_id": job, "success": true, "duration_secs": 2.5, "needs_finishing": "windows", "artifacts": []}))
        .await;

    // Stage 2 on a signing worker: same job, manifest retargeted, the bundle as its tarball.
    let mut signer = hub.worker("sign-1", &["windows-sign"], 1).await;
    let second = signer.assignment().await;
    assert_eq!(second["job_id"], job.as_str());
    assert_eq!(second["manifest"]["targets"], json!(["windows-sign"]));
    let (mut m1, mut m2) = (first["manifest"].clone(), second["manifest"].clone());
    m1.as_object_mut().unwrap().remove("targets");
    m2.as_object_mut().unwrap().remove("targets");
    assert_eq!(m1, m2, "only the targets change");
    assert_eq!(second["credentials"], json!({"windows": {"pfx": "secret"}}));
    let (stage, target, retries, input_key): (i8, String, i32, String) =
        sqlx::query_as("SELECT stage, target, retries, input_key FROM jobs WHERE id = ?")
            .bind(&job)
            .fetch_one(hub.pool())
            .await
            .unwrap();
    assert_eq!((stage, target.as_str(), retries), (2, "windows-sign", 0));
    let bundle_key: String = sqlx::query_scalar(
        "SELECT blob_key FROM artifacts WHERE job_id = ? AND target = 'windows-precompiled'",
    )
    .bind(&job)
    .fetch_one(hub.pool())
    .await
    .unwrap();
    assert_eq!(input_key, bundle_key);
    assert!(
        !blob_exists(&hub, &shared::jobs::tarball_key(&job)).await,
        "the stage-1 source tarball is released"
    );
    let fetched = hub
        .http
        .get(second["tarball_url"].as_str().unwrap())
        .bearer_auth(second["auth_token"].as_str().unwrap())
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(
        fetched.bytes().await.unwrap().to_vec(),
        bundle,
        "the sign worker's tarball is the bundle"
    );

    let signed = b"signed installer".to_vec();
    hub.insert_artifact(&job, "app-setup.exe", "windows", &signed)
        .await;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&signed));
    signer
        .send(
            json!({"type": "complete", "job_id": job, "success": true, "duration_secs": 4.0,
            "artifacts": [{"name": "app-setup.exe", "size": signed.len(), "sha256": sha}]}),
        )
        .await;

    let frames = frames_until_complete(&mut cli).await;
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| f["type"].as_str().unwrap_or_default())
        .collect();
    assert!(!kinds.contains(&"error"), "{kinds:?}");
    let signing = kinds
        .iter()
        .position(|k| *k == "stage")
        .expect("stage frame");
    assert_eq!(frames[signing]["stage"], "signing");
    assert_eq!(
        frames[signing]["message"],
        "Routing to platform worker for signing and packaging..."
    );
    let ready: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "artifact_ready")
        .collect();
    assert_eq!(
        ready.len(),
        1,
        "only the signed artifact is offered: {frames:?}"
    );
    assert_eq!(ready[0]["artifact_name"], "app-setup.exe");
    assert!(signing < kinds.iter().position(|k| *k == "artifact_ready").unwrap());
    let complete = frames.last().unwrap();
    assert_eq!(complete["success"], true);
    assert_eq!(
        complete["artifacts"],
        json!([{"name": "app-setup.exe", "size": signed.len(), "sha256": sha}])
    );
    assert_eq!(kinds.iter().filter(|k| **k == "complete").count(), 1);
    assert!(
        cli.recv_within(Duration::from_millis(700)).await.is_err(),
        "nothing after the one complete"
    );
    assert_eq!(hub.job_state(&job).await, "completed");
    hub.stop().await;
}

#[tokio::test]
async fn a_hand_over_without_a_stored_bundle_fails_the_job_with_a_clear_error() {
    let hub = hub_with(&[]).await;
    let (_, license) = hub.insert_license("pro").await;
    // No bundle row at all.
    let missing = hub
        .insert_job(license, "windows", 10, b"src", json!({}))
        .await;
    make_finishing(&hub, &missing).await;
    // A bundle row whose blob is gone.
    let lost = hub
        .insert_job(license, "windows", 10, b"src", json!({}))
        .await;
    make_finishing(&hub, &lost).await;
    let artifact = hub
        .insert_artifact(&lost, "bundle.tar.gz", "windows-precompiled", b"bundle")
        .await;
    hub.deps
        .blob
        .delete(&shared::jobs::artifact_key(&artifact))
        .await
        .unwrap();
    let mut cli = hub.cli(&missing).await;

    send_stage_finished(&hub, &missing, 1).await;
    send_stage_finished(&hub, &lost, 1).await;

    let error = cli.expect("error").await;
    assert_eq!(
        error["message"],
        "Stage 1 finished without uploading the windows-precompiled bundle"
    );
    let complete = cli.expect("complete").await;
    assert_eq!(complete["success"], false);
    assert_eq!(complete["artifacts"], json!([]));
    hub.wait_state(&lost, "failed").await;
    let message: String = sqlx::query_scalar("SELECT error_message FROM jobs WHERE id = ?")
        .bind(&lost)
        .fetch_one(hub.pool())
        .await
        .unwrap();
    assert_eq!(
        message,
        "The windows-precompiled bundle of stage 1 is missing from storage"
    );
    assert_eq!(
        hub.db()
            .count("outbox", "routing_key = 'windows-sign'")
            .await,
        0,
        "nothing was queued for signing"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_repeated_or_stale_hand_over_changes_nothing() {
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("free").await;
    let job = hub
        .insert_job(license, "windows", 1, b"src", json!({}))
        .await;
    make_finishing(&hub, &job).await;
    hub.insert_artifact(&job, "bundle.tar.gz", "windows-precompiled", b"bundle")
        .await;

    assert_eq!(
        stage2::hand_over(&hub.deps, &job, 0).await.unwrap(),
        HandOver::Unchanged,
        "stale attempt"
    );
    assert_eq!(
        stage2::hand_over(&hub.deps, &job, 1).await.unwrap(),
        HandOver::Queued("windows-sign".into())
    );
    assert_eq!(
        stage2::hand_over(&hub.deps, &job, 1).await.unwrap(),
        HandOver::Unchanged,
        "duplicate"
    );

    assert_eq!(
        hub.db()
            .count(
                "job_events",
                &format!("job_id = '{job}' AND kind = 'stage'")
            )
            .await,
        1
    );
    assert_eq!(
        hub.db()
            .count("outbox", "routing_key = 'windows-sign'")
            .await,
        1
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_job_left_finishing_after_its_message_was_lost_is_handed_over_by_the_sweep() {
    let hub = hub_with(&flags(&["--finishing-grace-secs", "1"])).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "windows", 10, b"src", json!({}))
        .await;
    make_finishing(&hub, &job).await;
    hub.insert_artifact(&job, "bundle.tar.gz", "windows-precompiled", b"bundle")
        .await;

    // No StageFinished message is ever sent.
    hub.wait_state(&job, "queued").await;
    eventually("the job to be retargeted", || async {
        scalar_i64(&hub, "SELECT stage FROM jobs WHERE id = ?", &job).await == 2
    })
    .await;
    let mut signer = hub.worker("sign-1", &["windows-sign"], 1).await;
    assert_eq!(signer.assignment().await["job_id"], job.as_str());
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The Azure signing VM

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
        !text.contains(fake_azure::CLIENT_SECRET),
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

// ---------------------------------------------------------------------------------------------
// Lost jobs and wait timeouts

#[tokio::test]
async fn an_expired_lease_requeues_the_job_and_another_worker_gets_attempt_two() {
    let hub = hub_with(&[]).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "linux", 10, b"src", json!({}))
        .await;
    let mut cli = hub.cli(&job).await;
    let mut first = hub.worker("w1", &["linux"], 1).await;
    let a1 = first.assignment().await;
    first.ws.close().await;
    eventually("the disconnect", || async {
        hub.db()
            .count("workers", "disconnected_ms IS NOT NULL")
            .await
            == 1
    })
    .await;
    // Past the re-attach window.
    sqlx::query("UPDATE jobs SET lease_expires_ms = ? WHERE id = ?")
        .bind(now_ms() - 1)
        .bind(&job)
        .execute(hub.pool())
        .await
        .unwrap();

    loop {
        let update = cli.expect("queue_update").await;
        if update["message"] == "Builder disconnected, re-queued (attempt 2)" {
            break;
        }
    }
    let mut second = hub.worker("w2", &["linux"], 1).await;
    let a2 = second.assignment().await;
    assert_eq!(a2["job_id"], job.as_str());
    assert_ne!(a2["auth_token"], a1["auth_token"]);
    let (attempt, retries): (i32, i32) =
        sqlx::query_as("SELECT attempt, retries FROM jobs WHERE id = ?")
            .bind(&job)
            .fetch_one(hub.pool())
            .await
            .unwrap();
    assert_eq!((attempt, retries), (2, 1));
    hub.stop().await;
}

#[tokio::test]
async fn lost_jobs_out_of_retries_or_whose_build_failed_end_without_another_attempt() {
    let hub = hub_with(&[]).await;
    let (_, license) = hub.insert_license("pro").await;
    let exhausted = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    let failed_build = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    let cancelled = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    let mut cli = hub.cli(&exhausted).await;
    cli.expect("job_created").await;
    let past = now_ms() - 1;
    for (job, extra) in [
        (&exhausted, "retries = 3"),
        (
            &failed_build,
            "error_reported = TRUE, failure_kind = 'build'",
        ),
        (&cancelled, "cancel_requested = TRUE"),
    ] {
        sqlx::query(&format!("UPDATE jobs SET state = 'running', attempt = 4, worker_name = 'gone', lease_expires_ms = ?, {extra} WHERE id = ?"))
            .bind(past)
            .bind(job)
            .execute(hub.pool())
            .await
            .unwrap();
    }

    let error = cli.expect("error").await;
    assert_eq!(
        error["message"],
        "Build failed after 4 attempts (workers kept disconnecting)"
    );
    assert_eq!(error["code"], "INTERNAL_ERROR");
    assert_eq!(cli.expect("complete").await["success"], false);
    hub.wait_state(&failed_build, "failed").await;
    hub.wait_state(&cancelled, "cancelled").await;
    for job in [&exhausted, &failed_build, &cancelled] {
        assert_eq!(
            hub.db()
                .count(
                    "job_events",
                    &format!("job_id = '{job}' AND kind = 'queue_update'")
                )
                .await,
            0,
            "never requeued"
        );
    }
    assert_eq!(
        scalar_i64(&hub, "SELECT retries FROM jobs WHERE id = ?", &failed_build).await,
        0
    );
    hub.stop().await;
}

#[tokio::test]
async fn two_reapers_racing_requeue_each_lost_job_exactly_once() {
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("pro").await;
    let mut jobs = Vec::new();
    for _ in 0..20 {
        jobs.push(hub.insert_job(license, "web", 10, b"src", json!({})).await);
    }
    exec(
        &hub,
        &format!(
            "UPDATE jobs SET state = 'running', attempt = 1, lease_expires_ms = {}",
            now_ms() - 1
        ),
    )
    .await;
    let a = finisher::AppState::new(&hub.deps, settings(&[]));
    let b = finisher::AppState::new(&hub.deps, settings(&[]));

    let (ra, rb) = tokio::join!(reaper::sweep(&a), reaper::sweep(&b));

    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let all: HashSet<&String> = ra.requeued.iter().chain(&rb.requeued).collect();
    assert_eq!(ra.requeued.len() + rb.requeued.len(), 20, "{ra:?} {rb:?}");
    assert_eq!(all.len(), 20);
    for job in &jobs {
        assert_eq!(
            scalar_i64(&hub, "SELECT retries FROM jobs WHERE id = ?", job).await,
            1
        );
        assert_eq!(
            hub.db()
                .count(
                    "job_events",
                    &format!("job_id = '{job}' AND kind = 'queue_update'")
                )
                .await,
            1
        );
    }
    let depth = shared::metrics::get()
        .queue_depth
        .get_or_create(&shared::metrics::label("target", "web"))
        .get();
    assert_eq!(depth, 20, "queue depth gauge");
    hub.stop().await;
}

#[tokio::test]
async fn a_queued_job_nobody_takes_fails_after_the_queue_timeout_and_a_recent_requeue_waits() {
    let hub = hub_with(&flags(&["--queue-timeout-secs", "30"])).await;
    let (_, license) = hub.insert_license("pro").await;
    let stale = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    let requeued = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    let fresh = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    let mut cli = hub.cli(&stale).await;
    cli.expect("job_created").await;
    // One statement, so no sweep sees the requeued job old but not yet requeued.
    sqlx::query(
        "UPDATE jobs SET enqueued_ms = ?, queued_ms = IF(id = ?, ?, NULL) WHERE id IN (?, ?)",
    )
    .bind(now_ms() - 60_000)
    .bind(&requeued)
    .bind(now_ms())
    .bind(&stale)
    .bind(&requeued)
    .execute(hub.pool())
    .await
    .unwrap();

    let error = cli.expect("error").await;
    assert_eq!(
        error["message"],
        "No build worker for 'web' took the job within 30 seconds; please try again later"
    );
    assert_eq!(cli.expect("complete").await["success"], false);
    // The same sweep looked at the other two and kept them.
    assert_eq!(hub.job_state(&requeued).await, "queued");
    assert_eq!(hub.job_state(&fresh).await, "queued");
    hub.stop().await;
}

#[tokio::test]
async fn outbox_rows_left_unsent_by_a_crashed_process_are_still_published() {
    let hub = hub_with(&[]).await;
    let (_, license) = hub.insert_license("pro").await;
    // A job whose queue message was written, but whose process died before relaying it (and
    // so never woke this process's relay).
    let job = uuid::Uuid::new_v4().to_string();
    let long_ago = now_ms() - 600_000;
    let mut tx = hub.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, license_id, project, original_target, target, state, priority, manifest, enqueued_ms, created_ms) \
         VALUES (?, ?, 'p', 'linux', 'linux', 'queued', 10, '{\"targets\":[\"linux\"]}', ?, ?)",
    )
    .bind(&job)
    .bind(license)
    .bind(long_ago)
    .bind(long_ago)
    .execute(&mut *tx)
    .await
    .unwrap();
    let msg = Message::JobQueued {
        job_id: job.clone(),
        target: "linux".into(),
        attempt: 0,
        priority: 10,
    };
    let id = outbox::enqueue(&mut tx, &msg).await.unwrap();
    sqlx::query("UPDATE outbox SET created_ms = ? WHERE id = ?")
        .bind(long_ago)
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut worker = hub.worker("w1", &["linux"], 1).await;
    assert_eq!(worker.assignment().await["job_id"], job.as_str());
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Retention

struct Fixture {
    hub: TestHub,
    license: i64,
}

impl Fixture {
    async fn job(&self, state: &str, finished_ago_ms: Option<i64>) -> String {
        let job = self
            .hub
            .insert_job(self.license, "web", 10, b"src", json!({}))
            .await;
        sqlx::query("UPDATE jobs SET state = ?, finished_ms = ? WHERE id = ?")
            .bind(state)
            .bind(finished_ago_ms.map(|ago| now_ms() - ago))
            .bind(&job)
            .execute(self.hub.pool())
            .await
            .unwrap();
        job
    }

    async fn artifact(
        &self,
        job: &str,
        target: &str,
        attempt: i32,
        expires_in_ms: i64,
    ) -> (String, String) {
        let id = self
            .hub
            .insert_artifact(job, "a.bin", target, b"bytes")
            .await;
        sqlx::query("UPDATE artifacts SET attempt = ?, expires_ms = ? WHERE id = ?")
            .bind(attempt)
            .bind(now_ms() + expires_in_ms)
            .bind(&id)
            .execute(self.hub.pool())
            .await
            .unwrap();
        (id.clone(), shared::jobs::artifact_key(&id))
    }

    async fn token(&self, artifact: &str, expires_in_ms: i64, used_ago_ms: Option<i64>) -> Vec<u8> {
        let hash = uuid::Uuid::new_v4().as_bytes().repeat(2);
        sqlx::query("INSERT INTO download_tokens (token_hash, artifact_id, created_ms, expires_ms, used_ms) VALUES (?, ?, ?, ?, ?)")
            .bind(&hash)
            .bind(artifact)
            .bind(now_ms())
            .bind(now_ms() + expires_in_ms)
            .bind(used_ago_ms.map(|ago| now_ms() - ago))
            .execute(self.hub.pool())
            .await
            .unwrap();
        hash
    }

    async fn has_token(&self, hash: &[u8]) -> bool {
        self.hub
            .db()
            .count(
                "download_tokens",
                &format!("token_hash = X'{}'", hex::encode(hash)),
            )
            .await
            == 1
    }

    async fn has_artifact(&self, id: &str) -> bool {
        self.hub
            .db()
            .count("artifacts", &format!("id = '{id}'"))
            .await
            == 1
    }

    async fn input_key(&self, job: &str) -> Option<String> {
        sqlx::query_scalar("SELECT input_key FROM jobs WHERE id = ?")
            .bind(job)
            .fetch_one(self.hub.pool())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn retention_deletes_what_expired_and_keeps_everything_still_needed() {
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("pro").await;
    let f = Fixture { hub, license };
    let day = 86_400_000;
    let hour = 3_600_000;

    // Jobs and their input tarballs.
    let old_done = f.job("completed", Some(8 * day)).await;
    let recent_failed = f.job("failed", Some(hour)).await;
    let active = f.job("queued", None).await;
    let shared_done = f.job("cancelled", Some(hour)).await;
    let shared_active = f.job("running", None).await;
    sqlx::query("UPDATE jobs SET input_key = ? WHERE id = ?")
        .bind(shared::jobs::tarball_key(&shared_done))
        .bind(&shared_active)
        .execute(f.hub.pool())
        .await
        .unwrap();
    for job in [&old_done, &recent_failed] {
        let mut tx = f.hub.pool().begin().await.unwrap();
        shared::db::append_event(&mut tx, job, "log", &json!({"type": "log"}))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    // Artifacts.
    let (visible_expired, visible_expired_key) = f.artifact(&recent_failed, "web", 1, -1).await;
    let (visible_live, visible_live_key) = f.artifact(&recent_failed, "web", 1, hour).await;
    let (bundle_done, bundle_done_key) = f
        .artifact(&recent_failed, "windows-precompiled", 1, hour)
        .await;
    let stage_two = f.job("queued", None).await;
    let (bundle_input, bundle_input_key) = f
        .artifact(&stage_two, "windows-precompiled", 1, -hour)
        .await;
    sqlx::query("UPDATE jobs SET attempt = 1, stage = 2, input_key = ? WHERE id = ?")
        .bind(&bundle_input_key)
        .bind(&stage_two)
        .execute(f.hub.pool())
        .await
        .unwrap();
    let finishing = f.job("finishing", None).await;
    exec(
        &f.hub,
        &format!("UPDATE jobs SET attempt = 2 WHERE id = '{finishing}'"),
    )
    .await;
    let (bundle_current, bundle_current_key) = f
        .artifact(&finishing, "windows-precompiled", 2, -hour)
        .await;
    let (bundle_stale, bundle_stale_key) = f
        .artifact(&finishing, "windows-precompiled", 1, -hour)
        .await;

    // Download tokens (grace: one hour by default).
    let token_expired_long_ago = f.token(&visible_live, -2 * hour, None).await;
    let token_just_expired = f.token(&visible_live, -60_000, None).await;
    let token_valid = f.token(&visible_live, hour, None).await;
    let token_used_long_ago = f.token(&visible_live, hour, Some(2 * hour)).await;
    let token_just_used = f.token(&visible_live, hour, Some(60_000)).await;
    let token_of_expired_artifact = f.token(&visible_expired, hour, None).await;

    // Outbox, rate limits, workers.
    f.hub.outbox_drained().await;
    exec(
        &f.hub,
        &format!("UPDATE outbox SET sent_ms = {}", now_ms() - 2 * hour),
    )
    .await;
    let now = now_ms();
    exec(&f.hub, &format!(
        "INSERT INTO outbox (exchange, routing_key, payload, created_ms, sent_ms) VALUES \
         ('events', 'keep.recent', '{{}}', {now}, {now}), ('events', 'keep.unsent', '{{}}', {old}, NULL)",
        old = now - 3 * hour
    ))
    .await;
    exec(
        &f.hub,
        &format!(
            "INSERT INTO rate_events (bucket, at_ms) VALUES ('old', {}), ('new', {})",
            now - 3 * hour,
            now - 60_000
        ),
    )
    .await;
    exec(&f.hub, &format!(
        "INSERT INTO workers (id, name, capabilities, max_concurrent, dispatcher_id, connected_ms, last_seen_ms, disconnected_ms) VALUES \
         (UUID(), 'gone', ',linux,', 1, 'd', 0, {a}, {a}), (UUID(), 'left', ',linux,', 1, 'd', 0, {b}, {b}), \
         (UUID(), 'here', ',linux,', 1, 'd', {now}, {now}, NULL), (UUID(), 'silent', ',linux,', 1, 'd', 0, {a}, NULL)",
        a = now - 2 * day,
        b = now - hour
    ))
    .await;

    let recent_events = f
        .hub
        .db()
        .count("job_events", &format!("job_id = '{recent_failed}'"))
        .await;
    assert!(recent_events > 0);
    let ctx = finisher::AppState::new(&f.hub.deps, settings(&[]));
    let report = retention::sweep(&ctx).await.unwrap();

    // Tarballs: released for finished jobs, kept while an active job reads them.
    for job in [&old_done, &recent_failed] {
        assert_eq!(f.input_key(job).await, None);
        assert!(!blob_exists(&f.hub, &shared::jobs::tarball_key(job)).await);
    }
    assert_eq!(f.input_key(&shared_done).await, None);
    assert!(
        blob_exists(&f.hub, &shared::jobs::tarball_key(&shared_done)).await,
        "still the input of a running job"
    );
    assert!(f.input_key(&active).await.is_some());
    assert!(blob_exists(&f.hub, &shared::jobs::tarball_key(&active)).await);
    // Artifacts.
    for (id, key) in [
        (&visible_expired, &visible_expired_key),
        (&bundle_done, &bundle_done_key),
        (&bundle_stale, &bundle_stale_key),
    ] {
        assert!(!f.has_artifact(id).await, "artifact {id} deleted");
        assert!(!blob_exists(&f.hub, key).await);
    }
    for (id, key) in [
        (&visible_live, &visible_live_key),
        (&bundle_input, &bundle_input_key),
        (&bundle_current, &bundle_current_key),
    ] {
        assert!(f.has_artifact(id).await, "artifact {id} kept");
        assert!(blob_exists(&f.hub, key).await);
    }
    // Tokens.
    for t in [
        &token_expired_long_ago,
        &token_used_long_ago,
        &token_of_expired_artifact,
    ] {
        assert!(!f.has_token(t).await);
    }
    for t in [&token_just_expired, &token_valid, &token_just_used] {
        assert!(f.has_token(t).await);
    }
    // Events, outbox, rate limits, workers.
    assert_eq!(
        f.hub
            .db()
            .count("job_events", &format!("job_id = '{old_done}'"))
            .await,
        0
    );
    assert_eq!(
        f.hub
            .db()
            .count("job_events", &format!("job_id = '{recent_failed}'"))
            .await,
        recent_events
    );
    assert_eq!(f.hub.db().count("outbox", "").await, 2);
    assert_eq!(
        f.hub
            .db()
            .count("outbox", "routing_key LIKE 'keep.%'")
            .await,
        2
    );
    assert_eq!(f.hub.db().count("rate_events", "").await, 1);
    let mut workers: Vec<String> = sqlx::query_scalar("SELECT name FROM workers")
        .fetch_all(f.hub.pool())
        .await
        .unwrap();
    workers.sort();
    assert_eq!(workers, vec!["here", "left"]);
    assert_eq!(
        (report.artifacts, report.workers, report.rate_events),
        (3, 2, 1)
    );

    // A second sweep finds nothing more.
    assert_eq!(
        retention::sweep(&ctx).await.unwrap(),
        retention::Report::default()
    );
    f.hub.stop().await;
}
