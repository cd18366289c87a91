//! Jobs held on a dispatcher that died: requeued after its re-attach window rather than their
//! lease, and by a dispatcher when the finisher is down.

use super::support::*;
use finisher::reaper;
use perry_hub_tests::TestHub;
use serde_json::json;
use shared::clock::now_ms;

/// Move a worker's connection row onto a dispatcher that last beat `silent_ms` ago with a
/// `reattach_ms` window, as if the process holding the socket had been killed then.
async fn strand_on_dead_dispatcher(hub: &TestHub, worker: &str, silent_ms: i64, reattach_ms: i64) {
    let dead = format!("dead-{}", uuid::Uuid::new_v4().simple());
    sqlx::query(
        "INSERT INTO dispatchers (id, started_ms, last_seen_ms, reattach_ms) VALUES (?, ?, ?, ?)",
    )
    .bind(&dead)
    .bind(now_ms() - 3_600_000)
    .bind(now_ms() - silent_ms)
    .bind(reattach_ms)
    .execute(hub.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE workers SET dispatcher_id = ? WHERE name = ? AND disconnected_ms IS NULL")
        .bind(&dead)
        .bind(worker)
        .execute(hub.pool())
        .await
        .unwrap();
}

/// A dispatcher that dies never shortens its workers' leases; once it has been silent for the
/// stale window plus its re-attach window, its jobs are requeued without waiting out the lease.
#[tokio::test]
async fn a_job_held_on_a_dead_dispatcher_is_requeued_after_its_reattach_window_not_its_lease() {
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("pro").await;
    let recent = hub
        .insert_job(license, "linux", 10, b"src", json!({}))
        .await;
    let mut w1 = hub.worker("w1", &["linux"], 1).await;
    w1.assignment().await;
    let old = hub
        .insert_job(license, "linux", 10, b"src", json!({}))
        .await;
    let mut w2 = hub.worker("w2", &["linux"], 1).await;
    w2.assignment().await;
    let mut cli = hub.cli(&old).await;
    // Silent 15 s with a 10 s window: still within stale (10 s) + re-attach. Silent 25 s: past.
    strand_on_dead_dispatcher(&hub, "w1", 15_000, 10_000).await;
    strand_on_dead_dispatcher(&hub, "w2", 25_000, 10_000).await;
    let ctx = finisher::AppState::new(&hub.deps, settings(&[]));
    let report = reaper::sweep(&ctx).await.unwrap();
    assert_eq!(report.requeued, vec![old.clone()], "{report:?}");
    assert_eq!(hub.job_state(&recent).await, "assigned");
    loop {
        let update = cli.expect("queue_update").await;
        if update["message"]
            .as_str()
            .is_some_and(|m| m.contains("attempt 2"))
        {
            assert!(
                update["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("The build server holding the builder's connection stopped"),
                "{update}"
            );
            break;
        }
    }
    let (state, retries): (String, i32) =
        sqlx::query_as("SELECT state, retries FROM jobs WHERE id = ?")
            .bind(&old)
            .fetch_one(hub.pool())
            .await
            .unwrap();
    assert_eq!((state.as_str(), retries), ("queued", 1));
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "03-dispatcher-killed-worker-gone",
        fault: "Dispatcher SIGKILLed and its worker does not come back",
        outcome: "The job was requeued once the dispatcher had been silent for the stale window plus its re-attach window (about 20 s), not after the 90 s lease; a job within that window was left alone (DEC-32).".to_owned(),
        test: "finisher::lost_jobs::a_job_held_on_a_dead_dispatcher_is_requeued_after_its_reattach_window_not_its_lease",
    });
    hub.stop().await;
}

/// With no finisher running, the dispatchers requeue a lost job themselves: recovery does not
/// wait for one service to come back.
#[tokio::test]
async fn with_the_finisher_down_a_dispatcher_requeues_a_lost_job() {
    let hub = TestHub::start_with(perry_hub_tests::HubOptions {
        no_finisher: true,
        dispatcher: Some(dispatcher::Settings::default()),
        ..Default::default()
    })
    .await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "linux", 10, b"src", json!({}))
        .await;
    let mut cli = hub.cli(&job).await;
    let mut first = hub.worker("w1", &["linux"], 1).await;
    first.assignment().await;
    first.ws.close().await;
    eventually("the disconnect", || async {
        hub.db()
            .count("workers", "disconnected_ms IS NOT NULL")
            .await
            == 1
    })
    .await;
    expire_lease(&hub, &job).await;
    loop {
        let update = cli.expect("queue_update").await;
        if update["message"] == "Builder disconnected, re-queued (attempt 2)" {
            break;
        }
    }
    let mut second = hub.worker("w2", &["linux"], 1).await;
    assert_eq!(second.assignment().await["job_id"], job.as_str());
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "06-finisher-down",
        fault: "Finisher down while a worker is lost",
        outcome: "A dispatcher requeued the lost job itself and another worker built attempt 2; stage-2 hand-overs, build timeouts and re-announcements wait for a finisher (DEC-32).".to_owned(),
        test: "finisher::lost_jobs::with_the_finisher_down_a_dispatcher_requeues_a_lost_job",
    });
    hub.stop().await;
}
