//! Which job goes to which worker, and in what order, on RabbitMQ and on the in-process queue.

use std::time::Duration;

use super::support::*;
use perry_hub_tests::TestHub;
use serde_json::json;

on_both_queues! {
    async fn linux_job_runs_end_to_end_and_the_cli_sees_every_event_in_order(queue: QueueKind) {
        let hub = TestHub::start_with(queue.options()).await;
        let (_, license) = hub.insert_license("pro").await;
        let creds = json!({"android_keystore_password": "kspass"});
        let job = hub
            .insert_job(license, "linux", 10, b"tarball-bytes", creds.clone())
            .await;
        let mut cli = hub.cli(&job).await;
        let created = cli.expect("job_created").await;
        assert_eq!(created["job_id"], job.as_str());
        assert_eq!(created["position"], 1);
        assert!(created["estimated_wait_secs"].is_null());

        let mut worker = hub.worker("linux-1", &["linux", "android"], 2).await;
        let assign = worker.assignment().await;
        assert_eq!(assign["job_id"], job.as_str());
        assert_eq!(assign["credentials"], creds);
        assert_eq!(assign["manifest"]["targets"], json!(["linux"]));
        assert_eq!(
            assign["tarball_url"],
            hub.url(&format!("/api/v1/tarball/{job}"))
        );
        assert_eq!(
            assign["artifact_upload_url"],
            hub.url(&format!("/api/v1/artifact/upload/{job}"))
        );
        let token = assign["auth_token"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(token).unwrap().get_version_num(), 4);
        hub.wait_state(&job, "assigned").await;

        worker
            .send(json!({"type":"stage","job_id":job,"stage":"compiling","message":"Compiling"}))
            .await;
        worker.send(json!({"type":"log","job_id":job,"stage":"compiling","line":"warning: x","stream":"stderr"})).await;
        worker.send(json!({"type":"progress","job_id":job,"stage":"compiling","percent":55.4,"message":null})).await;
        hub.wait_state(&job, "running").await;
        hub.insert_artifact(&job, "app-linux.tar.gz", "linux", b"artifact-bytes")
            .await;
        worker.send(json!({"type":"complete","job_id":job,"success":true,"duration_secs":1.5,"artifacts":[{"name":"app-linux.tar.gz","size":14,"sha256":"x"}]})).await;

        let frames = until_complete(&mut cli).await;
        let types = frame_types(&frames);
        let tail: Vec<&str> = types
            .iter()
            .map(String::as_str)
            .filter(|t| *t != "queue_update")
            .collect();
        assert_eq!(
            tail,
            ["stage", "log", "progress", "artifact_ready", "complete"]
        );
        let progress = &frames[types.iter().position(|t| t == "progress").unwrap()];
        assert_eq!(progress["percent"], 55);
        let ready = &frames[types.iter().position(|t| t == "artifact_ready").unwrap()];
        assert_eq!(ready["artifact_name"], "app-linux.tar.gz");
        assert_eq!(ready["artifact_size"], 14);
        assert_eq!(ready["expires_in_secs"], 600);
        assert!(ready.get("download_path").is_none());
        assert!(ready["download_url"]
            .as_str()
            .unwrap()
            .starts_with(&hub.url("/api/v1/dl/")));
        let complete = frames.last().unwrap();
        assert_eq!(complete["success"], true);
        assert_eq!(complete["artifacts"][0]["name"], "app-linux.tar.gz");
        assert!(complete["duration_secs"].is_number());

        hub.wait_state(&job, "completed").await;
        let usage: i64 = sqlx::query_scalar("SELECT publishes FROM license_usage WHERE license_id = ?")
            .bind(license)
            .fetch_one(hub.pool())
            .await
            .unwrap();
        assert_eq!(usage, 1);
        let creds_left: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT credentials_enc FROM jobs WHERE id = ?")
                .bind(&job)
                .fetch_one(hub.pool())
                .await
                .unwrap();
        assert!(
            creds_left.is_none(),
            "credentials are deleted when the job ends"
        );
        hub.stop().await;
    }

    async fn a_target_without_workers_never_delays_another_target(queue: QueueKind) {
        let hub = TestHub::start_with(queue.options()).await;
        let (_, license) = hub.insert_license("free").await;
        let stuck = hub.insert_job(license, "macos", 1, b"t", json!({})).await;
        let runnable = hub.insert_job(license, "linux", 1, b"t", json!({})).await;
        let mut worker = hub.worker("linux-only", &["linux"], 1).await;
        let assign = worker.assignment().await;
        assert_eq!(assign["job_id"], runnable.as_str());
        assert_eq!(hub.job_state(&stuck).await, "queued");
        hub.stop().await;
    }

    async fn pro_jobs_are_dispatched_before_earlier_free_jobs(queue: QueueKind) {
        let hub = TestHub::start_with(queue.options()).await;
        let (_, free) = hub.insert_license("free").await;
        let (_, pro) = hub.insert_license("pro").await;
        let mut free_jobs = Vec::new();
        for _ in 0..3 {
            free_jobs.push(hub.insert_job(free, "linux", 1, b"t", json!({})).await);
        }
        let pro_job = hub.insert_job(pro, "linux", 10, b"t", json!({})).await;
        hub.outbox_drained().await;
        let mut worker = hub.worker("w", &["linux"], 1).await;
        let first = worker.assignment().await;
        assert_eq!(first["job_id"], pro_job.as_str());
        hub.stop().await;
    }

    async fn a_requeued_job_goes_ahead_of_jobs_submitted_after_it(queue: QueueKind) {
        let hub = TestHub::start_with(queue.options()).await;
        let (_, license) = hub.insert_license("free").await;
        let first = hub.insert_job(license, "linux", 1, b"t", json!({})).await;
        let mut lost = hub.worker("lost", &["linux"], 1).await;
        assert_eq!(lost.assignment().await["job_id"], first.as_str());
        let later = hub.insert_job(license, "linux", 1, b"t", json!({})).await;
        hub.outbox_drained().await;
        lost.ws.close().await;
        // Past the re-attach window: the finisher's reaper requeues the first job.
        let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
        while hub
            .db()
            .count("workers", "disconnected_ms IS NOT NULL")
            .await
            == 0
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "disconnect not recorded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sqlx::query("UPDATE jobs SET lease_expires_ms = 1 WHERE id = ?")
            .bind(&first)
            .execute(hub.pool())
            .await
            .unwrap();
        hub.wait_state(&first, "queued").await;
        hub.outbox_drained().await;
        let mut next = hub.worker("next", &["linux"], 1).await;
        assert_eq!(
            next.assignment().await["job_id"],
            first.as_str(),
            "the requeued job keeps its place"
        );
        assert_eq!(hub.job_state(&later).await, "queued");
        hub.stop().await;
    }
}
