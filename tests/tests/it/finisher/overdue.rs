//! Build timeouts (DEC-16): no job stays with a worker for ever.

use super::support::*;
use finisher::reaper;
use serde_json::json;
use shared::clock::now_ms;

/// Move the current attempt's assignment of `job` `secs` seconds into the past.
async fn assigned_ago(hub: &perry_hub_tests::TestHub, job: &str, secs: i64) {
    sqlx::query("UPDATE jobs SET assigned_ms = ? WHERE id = ?")
        .bind(now_ms() - secs * 1000)
        .bind(job)
        .execute(hub.pool())
        .await
        .expect("assigned_ms");
}

#[tokio::test]
async fn a_build_held_past_its_timeout_fails_its_worker_is_cancelled_and_its_complete_frees_the_slot(
) {
    let hub = hub_with(&flags(&["--build-timeout-secs", "60"])).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "linux", 10, b"src", json!({}))
        .await;
    let mut worker = hub.worker("slow", &["linux"], 1).await;
    worker.assignment().await;
    let mut cli = hub.cli(&job).await;
    cli.expect("job_created").await;
    worker
        .send(json!({"type":"stage","job_id":job,"stage":"compiling","message":"Compiling"}))
        .await;
    hub.wait_state(&job, "running").await;

    assigned_ago(&hub, &job, 61).await;

    let error = cli.expect("error").await;
    assert_eq!(error["message"], "Build timed out after 1 minute");
    assert_eq!(error["code"], "INTERNAL_ERROR");
    assert_eq!(cli.expect("complete").await["success"], false);
    assert_eq!(hub.job_state(&job).await, "failed");
    let shared::db::Text(stored) =
        sqlx::query_scalar("SELECT error_message FROM jobs WHERE id = ?")
            .bind(&job)
            .fetch_one(hub.pool())
            .await
            .unwrap();
    assert_eq!(stored, "Build timed out after 1 minute");
    assert_eq!(worker.ws.expect("cancel").await["job_id"], job.as_str());
    assert_eq!(
        hub.dispatcher.registry.free_slots("linux"),
        0,
        "the worker still builds until it answers"
    );

    // The worker's answer to the cancel frees its slot and changes nothing else.
    worker.send(json!({"type":"error","job_id":job,"code":"INTERNAL_ERROR","message":"Build cancelled"})).await;
    worker.send(json!({"type":"complete","job_id":job,"success":false,"duration_secs":61.0,"artifacts":[]})).await;
    let next = hub
        .insert_job(license, "linux", 10, b"src", json!({}))
        .await;
    assert_eq!(worker.assignment().await["job_id"], next.as_str());
    assert_eq!(hub.job_state(&job).await, "failed");
    assert_eq!(
        hub.db()
            .count(
                "job_events",
                &format!("job_id = '{job}' AND kind = 'error'")
            )
            .await,
        1,
        "the CLI saw one error"
    );
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "13-worker-never-finishes",
        fault: "A worker stays connected but never finishes",
        outcome: "The build failed at its stage's timeout, the worker was told to cancel, and its late complete freed the slot (DEC-16).".to_owned(),
        test: "finisher::overdue::a_build_held_past_its_timeout_fails_its_worker_is_cancelled_and_its_complete_frees_the_slot",
    });
    hub.stop().await;
}

#[tokio::test]
async fn each_stage_has_its_own_timeout_counted_from_the_current_assignment() {
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("pro").await;
    let build_in_time = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    let build_late = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    let signing_late = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    let reported = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    let cancelled = hub.insert_job(license, "web", 10, b"src", json!({})).await;
    exec(
        &hub,
        "UPDATE jobs SET state = 'running', attempt = 1, worker_name = 'w', lease_expires_ms = 9999999999999",
    )
    .await;
    let stage_two =
        format!("UPDATE jobs SET stage = 2, target = 'windows-sign' WHERE id = '{signing_late}'");
    exec(&hub, &stage_two).await;
    exec(&hub, &format!("UPDATE jobs SET error_reported = TRUE, error_message = 'Compilation failed' WHERE id = '{reported}'")).await;
    exec(
        &hub,
        &format!("UPDATE jobs SET cancel_requested = TRUE WHERE id = '{cancelled}'"),
    )
    .await;
    // Submitted long ago, but its current attempt began 90 s ago: within the 120 s limit.
    exec(
        &hub,
        &format!(
            "UPDATE jobs SET created_ms = {} WHERE id = '{build_in_time}'",
            now_ms() - 3_600_000
        ),
    )
    .await;
    for (job, secs) in [
        (&build_in_time, 90),
        (&build_late, 121),
        (&signing_late, 61),
        (&reported, 121),
        (&cancelled, 121),
    ] {
        assigned_ago(&hub, job, secs).await;
    }
    let ctx = finisher::AppState::new(
        &hub.deps,
        settings(&flags(&[
            "--build-timeout-secs",
            "120",
            "--signing-timeout-secs",
            "60",
        ])),
    );

    let report = reaper::sweep(&ctx).await.unwrap();

    let mut overdue = report.overdue.clone();
    overdue.sort();
    let mut expected = vec![
        build_late.clone(),
        signing_late.clone(),
        reported.clone(),
        cancelled.clone(),
    ];
    expected.sort();
    assert_eq!(overdue, expected);
    assert_eq!(hub.job_state(&build_in_time).await, "running");
    assert_eq!(hub.job_state(&cancelled).await, "cancelled");
    for (job, message) in [
        (&build_late, "Build timed out after 2 minutes"),
        (&signing_late, "Signing timed out after 1 minute"),
        (
            &reported,
            "Build failed: Compilation failed (the worker did not finish within 2 minutes)",
        ),
    ] {
        assert_eq!(hub.job_state(job).await, "failed");
        let (shared::db::Text(stored), kind): (shared::db::Text, Option<String>) =
            sqlx::query_as("SELECT error_message, failure_kind FROM jobs WHERE id = ?")
                .bind(job)
                .fetch_one(hub.pool())
                .await
                .unwrap();
        assert_eq!(stored, message);
        assert_eq!(kind.as_deref(), Some("timeout"));
    }
    // Every worker holding one is told to cancel, through whichever dispatcher holds it.
    let cancels = hub
        .db()
        .count("outbox", "routing_key = 'control.cancel'")
        .await;
    assert_eq!(cancels, 4);
    // A second sweep finds nothing more to do.
    assert!(reaper::sweep(&ctx).await.unwrap().overdue.is_empty());
    hub.stop().await;
}
