//! Retention: what expired is deleted, what is still needed is kept.

use super::support::*;
use finisher::retention;
use perry_hub_tests::TestHub;
use serde_json::json;
use shared::clock::now_ms;

struct Fixture {
    hub: TestHub,
    license: i64,
}

impl Fixture {
    async fn job(&self, state: &str, finished_ago_ms: Option<i64>) -> String {
        let job = self
            .hub
            .insert_job(self.license, "web", 10, b"src", json!({}))
            .await;
        sqlx::query("UPDATE jobs SET state = ?, finished_ms = ? WHERE id = ?")
            .bind(state)
            .bind(finished_ago_ms.map(|ago| now_ms() - ago))
            .bind(&job)
            .execute(self.hub.pool())
            .await
            .unwrap();
        job
    }

    async fn artifact(
        &self,
        job: &str,
        target: &str,
        attempt: i32,
        expires_in_ms: i64,
    ) -> (String, String) {
        let id = self
            .hub
            .insert_artifact(job, "a.bin", target, b"bytes")
            .await;
        sqlx::query("UPDATE artifacts SET attempt = ?, expires_ms = ? WHERE id = ?")
            .bind(attempt)
            .bind(now_ms() + expires_in_ms)
            .bind(&id)
            .execute(self.hub.pool())
            .await
            .unwrap();
        (id.clone(), job::artifacts::artifact_key(&id))
    }

    async fn token(&self, artifact: &str, expires_in_ms: i64, used_ago_ms: Option<i64>) -> Vec<u8> {
        let hash = uuid::Uuid::new_v4().as_bytes().repeat(2);
        sqlx::query("INSERT INTO download_tokens (token_hash, artifact_id, created_ms, expires_ms, used_ms) VALUES (?, ?, ?, ?, ?)")
            .bind(&hash)
            .bind(artifact)
            .bind(now_ms())
            .bind(now_ms() + expires_in_ms)
            .bind(used_ago_ms.map(|ago| now_ms() - ago))
            .execute(self.hub.pool())
            .await
            .unwrap();
        hash
    }

    async fn has_token(&self, hash: &[u8]) -> bool {
        self.hub
            .db()
            .count(
                "download_tokens",
                &format!("token_hash = X'{}'", hex::encode(hash)),
            )
            .await
            == 1
    }

    async fn has_artifact(&self, id: &str) -> bool {
        self.hub
            .db()
            .count("artifacts", &format!("id = '{id}'"))
            .await
            == 1
    }

