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
