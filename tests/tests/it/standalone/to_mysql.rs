//! `perry-hub migrate-to-mysql` (DEC-38): a one-box hub's data moves from its SQLite file to
//! MySQL whole, and the MySQL hub carries on with it: licences verify, finished builds keep
//! their events and artifacts, queued jobs are offered to the next worker.

use std::sync::Arc;

use perry_hub_tests::{sim, HubOptions, QueueKind, TestHub};
use serde_json::json;
use shared::testing::{self, TestDb};
use standalone::to_mysql::{self, TABLES};

#[tokio::test]
async fn a_one_box_hubs_data_moves_to_mysql_and_the_mysql_hub_carries_on() {
    let hub = Arc::new(TestHub::start_with(QueueKind::OneBox.options()).await);
    let (key, license) = hub.insert_license("pro").await;
    let worker = sim::spawn_building_worker(hub.clone(), "w1", 1, b"built bytes").await;
    let built = sim::cli_build(&hub, &key).await;
    assert!(built.success);
    worker.abort();
    let _ = worker.await;
    let queued = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    hub.outbox_drained().await;
    let mut hub = Arc::into_inner(hub).expect("one owner");
    let sqlite = hub.db.take().expect("the one-box database");
    let file = sqlite.config.sqlite_path.clone();
    let mysql = TestDb::new().await;

    // While the hub runs, its file is not moved.
    let running = to_mysql::run(&file, &sqlite.pool, &mysql.pool)
        .await
        .expect_err("moved while the hub runs");
    assert!(
        running.to_string().starts_with("HUB_RUNNING: "),
        "{running}"
    );
    assert_eq!(mysql.count("jobs", "").await, 0, "nothing copied");
    hub.stop().await;

    let report = to_mysql::run(&file, &sqlite.pool, &mysql.pool)
        .await
        .expect("moved");
    assert_eq!(report.tables.len(), TABLES.len());
    assert_eq!(report.announced, 1, "the queued job");
    for (table, copied) in &report.tables {
        let rows = sqlite.count(table, "").await;
        assert_eq!(i64::try_from(*copied).unwrap(), rows, "{table}");
        // The announcement of the queued job is the one row added on MySQL.
        let added = i64::from(*table == "outbox");
        assert_eq!(mysql.count(table, "").await, rows + added, "{table}");
    }
    // What the hub had: a licence, a built job with its log and artifact, a queued job.
    assert_eq!(mysql.count("licenses", "").await, 1);
    assert_eq!(mysql.count("jobs", "").await, 2);
    assert_eq!(mysql.count("artifacts", "").await, 1);
    let built_events = format!("job_id = '{}' AND kind = 'complete'", built.job_id);
    assert_eq!(mysql.count("job_events", &built_events).await, 1);
    // A second run finds the data there and changes nothing.
    let again = to_mysql::run(&file, &sqlite.pool, &mysql.pool)
        .await
        .expect_err("copied twice");
    assert!(
        again.to_string().starts_with("MYSQL_NOT_EMPTY: "),
        "{again}"
    );

    let on_mysql = TestHub::start_with(HubOptions {
        replica_of: Some((
            mysql.config.clone(),
            testing::amqp_config(),
            testing::s3_blob_config(&testing::s3_store().await.1),
        )),
        ..HubOptions::default()
    })
    .await;
    let (status, verified) = on_mysql
        .verify_license(&json!({"license_key": key}), &[])
        .await;
    assert_eq!(
        (status, &verified["valid"]),
        (200, &json!(true)),
        "{verified}"
    );
    assert_eq!(on_mysql.job_state(&built.job_id).await, "completed");
    let mut worker = on_mysql.worker("after-the-move", &["linux"], 1).await;
    assert_eq!(worker.assignment().await["job_id"], queued.as_str());
    on_mysql.stop().await;
    sqlite.drop_db().await;
    mysql.drop_db().await;
}
