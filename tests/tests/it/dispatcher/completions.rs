//! `complete` as real workers send it (DEC-16): read leniently, and an unreadable one still ends
//! the attempt it belongs to.

use super::support::*;
use perry_hub_tests::{FakeWorker, TestHub, WsClient};
use serde_json::{json, Value};

/// A hub with one single-slot Linux worker holding a fresh job, and a CLI following it.
async fn held_job(hub: &TestHub, license: i64) -> (String, FakeWorker, WsClient) {
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("builder", &["linux"], 1).await;
    assert_eq!(worker.assignment().await["job_id"], job.as_str());
    let mut cli = hub.cli(&job).await;
    cli.expect("job_created").await;
    (job, worker, cli)
}

async fn error_message(hub: &TestHub, job: &str) -> Option<String> {
    let message: shared::db::OptText =
        sqlx::query_scalar("SELECT error_message FROM jobs WHERE id = ?")
            .bind(job)
            .fetch_one(hub.pool())
            .await
            .unwrap();
    message.0
}

#[tokio::test]
async fn a_complete_without_sha256_or_duration_still_completes_the_job() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    for duration in [None, Some(Value::Null)] {
        let (job, mut worker, mut cli) = held_job(&hub, license).await;
        hub.insert_artifact(&job, "app.tar.gz", "linux", b"bin")
            .await;
        let mut complete = json!({"type":"complete","job_id":job,"success":true,
            "artifacts":[{"name":"app.tar.gz","size":3}]});
        if let Some(d) = duration {
            complete["duration_secs"] = d;
        }

        worker.send(complete).await;

        let frames = until_complete(&mut cli).await;
        let last = frames.last().unwrap();
        assert_eq!(last["success"], true, "{frames:?}");
        assert!(last["duration_secs"].is_number());
        assert_eq!(last["artifacts"][0]["name"], "app.tar.gz");
        assert!(frame_types(&frames).contains(&"artifact_ready".to_owned()));
        hub.wait_state(&job, "completed").await;
        worker.ws.close().await;
    }
    hub.stop().await;
}

#[tokio::test]
async fn an_unreadable_complete_fails_the_attempt_and_frees_the_slot() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let (job, mut worker, mut cli) = held_job(&hub, license).await;
    hub.insert_artifact(&job, "app.tar.gz", "linux", b"bin")
        .await;

    worker.send(json!({"type":"complete","job_id":job,"success":"yes","duration_secs":1.0,"artifacts":[]})).await;

    let error = cli.expect("error").await;
    assert_eq!(
        error["message"],
        "The worker's completion could not be read"
    );
    assert_eq!(cli.expect("complete").await["success"], false);
    hub.wait_state(&job, "failed").await;
    assert_eq!(
        error_message(&hub, &job).await.as_deref(),
        Some("The worker's completion could not be read")
    );
    let next = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    assert_eq!(worker.assignment().await["job_id"], next.as_str());
    hub.stop().await;
}

#[tokio::test]
async fn an_unreadable_complete_without_job_id_after_a_burst_ends_the_workers_only_job() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let (job, mut worker, mut cli) = held_job(&hub, license).await;
    worker
        .send(
            json!({"type":"error","job_id":job,"code":"INTERNAL_ERROR","message":"Linker crashed"}),
        )
        .await;
    // Frames of a burst, with the unreadable `complete` right behind them.
    for i in 0..30 {
        worker.send(json!({"type":"log","job_id":job,"stage":"compiling","line":format!("line {i}"),"stream":"stderr"})).await;
    }
    worker
        .send(json!({"type":"complete","success":false,"artifacts":[]}))
        .await;

    let frames = until_complete(&mut cli).await;
    assert_eq!(frames.last().unwrap()["success"], false);
    let errors: Vec<&Value> = frames.iter().filter(|f| f["type"] == "error").collect();
    assert_eq!(errors.len(), 1, "only the worker's own error: {errors:?}");
    assert_eq!(errors[0]["message"], "Linker crashed");
    assert_eq!(frames.iter().filter(|f| f["type"] == "log").count(), 30);
    hub.wait_state(&job, "failed").await;
    assert_eq!(
        error_message(&hub, &job).await.as_deref(),
        Some("Build failed: Linker crashed (the worker's completion could not be read)")
    );
    let next = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    assert_eq!(worker.assignment().await["job_id"], next.as_str());
    hub.stop().await;
}

