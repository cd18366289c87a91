//! Accepted build submissions: what lands in MySQL, S3 and RabbitMQ.

use futures_util::TryStreamExt;
use perry_hub_tests::TestHub;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::auth::CredentialCipher;

use super::support::{self, b64, cli_form, manifest, multipart};

async fn blob_bytes(hub: &TestHub, key: &str) -> Vec<u8> {
    let object = hub.deps.blob.get(key, None).await.expect("blob");
    let chunks: Vec<bytes::Bytes> = object.body.try_collect().await.expect("read blob");
    chunks.concat()
}

#[tokio::test]
async fn a_cli_submission_lands_in_mysql_s3_and_rabbitmq() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let tarball: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let m = manifest("linux", "com.example.demo");
    let credentials = json!({"apple_p8_key": "p8-secret-value", "android_keystore_password": null});

    let (status, body) = hub
        .submit_build(
            cli_form(&m, &credentials, &tarball, &format!(" {key}\n")),
            &[],
        )
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ws_url"], "/ws");
    assert_eq!(body["position"], 1);
    let job_id = body["job_id"].as_str().expect("job_id").to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&job_id)
            .expect("uuid")
            .get_version_num(),
        4
    );
    type Row = (
        String,
        String,
        String,
        i16,
        shared::db::Text,
        Option<Vec<u8>>,
        Option<String>,
        Option<i64>,
        Option<String>,
        String,
    );
    let row: Row = sqlx::query_as(
        "SELECT state, target, original_target, priority, manifest, credentials_enc, input_key, input_size, input_sha256, project \
         FROM jobs WHERE id = ?",
    )
    .bind(&job_id)
    .fetch_one(hub.pool())
    .await
    .expect("job row");
    assert_eq!(
        (row.0.as_str(), row.1.as_str(), row.2.as_str(), row.3),
        ("queued", "linux", "linux", 1)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&row.4 .0).expect("manifest"),
        m
    );
    let sealed = row.5.expect("sealed credentials");
    assert!(!sealed
        .windows(b"p8-secret-value".len())
        .any(|w| w == b"p8-secret-value"));
    let cipher = CredentialCipher::new(&hub.deps.hub.credentials_key().expect("key"));
    let opened: Value =
        serde_json::from_slice(&cipher.open(&sealed, job_id.as_bytes()).expect("open"))
            .expect("json");
    assert_eq!(opened, credentials);
    assert_eq!(
        row.6.as_deref(),
        Some(job::artifacts::tarball_key(&job_id).as_str())
    );
    assert_eq!(row.7, Some(tarball.len() as i64));
    assert_eq!(row.8, Some(hex::encode(Sha256::digest(&tarball))));
    assert_eq!(row.9, "com.example.demo");
    assert_eq!(
        blob_bytes(&hub, &job::artifacts::tarball_key(&job_id)).await,
        tarball
    );
    let db = hub.db();
    assert_eq!(
        db.count(
            "outbox",
            &format!("payload LIKE '%job_queued%' AND payload LIKE '%{job_id}%'")
        )
        .await,
        1
    );
    assert_eq!(
        db.count("licenses", "bound_project = 'com.example.demo'")
            .await,
        1
    );
    assert_eq!(db.count("rate_events", "bucket LIKE 'build:%'").await, 1);

    let mut worker = hub.worker("linux-1", &["linux"], 1).await;
    let assign = worker.assignment().await;
    assert_eq!(assign["job_id"], job_id.as_str());
    assert_eq!(assign["manifest"], m);
    // The Linux builder gets only the fields it reads (DEC-25): never the Apple key.
    assert_eq!(
        assign["credentials"],
        json!({"android_keystore_password": null})
    );
    assert!(assign["tarball_url"]
        .as_str()
        .is_some_and(|u| u.ends_with(&format!("/api/v1/tarball/{job_id}"))));
    hub.stop().await;
}

#[tokio::test]
async fn a_raw_tarball_with_header_metadata_is_accepted_and_verified() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let tarball = b"raw tarball bytes, not base64 \x00\x01\x02".to_vec();
    let m = manifest("android", "com.example.raw");
    let m64 = b64(m.to_string().as_bytes());
    let digest = hex::encode(Sha256::digest(&tarball));

    let headers = [
        ("x-perry-manifest", m64.as_str()),
        ("x-perry-license-key", key.as_str()),
        ("x-tarball-sha256", digest.as_str()),
    ];
    let (status, body) = hub.submit_raw_build(tarball.clone(), &headers).await;

    assert_eq!(status, 200, "{body}");
    let job_id = body["job_id"].as_str().expect("job_id").to_owned();
    assert_eq!(
        blob_bytes(&hub, &job::artifacts::tarball_key(&job_id)).await,
        tarball
    );
    assert_eq!(hub.job_state(&job_id).await, "queued");

    let wrong = "00".repeat(32);
    let headers = [
        ("x-perry-manifest", m64.as_str()),
        ("x-perry-license-key", key.as_str()),
        ("x-tarball-sha256", wrong.as_str()),
    ];
    let before = support::leftovers(&hub).await;
    let refused = hub.submit_raw_build(tarball, &headers).await;
    support::assert_error(&refused, 400, "BAD_REQUEST");
    assert_eq!(support::leftovers(&hub).await, before);
    hub.stop().await;
}

