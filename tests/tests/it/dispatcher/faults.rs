//! Faults only a separate process shows: a dispatcher killed with SIGKILL runs no shutdown and
//! marks nothing; what it held must still be picked up at once (DEC-19).

use std::time::{Duration, Instant};

use perry_hub_tests::{FakeWorker, HubProcess, TestHub};
use serde_json::json;

/// Stored log lines of a job that start with `prefix`.
async fn stored_with(hub: &TestHub, job_id: &str, prefix: &str) -> usize {
    let payloads: Vec<shared::db::Text> =
        sqlx::query_scalar("SELECT payload FROM job_events WHERE job_id = ? AND kind = 'log'")
            .bind(job_id)
            .fetch_all(hub.pool())
            .await
            .expect("events");
    payloads.iter().filter(|p| p.0.contains(prefix)).count()
}

#[tokio::test]
async fn a_worker_whose_dispatcher_was_killed_reattaches_its_job_elsewhere_without_a_rebuild() {
    let hub = TestHub::start().await;
    let other = HubProcess::start(&hub, env!("CARGO_BIN_EXE_perry-hub-process")).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let hello = json!({"type":"worker_hello","name":"linux-1","secret":hub.worker_secret(),
                       "capabilities":["linux"],"max_concurrent":1,"perry_version":"0.5.0"});
    let mut worker = FakeWorker::connect(&other.ws_url(), hello.clone()).await;
    assert_eq!(worker.assignment().await["job_id"], job.as_str());
    worker
        .send(json!({"type":"log","job_id":job,"stage":"compiling","line":"before the kill","stream":"stdout"}))
        .await;
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    while stored_with(&hub, &job, "before the kill").await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "frame not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    other.kill();
    // The worker reconnects to the surviving hub and goes on with its build. Its frames are
    // taken as soon as the killed dispatcher's heartbeat is stale: seconds, where the silence
    // window (90 s) and then the lease (90 s) used to hold the job and rebuild it.
    let mut worker = FakeWorker::connect(&hub.ws_url(), hello).await;
    let started = Instant::now();
    let mut n = 0;
    while stored_with(&hub, &job, "after the kill").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "not re-attached within half the silence window"
        );
        n += 1;
        worker
            .send(json!({"type":"log","job_id":job,"stage":"compiling","line":format!("after the kill {n}"),"stream":"stdout"}))
            .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    worker
        .send(json!({"type":"complete","job_id":job,"success":false,"duration_secs":1.0,"artifacts":[],"error":"done"}))
        .await;
    hub.wait_state(&job, "failed").await;
    let (attempt, retries): (i32, i32) =
        sqlx::query_as("SELECT attempt, retries FROM jobs WHERE id = ?")
            .bind(&job)
            .fetch_one(hub.pool())
            .await
            .expect("job");
    assert_eq!(
        (attempt, retries),
        (1, 0),
        "the build was not started again"
    );
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "02-dispatcher-killed-reattach",
        fault: "Dispatcher SIGKILLed mid-build; the worker reconnects to another replica",
        outcome: "The dead dispatcher's heartbeat went stale after 10 s and the worker re-attached its job with the same attempt: no rebuild (DEC-19).".to_owned(),
        test: "dispatcher::faults::a_worker_whose_dispatcher_was_killed_reattaches_its_job_elsewhere_without_a_rebuild",
    });
    hub.stop().await;
}
