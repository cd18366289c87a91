//! Submissions that race for the same rows: InnoDB may pick one as a deadlock victim, and the
//! hub runs its transaction again instead of answering 500 `INTERNAL_ERROR`.

use std::time::Duration;

use futures_util::future::join_all;
use perry_hub_tests::{
    api::{cli_form, manifest},
    ingest_settings, HubOptions, TestHub,
};
use serde_json::json;
use shared::http::ApiError;
use sqlx::{Connection, Executor};

#[tokio::test]
async fn a_deadlock_is_told_apart_and_answered_as_busy_with_retry_after() {
    let hub = TestHub::start().await;
    hub.pool()
        .execute("CREATE TABLE lock_race (id INT PRIMARY KEY, n INT NOT NULL)")
        .await
        .expect("table");
    hub.pool()
        .execute("INSERT INTO lock_race VALUES (1, 0), (2, 0)")
        .await
        .expect("rows");
    let mut a = shared::db::begin(hub.pool()).await.expect("tx a");
    let mut b = shared::db::begin(hub.pool()).await.expect("tx b");
    sqlx::query("UPDATE lock_race SET n = n + 1 WHERE id = 1")
        .execute(&mut *a)
        .await
        .expect("a locks 1");
    sqlx::query("UPDATE lock_race SET n = n + 1 WHERE id = 2")
        .execute(&mut *b)
        .await
        .expect("b locks 2");
    // Each now waits for the other's row: InnoDB rolls one back at once with error 1213.
    let (ra, rb) = tokio::join!(
        sqlx::query("UPDATE lock_race SET n = n + 1 WHERE id = 2").execute(&mut *a),
        sqlx::query("UPDATE lock_race SET n = n + 1 WHERE id = 1").execute(&mut *b),
    );
    let victim = match (ra, rb) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        other => panic!("expected exactly one deadlock victim, got {other:?}"),
    };
    assert!(shared::db::is_deadlock(&victim), "{victim}");
    let answer = ApiError::from(victim);
    assert!(answer.lock_conflict);
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.code.as_str(), "UNAVAILABLE");

    // Other database errors are neither.
    let syntax = sqlx::query("SELEC 1")
        .execute(hub.pool())
        .await
        .expect_err("syntax error");
    assert!(!shared::db::is_deadlock(&syntax));
    assert!(!ApiError::from(syntax).lock_conflict);
    drop((a, b));
}

#[tokio::test]
async fn a_lock_wait_timeout_counts_as_a_lost_race_too() {
    let hub = TestHub::start().await;
    hub.pool()
        .execute("CREATE TABLE lock_wait (id INT PRIMARY KEY)")
        .await
        .expect("table");
    hub.pool()
        .execute("INSERT INTO lock_wait VALUES (1)")
        .await
        .expect("row");
    let mut holder = shared::db::begin(hub.pool()).await.expect("holder");
    sqlx::query("SELECT id FROM lock_wait WHERE id = 1 FOR UPDATE")
        .execute(&mut *holder)
        .await
        .expect("lock");
    let mut waiter = hub.pool().acquire().await.expect("waiter");
    waiter
        .execute("SET SESSION innodb_lock_wait_timeout = 1")
        .await
        .expect("short wait");
    let mut tx = waiter.begin().await.expect("tx");
    let timed_out = sqlx::query("SELECT id FROM lock_wait WHERE id = 1 FOR UPDATE")
        .execute(&mut *tx)
        .await
        .expect_err("lock wait timeout");
    assert!(shared::db::is_deadlock(&timed_out), "{timed_out}");
    drop(tx);
    drop(holder);
}

/// Many licences submitting at once from one address: every submission is accepted once
/// (whether or not InnoDB happens to pick a victim in this run).
#[tokio::test]
async fn concurrent_submissions_of_many_licences_are_all_accepted() {
    // Every CLI here comes from one address: lift the anonymous in-flight caps for the test.
    let mut ingest = ingest_settings();
    ingest.anonymous_uploads_per_addr = 100;
    ingest.anonymous_uploads_global = 100;
    let hub = TestHub::start_with(HubOptions {
        ingest: Some(ingest),
        ..HubOptions::default()
    })
    .await;
    let mut keys = Vec::new();
    for _ in 0..6 {
        keys.push(hub.insert_license("pro").await.0);
    }
    let submissions = keys.iter().cycle().take(72).enumerate().map(|(i, key)| {
        let hub = &hub;
        async move {
            let form = cli_form(
                &manifest("linux", &format!("com.example.app{}", i % 6)),
                &json!({}),
                format!("tarball {i}").as_bytes(),
                key,
            );
            hub.submit_build(form, &[]).await
        }
    });
    let replies = tokio::time::timeout(Duration::from_secs(120), join_all(submissions))
        .await
        .expect("submissions answered");
    let refused: Vec<_> = replies
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
        .fetch_one(hub.pool())
        .await
        .expect("count");
    assert_eq!(jobs, 72);
}

#[tokio::test]
async fn a_submission_chosen_as_deadlock_victim_is_run_again_and_accepted_once() {
    let hub = TestHub::start().await;
    let (key, license_id) = hub.insert_license("pro").await;
    // A heavier transaction elsewhere: InnoDB rolls back the lighter side of a deadlock.
    let mut other = shared::db::begin(hub.pool()).await.expect("other tx");
    sqlx::query("CREATE TABLE IF NOT EXISTS ballast (id INT PRIMARY KEY)")
        .execute(hub.pool())
        .await
        .expect("ballast table");
    for id in 0..200 {
        sqlx::query("INSERT INTO ballast VALUES (?)")
            .bind(id)
            .execute(&mut *other)
            .await
            .expect("ballast row");
    }
    // Hold the gap where the submission records its rate hit.
    sqlx::query("SELECT id FROM rate_events WHERE bucket = ? FOR UPDATE")
        .bind(format!("build:{license_id}"))
        .fetch_all(&mut *other)
        .await
        .expect("gap lock");

    let form = cli_form(
        &manifest("linux", "com.example.app"),
        &json!({}),
        b"tarball",
        &key,
    );
    let close_the_cycle = async {
        // The submission holds its licence's row and now waits for the gap.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO rate_events%'",
            )
            .fetch_one(hub.pool())
            .await
            .expect("processlist");
            if waiting == 1 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the submission never waited for the gap"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Asking for the licence's row closes the cycle: the lighter submission is the victim.
        sqlx::query("SELECT id FROM licenses WHERE id = ? FOR UPDATE")
            .bind(license_id)
            .fetch_all(&mut *other)
            .await
            .expect("the heavier transaction survives the deadlock");
        other.commit().await.expect("commit");
    };
    let ((status, body), ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(hub.submit_build(form, &[]), close_the_cycle)
    })
    .await
    .expect("answered");
    assert_eq!(status, 200, "{body}");
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE license_id = ?")
        .bind(license_id)
        .fetch_one(hub.pool())
        .await
        .expect("count");
    assert_eq!(jobs, 1);
    let hits: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rate_events WHERE bucket = ?")
        .bind(format!("build:{license_id}"))
        .fetch_one(hub.pool())
        .await
        .expect("hits");
    assert_eq!(hits, 1, "the rolled-back run left no rate hit behind");
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "15-deadlock",
        fault: "A submission chosen as an InnoDB deadlock victim",
        outcome: "The submission's transaction ran again and was accepted once (one job, one rate hit); a lost race elsewhere answers 503 with Retry-After, never 500 (DEC-33).".to_owned(),
        test: "ingest::contention::a_submission_chosen_as_deadlock_victim_is_run_again_and_accepted_once",
    });
}