/// A successful `complete` listing artifacts none of which reached the hub (the uploads got a
/// 5xx or no answer, and workers do not retry them) builds the job again within the attempt
/// cap instead of failing a healthy build; after the last attempt it fails with the reason.
#[tokio::test]
async fn a_success_whose_uploads_never_arrived_is_built_again_until_the_attempt_cap() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let (job, mut worker, mut cli) = held_job(&hub, license).await;
    let lost_upload = json!({"type":"complete","job_id":job,"success":true,"duration_secs":2.0,
        "artifacts":[{"name":"app.tar.gz","size":3,"sha256":"00"}]});

    worker.send(lost_upload.clone()).await;

    let note = cli.expect("log").await;
    assert_eq!(note["stream"], "stderr");
    assert_eq!(note["line"], "The build's artifacts never reached the hub");
    let update = cli.expect("queue_update").await;
    let requeued = std::time::Instant::now();
    assert_eq!(
        update["message"],
        "The build's artifacts never reached the hub, re-queued (attempt 2), offered to workers in 5 s"
    );
    // The slot is free again, and the same worker may take the new attempt once the pause is
    // over.
    let again = worker.assignment().await;
    assert_eq!(again["job_id"], job.as_str());
    assert!(
        requeued.elapsed() >= std::time::Duration::from_millis(4_500),
        "offered again after {:?}",
        requeued.elapsed()
    );
    let (attempt, retries): (i32, i32) =
        sqlx::query_as("SELECT attempt, retries FROM jobs WHERE id = ?")
            .bind(&job)
            .fetch_one(hub.pool())
            .await
            .unwrap();
    assert_eq!((attempt, retries), (2, 1));

    // The attempt that uploads completes as usual.
    hub.insert_artifact(&job, "app.tar.gz", "linux", b"bin")
        .await;
    worker.send(lost_upload.clone()).await;
    let frames = until_complete(&mut cli).await;
    assert_eq!(frames.last().unwrap()["success"], true, "{frames:?}");
    hub.wait_state(&job, "completed").await;
    worker.ws.close().await;

    // A job already on its last attempt fails, saying why.
    let (last, mut worker2, mut cli2) = held_job(&hub, license).await;
    sqlx::query("UPDATE jobs SET retries = ? WHERE id = ?")
        .bind(job::MAX_RETRIES)
        .bind(&last)
        .execute(hub.pool())
        .await
        .unwrap();
    let mut lost_upload = lost_upload;
    lost_upload["job_id"] = json!(last);
    worker2.send(lost_upload).await;
    let frames = until_complete(&mut cli2).await;
    assert_eq!(frames.last().unwrap()["success"], false, "{frames:?}");
    hub.wait_state(&last, "failed").await;
    assert_eq!(
        error_message(&hub, &last).await.as_deref(),
        Some(
            format!(
                "The build's artifacts never reached the hub in {} attempts: build failed",
                job::MAX_RETRIES + 1
            )
            .as_str()
        )
    );
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "14-upload-lost",
        fault: "An artifact upload fails on the hub's side (5xx, ingest restarting, MySQL away)",
        outcome: "The worker's successful complete listed an artifact that never arrived: the job was offered again after a 5 s pause and built (attempt 2, which completed); on its last attempt it failed saying why (DEC-34).".to_owned(),
        test: "dispatcher::completions::a_success_whose_uploads_never_arrived_is_built_again_until_the_attempt_cap",
    });
    hub.stop().await;
}
