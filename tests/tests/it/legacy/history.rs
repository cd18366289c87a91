//! `--with-builds`: the original's builds become terminal jobs without artifacts; nothing is
//! queued, announced or counted again.

use perry_hub_tests::TestHub;

use super::{counts, import, snapshot, LegacyDb};

/// id, state, target, usage_counted, error_message, finished_ms.
type JobRow = (
    String,
    String,
    String,
    shared::db::Flag,
    shared::db::OptText,
    Option<i64>,
);

#[tokio::test]
async fn build_history_becomes_finished_jobs_and_never_queued_work() {
    let hub = TestHub::start().await;
    let db = LegacyDb::create(false).await;
    import::seed(&db).await;
    let key = import::PRO_KEY;
    db.exec(&format!(
        "INSERT INTO builds (id, licenseKey, tier, targets, status, queuedAt, startedAt, \
         completedAt, durationSecs, workerName, errorMessage) VALUES \
         ('00000000-0000-4000-8000-0000000000b1', '{key}', 'pro', '[\"ios\",\"macos\"]', 'completed', 100, 200, 900, 0.7, 'mac-1', NULL), \
         ('00000000-0000-4000-8000-0000000000b2', '{key}', 'pro', '[\"android\"]', 'failed', 300, 400, 500, 0.1, 'linux-1', 'gradle failed'), \
         ('00000000-0000-4000-8000-0000000000b3', '{key}', 'pro', 'linux', 'building', 600, 700, NULL, NULL, 'linux-2', NULL), \
         ('00000000-0000-4000-8000-0000000000b4', 'FREE-NONE-NONE-NONE', 'free', '[\"macos\"]', 'completed', 1, 2, 3, 1, NULL, NULL)"
    ))
    .await;
    let mut args = db.args();
    args.with_builds = true;
    args.allow_skips = true;

    let report = ::legacy::run(&args, hub.pool()).await.expect("import");

    assert_eq!(counts(&report, "jobs"), (3, 0, 0, 1));
    let jobs: Vec<JobRow> = sqlx::query_as(
        "SELECT id, state, target, usage_counted, error_message, finished_ms FROM jobs ORDER BY id",
    )
    .fetch_all(hub.pool())
    .await
    .expect("jobs");
    let states: Vec<(&str, &str)> = jobs.iter().map(|j| (j.1.as_str(), j.2.as_str())).collect();
    assert_eq!(
        states,
        [
            ("completed", "ios"),
            ("failed", "android"),
            ("failed", "linux")
        ]
    );
    assert!(
        jobs.iter().all(|j| j.3 .0),
        "imported jobs are never counted again"
    );
    assert_eq!(jobs[1].4 .0.as_deref(), Some("gradle failed"));
    assert_eq!((jobs[0].5, jobs[2].5), (Some(900), Some(700)));
    let hub_db = hub.db();
    assert_eq!(hub_db.count("outbox", "").await, 0);
    assert_eq!(hub_db.count("artifacts", "").await, 0);
    assert!(report
        .to_string()
        .contains("unfinished (status \"building\")"));
    let first = snapshot(hub.pool()).await;

    let again = ::legacy::run(&args, hub.pool())
        .await
        .expect("second import");

    assert_eq!(counts(&again, "jobs"), (0, 3, 0, 1));
    assert_eq!(snapshot(hub.pool()).await, first);
    db.drop_db().await;
    hub.stop().await;
}
