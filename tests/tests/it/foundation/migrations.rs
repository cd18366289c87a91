//! Migrations on an empty database.

use shared::testing::TestDb;

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_are_idempotent() {
    let db = TestDb::new().await;
    // TestDb already migrated once; a second and third run change nothing.
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    shared::db::migrate(&db.pool).await.unwrap();
    shared::db::migrate(&db.pool).await.unwrap();
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(
        after,
        i64::try_from(shared::MIGRATOR.iter().count()).unwrap()
    );
    for table in [
        "accounts",
        "api_tokens",
        "licenses",
        "license_usage",
        "rate_events",
        "jobs",
        "job_events",
        "artifacts",
        "download_tokens",
        "downloads",
        "workers",
        "settings",
        "vm_state",
        "outbox",
        "sweep_locks",
    ] {
        assert_eq!(db.count(table, "1 = 0").await, 0, "table {table} exists");
    }
    db.drop_db().await;
}

#[tokio::test]
async fn connect_fails_at_once_with_a_stable_code_on_a_wrong_password_or_an_unknown_database() {
    let db = TestDb::new().await;
    let mut wrong_password = db.config.clone();
    wrong_password.password = shared::config::Secret::new("not-the-password");
    let unknown_database = db.config.with_database("perry_test_does_not_exist");
    for (config, codes) in [
        (wrong_password, &["DB_ACCESS_DENIED"][..]),
        // A user without global rights is told 1044 (access denied) rather than 1049.
        (
            unknown_database,
            &["DB_UNKNOWN_DATABASE", "DB_ACCESS_DENIED"][..],
        ),
    ] {
        let started = std::time::Instant::now();
        let error = shared::db::connect(&config, std::time::Duration::from_secs(60))
            .await
            .expect_err("must not connect");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "retried for {:?}",
            started.elapsed()
        );
        let code = error
            .downcast_ref::<shared::db::ConnectError>()
            .expect("a ConnectError")
            .code();
        assert!(codes.contains(&code), "{code}");
        assert!(!error.to_string().contains("not-the-password"));
    }
}

#[tokio::test]
async fn the_test_server_is_supported_and_fully_migrated() {
    let db = TestDb::new().await;
    let version = shared::db::server_version(&db.pool).await.unwrap();
    assert!(version.supported(), "{version}");
    assert_eq!(
        shared::db::applied_migrations(&db.pool).await.unwrap(),
        shared::MIGRATOR.iter().count()
    );
}

#[tokio::test]
async fn check_reports_every_backing_service_and_fails_on_a_wrong_password() {
    let db = TestDb::new().await;
    let dir = perry_hub_tests::tempdir::TempDir::new("perry-check");
    let mut args = shared::config::ServiceArgs {
        bind: "127.0.0.1".into(),
        shutdown_grace_secs: 5,
        check: true,
        hub: shared::testing::hub_config("http://127.0.0.1"),
        db: db.config.clone(),
        amqp: shared::testing::amqp_config(),
        blob: perry_hub_tests::fs_blob_config(&dir.0),
    };
    shared::check::run("test", &args, shared::check::Needs::ALL)
        .await
        .expect("every backing service is usable");

    // `perry-hub check` checks RabbitMQ only when AMQP_URL chooses it.
    args.amqp.url = shared::config::Secret::new("amqp://guest:guest@127.0.0.1:1/%2f");
    let error = shared::check::run("test", &args, shared::check::Needs::ALL)
        .await
        .expect_err("an unreachable broker fails the check");
    assert!(error.to_string().contains("rabbitmq"), "{error}");
    args.amqp.url = shared::config::Secret::default();
    shared::check::run("test", &args, shared::check::Needs::ALL)
        .await
        .expect("without AMQP_URL the in-process queue needs nothing");

    args.db.password = shared::config::Secret::new("not-the-password");
    let started = std::time::Instant::now();
    let error = shared::check::run("test", &args, shared::check::Needs::ALL)
        .await
        .expect_err("a wrong password fails the check");
    assert!(error.to_string().starts_with("CHECK_FAILED"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
