//! Worker tarball fetches under the job token.

use super::support::*;
use perry_hub_tests::put_bytes;
use reqwest::{header, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_worker_fetches_its_tarball_with_the_job_assign_token_and_the_job_starts_running() {
    let hub = hub().await;
    let tarball = bytes(123_457, 20);
    let (_, license) = hub.insert_license("pro").await;
    let mut worker = hub.worker("linux-dl-1", &["linux"], 1).await;
    let job_id = hub
        .insert_job(license, "linux", 10, &tarball, json!({}))
        .await;
    let assign = worker.assignment().await;
    assert_eq!(assign["job_id"], job_id.as_str());
    let url = assign["tarball_url"].as_str().expect("tarball_url");
    let token = assign["auth_token"].as_str().expect("auth_token");
    assert_eq!(hub.job_state(&job_id).await, "assigned");

    let resp = get(&hub, url, &[(header::AUTHORIZATION, &bearer(token))]).await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, "content-type"), "text/plain");
    assert_eq!(header_str(&resp, "x-tarball-sha256"), sha_hex(&tarball));
    assert_eq!(unb64(&resp.bytes().await.expect("body")), tarball);
    assert_eq!(hub.job_state(&job_id).await, "running");
    let started: Option<i64> = sqlx::query_scalar("SELECT started_ms FROM jobs WHERE id = ?")
        .bind(&job_id)
        .fetch_one(hub.pool())
        .await
        .expect("job");
    assert!(started.is_some());
    let audit = format!("kind = 'tarball' AND job_id = '{job_id}' AND attempt = 1 AND client_addr = '127.0.0.1' AND user_agent = '{UA}'");
    assert_eq!(hub.db().count("downloads", &audit).await, 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_raw_tarball_fetch_serves_bytes_and_ranges() {
    let hub = hub().await;
    let tarball = bytes(5_000, 21);
    let (job_id, token) = assigned_job(&hub, &tarball).await;
    let auth = bearer(&token);
    let url = tarball_url(&hub, &job_id);

    let resp = get(
        &hub,
        &url,
        &[(header::AUTHORIZATION, &auth), (header::ACCEPT, OCTET)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, "content-type"), OCTET);
    assert_eq!(resp.bytes().await.expect("body").to_vec(), tarball);

    let resp = get(
        &hub,
        &url,
        &[
            (header::AUTHORIZATION, &auth),
            (header::ACCEPT, OCTET),
            (header::RANGE, "bytes=10-19"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_str(&resp, "content-range"), "bytes 10-19/5000");
    assert_eq!(&resp.bytes().await.expect("body")[..], &tarball[10..20]);

    let resp = get(
        &hub,
        &url,
        &[
            (header::AUTHORIZATION, &auth),
            (header::ACCEPT, OCTET),
            (header::RANGE, "bytes=9000-"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header_str(&resp, "content-range"), "bytes */5000");
    assert_eq!(hub.job_state(&job_id).await, "running");
    hub.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_job_token_is_403_invalid_job_token() {
    let hub = hub().await;
    let (job_id, token) = assigned_job(&hub, b"tarball").await;
    let (other_job, other_token) = assigned_job(&hub, b"other").await;
    let url = tarball_url(&hub, &job_id);
    let wrong = [
        None,
        Some(bearer(&uuid::Uuid::new_v4().to_string())),
        Some(bearer(&other_token)),
        Some(format!("Basic {token}")),
        Some(token.clone()),
        Some(bearer(&format!("{token}x"))),
        Some(format!("Bearer junk{token}")),
        Some(bearer(&token.to_uppercase())),
    ];

    for auth in &wrong {
        let headers: Vec<_> = auth
            .iter()
            .map(|a| (header::AUTHORIZATION, a.as_str()))
            .collect();
        let (status, body) = refusal(get(&hub, &url, &headers).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{auth:?}");
        assert_eq!(body["error"]["code"], "FORBIDDEN");
        assert_eq!(body["error"]["message"], "Invalid job token");
    }

    assert_eq!(
        hub.job_state(&job_id).await,
        "assigned",
        "no refused fetch starts the job"
    );
    assert_eq!(hub.db().count("downloads", "").await, 0);
    assert_eq!(
        get(
            &hub,
            &tarball_url(&hub, &other_job),
            &[(header::AUTHORIZATION, &bearer(&other_token))]
        )
        .await
        .status(),
        StatusCode::OK
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_token_of_a_previous_attempt_is_403() {
    let hub = hub().await;
    let (job_id, old_token) = assigned_job(&hub, b"tarball bytes").await;
    let new_token = assign(&hub, &job_id, 2).await;
    let url = tarball_url(&hub, &job_id);

    let (status, body) =
        refusal(get(&hub, &url, &[(header::AUTHORIZATION, &bearer(&old_token))]).await).await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let resp = get(&hub, &url, &[(header::AUTHORIZATION, &bearer(&new_token))]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(unb64(&resp.bytes().await.expect("body")), b"tarball bytes");
    assert_eq!(
        hub.db()
            .count("downloads", &format!("job_id = '{job_id}' AND attempt = 2"))
            .await,
        1
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_job_that_is_not_assigned_or_running_refuses_its_token() {
    let hub = hub().await;
    let (job_id, token) = assigned_job(&hub, b"tarball").await;
    let auth = bearer(&token);
    let url = tarball_url(&hub, &job_id);

    for state in ["queued", "finishing", "completed", "failed", "cancelled"] {
        // Keep the token hash on purpose: the state alone must refuse the fetch.
        sqlx::query("UPDATE jobs SET state = ? WHERE id = ?")
            .bind(state)
            .bind(&job_id)
            .execute(hub.pool())
            .await
            .expect("state");
        let (status, _) = refusal(get(&hub, &url, &[(header::AUTHORIZATION, &auth)]).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{state}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn path_tricks_in_the_job_id_are_404_and_never_reach_the_store() {
    let hub = fs_hub().await;
    let (job_id, token) = assigned_job(&hub, b"tarball").await;
    let auth = bearer(&token);
    let upper = job_id.to_uppercase();
    let overlong = format!("{job_id}{}", "0".repeat(5_000));
    let targets = [
        "..%2F..%2F..%2Fetc%2Fpasswd".to_owned(),
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_owned(),
        format!("{job_id}%2F..%2F..%2Fartifacts"),
        format!("..%2Ftarballs%2F{job_id}"),
        format!("tarballs%2F{job_id}"),
        format!("{job_id}%00"),
        "%ff%fe".to_owned(),
        "..".to_owned(),
        upper,
        overlong,
        "a".repeat(10_000),
    ];

    for target in &targets {
        let (status, body) = raw_get(
            &hub,
            &format!("/api/v1/tarball/{target}"),
            &[("Authorization", &auth)],
        )
        .await;
        assert_eq!(status, 404, "{target}");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{target}");
    }
    for target in [
        format!("{job_id}/.."),
        format!("{job_id}/../../x"),
        format!("x/{job_id}"),
    ] {
        let (status, body) = raw_get(
            &hub,
            &format!("/api/v1/tarball/{target}"),
            &[("Authorization", &auth)],
        )
        .await;
        assert_eq!(status, 404, "{target}");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{target}");
    }

    assert_eq!(hub.job_state(&job_id).await, "assigned");
    assert_eq!(hub.db().count("downloads", "").await, 0);
    let (status, _) = raw_get(
        &hub,
        &format!("/api/v1/tarball/{}", uuid::Uuid::new_v4()),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 403, "an unknown job is answered like a wrong token");
    hub.stop().await;
}

#[tokio::test]
async fn a_missing_tarball_blob_is_404_not_found_and_the_job_does_not_start() {
    let hub = hub().await;
    let (job_id, token) = assigned_job(&hub, b"tarball").await;
    hub.deps
        .blob
        .delete(&job::artifacts::tarball_key(&job_id))
        .await
        .expect("delete blob");
    let auth = bearer(&token);

    for accept in ["text/plain", OCTET] {
        let (status, body) = refusal(
            get(
                &hub,
                &tarball_url(&hub, &job_id),
                &[(header::AUTHORIZATION, &auth), (header::ACCEPT, accept)],
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "NOT_FOUND");
        assert_eq!(body["error"]["message"], "Tarball not found");
    }

    sqlx::query("UPDATE jobs SET input_key = NULL WHERE id = ?")
        .bind(&job_id)
        .execute(hub.pool())
        .await
        .expect("no input");
    let (status, _) = refusal(
        get(
            &hub,
            &tarball_url(&hub, &job_id),
            &[(header::AUTHORIZATION, &auth)],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(hub.job_state(&job_id).await, "assigned");
    hub.stop().await;
}

#[tokio::test]
async fn a_windows_sign_job_fetches_the_stage_one_precompiled_bundle() {
    let hub = hub().await;
    let (job_id, _) = assigned_job(&hub, b"the original source tarball").await;
    // What the finisher does at the hand-off: the stage-1 bundle becomes the job's input.
    let bundle = bytes(40_000, 22);
    let bundle_id = uuid::Uuid::new_v4().to_string();
    let bundle_key = job::artifacts::artifact_key(&bundle_id);
    put_bytes(&hub.deps.blob, &bundle_key, bundle.clone()).await;
    sqlx::query(
        "UPDATE jobs SET stage = 2, target = 'windows-sign', input_key = ?, input_size = ?, input_sha256 = ? WHERE id = ?",
    )
    .bind(&bundle_key)
    .bind(40_000_i64)
    .bind(sha_hex(&bundle))
    .bind(&job_id)
    .execute(hub.pool())
    .await
    .expect("stage 2");
    let token = assign(&hub, &job_id, 2).await;

    let resp = get(
        &hub,
        &tarball_url(&hub, &job_id),
        &[(header::AUTHORIZATION, &bearer(&token))],
    )
    .await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, "x-tarball-sha256"), sha_hex(&bundle));
    assert_eq!(unb64(&resp.bytes().await.expect("body")), bundle);
    assert_eq!(hub.job_state(&job_id).await, "running");
    hub.stop().await;
}
