//! `GET /api/v1/jobs/{job_id}` (licence-scoped job status) and the OpenAPI document.

use perry_hub_tests::TestHub;
use serde_json::json;

use super::support::{self, assert_error, cli_form, manifest};

#[tokio::test]
async fn job_status_is_scoped_to_its_licence_or_account() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let other = hub.registered_license().await;
    let build = hub
        .submit_build(
            cli_form(&manifest("macos", "com.example.js"), &json!({}), b"t", &key),
            &[],
        )
        .await;
    let job_id = build.1["job_id"].as_str().expect("job").to_owned();
    let path = format!("/api/v1/jobs/{job_id}");

    let (status, body) = hub
        .get_json(&path, &[("authorization", &format!("Bearer {key}"))])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["state"].as_str(),
            body["target"].as_str(),
            body["stage"].as_u64(),
            body["position"].as_u64()
        ),
        (Some("queued"), Some("macos"), Some(1), Some(1))
    );
    assert_eq!(
        (
            body["attempts"].as_u64(),
            body["artifacts"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );

    assert_error(
        &hub.get_json(&path, &[("authorization", &format!("Bearer {other}"))])
            .await,
        404,
        "JOB_NOT_FOUND",
    );
    assert_error(
        &hub.get_json(
            "/api/v1/jobs/0f8fad5b-d9cb-469f-a165-70867728950e",
            &[("authorization", &format!("Bearer {key}"))],
        )
        .await,
        404,
        "JOB_NOT_FOUND",
    );
    assert_error(&hub.get_json(&path, &[]).await, 401, "AUTH_REQUIRED");
    assert_error(
        &hub.get_json(&path, &[("authorization", "Bearer FREE-0000-0000-0000")])
            .await,
        401,
        "AUTH_INVALID",
    );

    let (_, token) = hub.new_account(31).await;
    let token_h = format!("Bearer {token}");
    let mine = hub
        .submit_build(
            cli_form(&manifest("linux", "com.example.mine"), &json!({}), b"t", ""),
            &[("authorization", &token_h)],
        )
        .await;
    let mine_path = format!("/api/v1/jobs/{}", mine.1["job_id"].as_str().expect("job"));
    assert_eq!(
        hub.get_json(&mine_path, &[("authorization", &token_h)])
            .await
            .0,
        200
    );
    assert_error(
        &hub.get_json(&path, &[("authorization", &token_h)]).await,
        404,
        "JOB_NOT_FOUND",
    );
    hub.stop().await;
}

#[tokio::test]
async fn job_status_hands_out_fresh_links_to_visible_artifacts() {
    let hub = TestHub::start().await;
    let (job_id, token, _worker) = hub.assigned_job().await;
    let up = hub
        .upload_artifact(
            &job_id,
            "text/plain",
            support::b64(b"done").into_bytes(),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-artifact-name", "demo.tar.gz"),
            ],
        )
        .await;
    assert_eq!(up.0, 200, "{}", up.1);
    // The job's licence key stays inside assigned_job: link its licence to an account instead.
    let (account_id, api_token) = hub.new_account(64).await;
    sqlx::query(
        "UPDATE licenses SET account_id = ? WHERE id = (SELECT license_id FROM jobs WHERE id = ?)",
    )
    .bind(&account_id)
    .bind(&job_id)
    .execute(hub.pool())
    .await
    .expect("link");

    let (status, body) = hub
        .get_job(
            &job_id,
            &[("authorization", &format!("Bearer {api_token}"))],
        )
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "running");
    let artifact = &body["artifacts"][0];
    assert_eq!(
        (artifact["name"].as_str(), artifact["size"].as_u64()),
        (Some("demo.tar.gz"), Some(4))
    );
    let link = artifact["download_url"].as_str().expect("link");
    assert_ne!(link, up.1["download_url"].as_str().expect("first link"));
    assert_eq!(
        hub.http.get(link).send().await.expect("download").status(),
        200
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let hub = TestHub::start().await;

    let (status, doc) = hub.get_openapi().await;

    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/api/v1/build",
        "/api/v1/artifact/upload/{job_id}",
        "/api/v1/jobs/{job_id}",
        "/api/v1/license/register",
        "/api/v1/admin/workers",
        "/api/v1/admin/jobs",
        "/api/v1/admin/jobs/{job_id}/requeue",
        "/api/v1/admin/workers/{name}/drain",
        "/api/v1/admin/queues",
        "/api/v1/admin/outbox/replay",
        "/api/v1/admin/licenses/{id}/tier",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    // Every reference of the document resolves to a schema it defines.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap_or_default();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    hub.stop().await;
}

#[tokio::test]
async fn job_status_shows_the_reason_the_worker_gave_for_a_failed_build() {
    let hub = TestHub::start().await;
    let (key, license) = hub.insert_license("pro").await;
    let auth = format!("Bearer {key}");
    let reported = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let only_complete = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("w", &["linux"], 2).await;
    worker.assignment().await;
    worker.assignment().await;

    // `error` then `complete{success:false}` naming another reason: the first error wins.
    worker.send(json!({"type":"error","job_id":reported,"code":"INTERNAL_ERROR","message":"Compilation failed: missing main","stage":"compiling"})).await;
    let (_, running) = hub.get_job(&reported, &[("authorization", &auth)]).await;
    worker.send(json!({"type":"complete","job_id":reported,"success":false,"duration_secs":1.0,"artifacts":[],"error":"pipeline aborted"})).await;
    // Only `complete{success:false, error}`.
    worker.send(json!({"type":"complete","job_id":only_complete,"success":false,"duration_secs":1.0,"artifacts":[],"error":"Tarball corrupt"})).await;
    hub.wait_state(&reported, "failed").await;
    hub.wait_state(&only_complete, "failed").await;

    let (status, body) = hub.get_job(&reported, &[("authorization", &auth)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["error"],
        "Build failed: Compilation failed: missing main"
    );
    let (_, body) = hub
        .get_job(&only_complete, &[("authorization", &auth)])
        .await;
    assert_eq!(body["error"], "Build failed: Tarball corrupt");
    // Before the `complete`, the reason could already be read (or the job was still running
    // without one when the request raced the frame).
    assert!(
        running["error"].is_null() || running["error"] == "Compilation failed: missing main",
        "{running}"
    );
    hub.stop().await;
}
