//! Rows a test puts into its hub's database directly: licences, jobs with their tarballs, and
//! artifacts with their bytes.

use blob::PutOptions;
use serde_json::{json, Value};
use shared::{auth, clock::now_ms};

use crate::TestHub;

impl TestHub {
    /// Insert a license directly; returns (key, id).
    pub async fn insert_license(&self, tier: &str) -> (String, i64) {
        let prefix = if tier == "pro" { "PRO" } else { "FREE" };
        let (key, hash) = auth::new_license_key(prefix);
        let mut conn = self.pool().acquire().await.expect("connection");
        let res = sqlx::query("INSERT INTO licenses (key_hash, tier, device_bound, created_ms) VALUES (?, ?, TRUE, ?)")
            .bind(&hash[..])
            .bind(tier)
            .bind(now_ms())
            .execute(&mut *conn)
            .await
            .expect("insert license");
        (
            key,
            shared::db::inserted_id(&mut conn, &res).await.expect("id"),
        )
    }

    /// Create a queued job directly (as ingest would), with `tarball` stored; returns its id.
    pub async fn insert_job(
        &self,
        license_id: i64,
        target: &str,
        priority: i16,
        tarball: &[u8],
        credentials: Value,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let key = job::artifacts::tarball_key(&id);
        let stream = blob::stream_from_bytes(tarball.to_vec());
        let put = self
            .deps
            .blob
            .put(&key, stream, PutOptions::new(u64::MAX))
            .await
            .expect("put tarball");
        let manifest = json!({"app_name":"app","bundle_id":"com.example.app","version":"1.0.0","entry":"src/main.ts","targets":[target]});
        let key_bytes = self.deps.hub.credentials_key().expect("key");
        let sealed = auth::CredentialCipher::new(&key_bytes)
            .seal(credentials.to_string().as_bytes(), id.as_bytes())
            .expect("seal");
        let target = job::Target::parse(target).expect("known target");
        let manifest = manifest.to_string();
        let sha256 = hex::encode(put.sha256);
        let new = job::transition::NewJob {
            id: &id,
            license_id,
            project: "com.example.app",
            target: &target,
            priority: job::Priority(u8::try_from(priority).expect("priority")),
            manifest: &manifest,
            credentials_enc: Some(sealed),
            input: (&key, i64::try_from(put.size).expect("size"), &sha256),
            idempotency_key: None,
            now_ms: now_ms(),
        };
        let mut tx = shared::db::begin(self.pool()).await.expect("tx");
        job::transition::submit(&mut tx, &new)
            .await
            .expect("insert job");
        tx.commit().await.expect("commit");
        self.deps.notify_outbox();
        id
    }

    /// Store an artifact for the job's current attempt (blob, row, and the `artifact_ready`
    /// event unless the target is intermediate). Returns the artifact id.
    pub async fn insert_artifact(
        &self,
        job_id: &str,
        name: &str,
        target: &str,
        data: &[u8],
    ) -> String {
        self.store_artifact(job_id, name, target, data, true).await
    }

    /// Store an artifact for the job's current attempt without any `artifact_ready` (as when
    /// the notice of an upload reached no session). Returns the artifact id.
    pub async fn insert_artifact_silently(
        &self,
        job_id: &str,
        name: &str,
        target: &str,
        data: &[u8],
    ) -> String {
        self.store_artifact(job_id, name, target, data, false).await
    }

    async fn store_artifact(
        &self,
        job_id: &str,
        name: &str,
        target: &str,
        data: &[u8],
        announce: bool,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let key = job::artifacts::artifact_key(&id);
        let put = self
            .deps
            .blob
            .put(
                &key,
                blob::stream_from_bytes(data.to_vec()),
                PutOptions::new(u64::MAX),
            )
            .await
            .expect("put artifact");
        let hidden = job::artifacts::is_intermediate_target(target);
        let mut tx = shared::db::begin(self.pool()).await.expect("tx");
        let attempt: i32 = sqlx::query_scalar("SELECT attempt FROM jobs WHERE id = ?")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await
            .expect("job");
        let now = now_ms();
        sqlx::query(
            "INSERT INTO artifacts (id, job_id, attempt, name, target, size, sha256, blob_key, hidden, created_ms, expires_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(job_id)
        .bind(attempt)
        .bind(name)
        .bind(target)
        .bind(i64::try_from(put.size).expect("size"))
        .bind(put.sha256_hex())
        .bind(&key)
        .bind(hidden)
        .bind(now)
        .bind(now + 3_600_000)
        .execute(&mut *tx)
        .await
        .expect("insert artifact");
        if announce && !hidden {
            let event = job::Event::ArtifactReady(job::event::ArtifactRecord {
                job_id: job_id.to_owned(),
                artifact_id: id.clone(),
                target: target.to_owned(),
                artifact_name: name.to_owned(),
                artifact_size: put.size,
                sha256: put.sha256_hex(),
            });
            job::event::append(&mut tx, job_id, &event)
                .await
                .expect("event");
        }
        tx.commit().await.expect("commit");
        self.deps.notify_outbox();
        id
    }
}
