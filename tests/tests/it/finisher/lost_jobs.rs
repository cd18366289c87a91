//! Lost jobs, the attempt cap, queue timeouts and unsent outbox rows.

use std::collections::HashSet;

use super::support::*;
use finisher::reaper;
use perry_hub_tests::TestHub;
use serde_json::json;
use shared::{
    clock::now_ms,
    queue::{outbox, Message},
};

on_both_queues! {
    /// On both queues: with the default re-attach window (two of builder-linux's 5 s reconnect periods) and the
    /// default reaper period, a worker that does not come back has its job requeued within 15 s.
    async fn a_worker_that_does_not_come_back_has_its_job_requeued_within_15_s_and_another_worker_gets_attempt_two(
        queue: QueueKind,
    ) {
        let mut finisher = settings(&[]);
        finisher.sweep_secs = 2;
        let hub = TestHub::start_with(perry_hub_tests::HubOptions {
            finisher: Some(finisher),
            ..queue.options()
        })
        .await;
        let (_, license) = hub.insert_license("pro").await;
        let job = hub
            .insert_job(license, "linux", 10, b"src", json!({}))
            .await;
        let mut cli = hub.cli(&job).await;
        let mut first = hub.worker("w1", &["linux"], 1).await;
        let a1 = first.assignment().await;
        first.ws.close().await;
        let gone = std::time::Instant::now();
        // The CLI hears at once that the build waits for its worker.
        let note = cli.expect("log").await;
        assert_eq!(note["stream"], "stderr");
        assert!(
            note["line"]
                .as_str()
                .unwrap()
                .contains("disconnected; waiting up to 10 s for it to reconnect"),
            "{note}"
        );
        loop {
            let update = cli.expect("queue_update").await;
            if update["message"] == "Builder disconnected, re-queued (attempt 2)" {
                break;
            }
        }
        let waited = gone.elapsed();
        assert!(
            waited >= std::time::Duration::from_secs(9) && waited <= std::time::Duration::from_secs(15),
            "requeued after {waited:?}"
        );
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
        if queue == perry_hub_tests::QueueKind::RabbitMq {
        perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
            slug: "01-worker-gone",
            fault: "Worker disconnects mid-build and does not come back",
            outcome: format!("The CLI got a stderr line at once; the job was requeued {:.1} s after the disconnect (re-attach window 10 s, reaper every 2 s) and another worker built attempt 2 (DEC-32).", waited.as_secs_f64()),
            test: "finisher::lost_jobs::a_worker_that_does_not_come_back_has_its_job_requeued_within_15_s_and_another_worker_gets_attempt_two::rabbitmq",
        });
        }
        hub.stop().await;
    }
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
    let mut tx = shared::db::begin(hub.pool()).await.unwrap();
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
        .bind(i64::try_from(id).unwrap())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut worker = hub.worker("w1", &["linux"], 1).await;
    assert_eq!(worker.assignment().await["job_id"], job.as_str());
    hub.stop().await;
}

#[tokio::test]
async fn a_queued_job_whose_broker_message_was_purged_is_announced_again_and_built() {
    let hub = hub_with(&flags(&["--reannounce-secs", "1"])).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "linux", 10, b"src", json!({}))
        .await;
    let broker = hub.deps.queue.rabbit().expect("RabbitMQ");
    let queue = broker.topology().target_queue("linux");
    // The announcement reaches the queue (no worker takes it yet)...
    eventually("the announcement", || async {
        broker.ready_messages(&queue).await.unwrap_or(0) == 1
    })
    .await;
    // ...and is lost, as when an operator purges the queue.
    let ch = broker.channel().await.expect("channel");
    ch.queue_purge(queue.as_str().into(), Default::default())
        .await
        .expect("purge");
    // The sweep notices the queue is short and announces the waiting job again.
    let mut worker = hub.worker("w1", &["linux"], 1).await;
    let assign = worker.assignment().await;
    assert_eq!(assign["job_id"], job.as_str());
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "10-queue-message-purged",
        fault: "A queued job's broker message is lost (queue purged)",
        outcome: "The reaper saw the queue short of its queued jobs, announced the job again and a worker built it (DEC-20).".to_owned(),
        test: "finisher::lost_jobs::a_queued_job_whose_broker_message_was_purged_is_announced_again_and_built",
    });
    hub.stop().await;
}

#[tokio::test]
async fn what_a_lost_attempt_published_does_not_count_for_the_next_one() {
    let hub = hub_with(&[]).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "linux", 10, b"src", json!({}))
        .await;
    let mut first = hub.worker("w1", &["linux"], 1).await;
    first.assignment().await;
    first
        .send(
            json!({"type":"published","job_id":job,"platform":"Google Play","message":"Uploaded"}),
        )
        .await;
    eventually("the publication", || async {
        hub.db()
            .count(
                "job_events",
                &format!("job_id = '{job}' AND kind = 'published'"),
            )
            .await
            == 1
    })
    .await;
    disconnect(&hub, first).await;
    expire_lease(&hub, &job).await;
    // Attempt 2 reports success with nothing uploaded and nothing published: a failure, not a
    // completion on the strength of attempt 1's publication.
    let mut second = hub.worker("w2", &["linux"], 1).await;
    assert_eq!(second.assignment().await["job_id"], job.as_str());
    second
        .send(json!({"type":"complete","job_id":job,"success":true,"duration_secs":1.0,"artifacts":[]}))
        .await;
    hub.wait_state(&job, "failed").await;
    hub.stop().await;
}

#[tokio::test]
async fn a_lease_that_lapsed_while_its_worker_is_still_connected_is_not_requeued() {
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "linux", 10, b"src", json!({}))
        .await;
    let mut worker = hub.worker("w1", &["linux"], 1).await;
    worker.assignment().await;
    // As after a MySQL outage longer than the lease: nobody could renew it.
    expire_lease(&hub, &job).await;
    let ctx = finisher::AppState::new(&hub.deps, settings(&[]));
    let report = reaper::sweep(&ctx).await.unwrap();
    assert!(report.requeued.is_empty(), "{report:?}");
    assert!(report.lost_failed.is_empty(), "{report:?}");
    assert_eq!(hub.job_state(&job).await, "assigned");
    // The healthy build goes on and ends with its own attempt.
    hub.insert_artifact(&job, "app.tar.gz", "linux", b"x").await;
    worker
        .send(json!({"type":"complete","job_id":job,"success":true,"duration_secs":1.0,"artifacts":[]}))
        .await;
    hub.wait_state(&job, "completed").await;
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "08-mysql-outage-longer-than-lease",
        fault: "MySQL away longer than the lease (no lease renewed)",
        outcome: "The reaper left the job whose worker was still connected to a live dispatcher; the build went on and completed with its own attempt (DEC-19).".to_owned(),
        test: "finisher::lost_jobs::a_lease_that_lapsed_while_its_worker_is_still_connected_is_not_requeued",
    });
    hub.stop().await;
}