#[tokio::test]
async fn a_tarball_file_part_is_stored_without_base64_decoding() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let tarball = b"\x1f\x8b binary gzip-ish bytes".to_vec();
    let mut body = Vec::new();
    body.extend_from_slice(
        &multipart(&[(
            "manifest",
            manifest("linux", "com.example.file").to_string().as_bytes(),
        )])[..],
    );
    // Drop the closing delimiter and append a file part and the key.
    body.truncate(body.len() - (support::BOUNDARY.len() + 6));
    body.extend_from_slice(
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"tarball\"; filename=\"project.tar.gz\"\r\nContent-Type: application/gzip\r\n\r\n",
            b = support::BOUNDARY
        )
        .as_bytes(),
    );
    body.extend_from_slice(&tarball);
    body.extend_from_slice(format!("\r\n--{b}\r\nContent-Disposition: form-data; name=\"license_key\"\r\n\r\n{key}\r\n--{b}--\r\n", b = support::BOUNDARY).as_bytes());

    let (status, answer) = hub.submit_build(body, &[]).await;

    assert_eq!(status, 200, "{answer}");
    let job_id = answer["job_id"].as_str().expect("job_id");
    assert_eq!(
        blob_bytes(&hub, &job::artifacts::tarball_key(job_id)).await,
        tarball
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_bearer_path_creates_one_unbound_account_licence_with_the_account_tier() {
    let hub = TestHub::start().await;
    let (account_id, token) = hub.new_account(4242).await;
    let admin = format!("Bearer {}", hub.admin_secret());
    let update = json!({"account_id": account_id, "tier": "pro"});
    assert_eq!(
        hub.update_account(&update, &[("authorization", &admin)])
            .await
            .0,
        200
    );
    let bearer = format!("Bearer {token}");

    let mut jobs = Vec::new();
    for bundle in ["com.example.one", "com.example.two"] {
        let form = cli_form(
            &manifest("windows", bundle),
            &json!({}),
            b"tar",
            "FREE-0000-0000-0000",
        );
        let (status, body) = hub.submit_build(form, &[("authorization", &bearer)]).await;
        assert_eq!(status, 200, "{body}");
        jobs.push(body["job_id"].as_str().expect("job_id").to_owned());
    }

    let db = hub.db();
    assert_eq!(
        db.count(
            "licenses",
            &format!("account_id = '{account_id}' AND device_bound = FALSE AND tier = 'pro'")
        )
        .await,
        1
    );
    assert_eq!(db.count("licenses", "bound_project IS NOT NULL").await, 0);
    assert_eq!(
        db.count("jobs", "priority = 10 AND target = 'windows'")
            .await,
        2
    );
    hub.stop().await;
}

#[tokio::test]
async fn an_api_token_sent_as_the_licence_key_takes_the_bearer_path() {
    let hub = TestHub::start().await;
    let (account_id, token) = hub.new_account(77).await;

    let (status, body) = hub
        .submit_build(
            cli_form(
                &manifest("linux", "com.example.a10"),
                &json!({}),
                b"t",
                &token,
            ),
            &[],
        )
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        hub.db()
            .count("licenses", &format!("account_id = '{account_id}'"))
            .await,
        1
    );
    hub.stop().await;
}

#[tokio::test]
async fn an_idempotent_retry_answers_the_first_job_and_creates_nothing() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let form = || {
        cli_form(
            &manifest("linux", "com.example.idem"),
            &json!({}),
            b"same tarball",
            &key,
        )
    };
    let first = hub
        .submit_build(form(), &[("idempotency-key", "retry-1")])
        .await;
    assert_eq!(first.0, 200, "{}", first.1);
    let before = support::leftovers(&hub).await;

    let retry = hub
        .submit_build(form(), &[("idempotency-key", "retry-1")])
        .await;

    assert_eq!(retry.0, 200, "{}", retry.1);
    assert_eq!(retry.1, first.1);
    assert_eq!(support::leftovers(&hub).await, before);
    let other = hub
        .submit_build(form(), &[("idempotency-key", "retry-2")])
        .await;
    assert_eq!(other.0, 200);
    assert_ne!(other.1["job_id"], first.1["job_id"]);
    assert_eq!(other.1["position"], 2);
    // Keys compare exactly: another case is another key.
    let upper = hub
        .submit_build(form(), &[("idempotency-key", "RETRY-1")])
        .await;
    assert_eq!(upper.0, 200, "{}", upper.1);
    assert_ne!(upper.1["job_id"], first.1["job_id"]);
    assert_eq!(upper.1["position"], 3);
    hub.stop().await;
}

#[tokio::test]
async fn a_free_licence_may_rebuild_its_own_project() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    for _ in 0..2 {
        let (status, body) = hub
            .submit_build(
                cli_form(
                    &manifest("linux", "com.example.same"),
                    &json!({}),
                    b"t",
                    &key,
                ),
                &[],
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        hub.db().count("jobs", "project = 'com.example.same'").await,
        2
    );
    hub.stop().await;
}