    async fn input_key(&self, job: &str) -> Option<String> {
        sqlx::query_scalar("SELECT input_key FROM jobs WHERE id = ?")
            .bind(job)
            .fetch_one(self.hub.pool())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn retention_deletes_what_expired_and_keeps_everything_still_needed() {
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("pro").await;
    let f = Fixture { hub, license };
    let day = 86_400_000;
    let hour = 3_600_000;

    // Jobs and their input tarballs.
    let old_done = f.job("completed", Some(8 * day)).await;
    let recent_failed = f.job("failed", Some(hour)).await;
    let active = f.job("queued", None).await;
    let shared_done = f.job("cancelled", Some(hour)).await;
    let shared_active = f.job("running", None).await;
    sqlx::query("UPDATE jobs SET input_key = ? WHERE id = ?")
        .bind(job::artifacts::tarball_key(&shared_done))
        .bind(&shared_active)
        .execute(f.hub.pool())
        .await
        .unwrap();
    for job in [&old_done, &recent_failed] {
        let mut tx = shared::db::begin(f.hub.pool()).await.unwrap();
        let line = protocol::Outgoing::Log {
            job_id: job.to_string(),
            stage: "compiling".into(),
            line: "building".into(),
            stream: "stdout".into(),
        };
        job::event::emit(&mut tx, job, line).await.unwrap();
        tx.commit().await.unwrap();
    }

    // Artifacts.
    let (visible_expired, visible_expired_key) = f.artifact(&recent_failed, "web", 1, -1).await;
    let (visible_live, visible_live_key) = f.artifact(&recent_failed, "web", 1, hour).await;
    let (bundle_done, bundle_done_key) = f
        .artifact(&recent_failed, "windows-precompiled", 1, hour)
        .await;
    let stage_two = f.job("queued", None).await;
    let (bundle_input, bundle_input_key) = f
        .artifact(&stage_two, "windows-precompiled", 1, -hour)
        .await;
    sqlx::query("UPDATE jobs SET attempt = 1, stage = 2, input_key = ? WHERE id = ?")
        .bind(&bundle_input_key)
        .bind(&stage_two)
        .execute(f.hub.pool())
        .await
        .unwrap();
    let finishing = f.job("finishing", None).await;
    exec(
        &f.hub,
        &format!("UPDATE jobs SET attempt = 2 WHERE id = '{finishing}'"),
    )
    .await;
    let (bundle_current, bundle_current_key) = f
        .artifact(&finishing, "windows-precompiled", 2, -hour)
        .await;
    let (bundle_stale, bundle_stale_key) = f
        .artifact(&finishing, "windows-precompiled", 1, -hour)
        .await;

    // Download tokens (grace: one hour by default).
    let token_expired_long_ago = f.token(&visible_live, -2 * hour, None).await;
    let token_just_expired = f.token(&visible_live, -60_000, None).await;
    let token_valid = f.token(&visible_live, hour, None).await;
    let token_used_long_ago = f.token(&visible_live, hour, Some(2 * hour)).await;
    let token_just_used = f.token(&visible_live, hour, Some(60_000)).await;
    let token_of_expired_artifact = f.token(&visible_expired, hour, None).await;

    // Outbox, rate limits, workers.
    f.hub.outbox_drained().await;
    exec(
        &f.hub,
        &format!("UPDATE outbox SET sent_ms = {}", now_ms() - 2 * hour),
    )
    .await;
    let now = now_ms();
    exec(&f.hub, &format!(
        "INSERT INTO outbox (exchange, routing_key, payload, created_ms, sent_ms) VALUES \
         ('events', 'keep.recent', '{{}}', {now}, {now}), ('events', 'keep.unsent', '{{}}', {old}, NULL)",
        old = now - 3 * hour
    ))
    .await;
    exec(
        &f.hub,
        &format!(
            "INSERT INTO rate_events (bucket, at_ms) VALUES ('old', {}), ('new', {})",
            now - 3 * hour,
            now - 60_000
        ),
    )
    .await;
    exec(&f.hub, &format!(
        "INSERT INTO workers (id, name, capabilities, max_concurrent, dispatcher_id, connected_ms, last_seen_ms, disconnected_ms) VALUES \
         (UUID(), 'gone', ',linux,', 1, 'd', 0, {a}, {a}), (UUID(), 'left', ',linux,', 1, 'd', 0, {b}, {b}), \
         (UUID(), 'here', ',linux,', 1, 'd', {now}, {now}, NULL), (UUID(), 'silent', ',linux,', 1, 'd', 0, {a}, NULL)",
        a = now - 2 * day,
        b = now - hour
    ))
    .await;

    let recent_events = f
        .hub
        .db()
        .count("job_events", &format!("job_id = '{recent_failed}'"))
        .await;
    assert!(recent_events > 0);
    let ctx = finisher::AppState::new(&f.hub.deps, settings(&[]));
    let report = retention::sweep(&ctx).await.unwrap();

    // Tarballs: released for finished jobs, kept while an active job reads them.
    for job in [&old_done, &recent_failed] {
        assert_eq!(f.input_key(job).await, None);
        assert!(!blob_exists(&f.hub, &job::artifacts::tarball_key(job)).await);
    }
    assert_eq!(f.input_key(&shared_done).await, None);
    assert!(
        blob_exists(&f.hub, &job::artifacts::tarball_key(&shared_done)).await,
        "still the input of a running job"
    );
    assert!(f.input_key(&active).await.is_some());
    assert!(blob_exists(&f.hub, &job::artifacts::tarball_key(&active)).await);
    // Artifacts.
    for (id, key) in [
        (&visible_expired, &visible_expired_key),
        (&bundle_done, &bundle_done_key),
        (&bundle_stale, &bundle_stale_key),
    ] {
        assert!(!f.has_artifact(id).await, "artifact {id} deleted");
        assert!(!blob_exists(&f.hub, key).await);
    }
    for (id, key) in [
        (&visible_live, &visible_live_key),
        (&bundle_input, &bundle_input_key),
        (&bundle_current, &bundle_current_key),
    ] {
        assert!(f.has_artifact(id).await, "artifact {id} kept");
        assert!(blob_exists(&f.hub, key).await);
    }
    // Tokens.
    for t in [
        &token_expired_long_ago,
        &token_used_long_ago,
        &token_of_expired_artifact,
    ] {
        assert!(!f.has_token(t).await);
    }
    for t in [&token_just_expired, &token_valid, &token_just_used] {
        assert!(f.has_token(t).await);
    }
    // Events, outbox, rate limits, workers.
    assert_eq!(
        f.hub
            .db()
            .count("job_events", &format!("job_id = '{old_done}'"))
            .await,
        0
    );
    assert_eq!(
        f.hub
            .db()
            .count("job_events", &format!("job_id = '{recent_failed}'"))
            .await,
        recent_events
    );
    assert_eq!(f.hub.db().count("outbox", "").await, 2);
    assert_eq!(
        f.hub
            .db()
            .count("outbox", "routing_key LIKE 'keep.%'")
            .await,
        2
    );
    assert_eq!(f.hub.db().count("rate_events", "").await, 1);
    let mut workers: Vec<String> = sqlx::query_scalar("SELECT name FROM workers")
        .fetch_all(f.hub.pool())
        .await
        .unwrap();
    workers.sort();
    assert_eq!(workers, vec!["here", "left"]);
    assert_eq!(
        (report.artifacts, report.workers, report.rate_events),
        (3, 2, 1)
    );

    // A second sweep finds nothing more.
    assert_eq!(
        retention::sweep(&ctx).await.unwrap(),
        retention::Report::default()
    );
    f.hub.stop().await;
}
