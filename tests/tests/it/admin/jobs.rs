//! Jobs: list with filters and paging, one job in full, cancel, requeue.

use perry_hub_tests::{api::assert_error, TestHub};
use serde_json::{json, Value};

use super::{admin_get, admin_post};

fn ids(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["job_id"].as_str().expect("job_id").to_owned())
        .collect()
}

#[tokio::test]
async fn jobs_are_listed_newest_first_filtered_and_paged() {
    let hub = TestHub::start().await;
    let (_, lic_a) = hub.insert_license("pro").await;
    let (_, lic_b) = hub.insert_license("free").await;
    let mut a_jobs = Vec::new();
    for _ in 0..3 {
        a_jobs.push(hub.insert_job(lic_a, "linux", 10, b"t", json!({})).await);
    }
    let b_job = hub.insert_job(lic_b, "android", 1, b"t", json!({})).await;

    // Without the admin secret: 403, and never with a wrong one.
    assert_error(
        &hub.get_json("/api/v1/admin/jobs", &[]).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &hub.get_json(
            "/api/v1/admin/jobs",
            &[("authorization", "Bearer wrong-secret-0000000")],
        )
        .await,
        403,
        "FORBIDDEN",
    );

    let (status, all) = admin_get(&hub, "/api/v1/admin/jobs").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all).len(), 4);
    assert!(all["next_cursor"].is_null());

    // Pages of two cover every job exactly once.
    let (_, first) = admin_get(&hub, "/api/v1/admin/jobs?limit=2").await;
    let cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, second) = admin_get(&hub, &format!("/api/v1/admin/jobs?limit=2&cursor={cursor}")).await;
    let mut paged = ids(&first);
    paged.extend(ids(&second));
    assert_eq!(paged, ids(&all));
    assert!(second["next_cursor"].is_null());

    let (_, android) = admin_get(&hub, "/api/v1/admin/jobs?target=android").await;
    assert_eq!(ids(&android), vec![b_job.clone()]);
    let (_, of_a) = admin_get(
        &hub,
        &format!("/api/v1/admin/jobs?license_id={lic_a}&state=queued"),
    )
    .await;
    let mut got = ids(&of_a);
    got.sort();
    a_jobs.sort();
    assert_eq!(got, a_jobs);
    assert_eq!(of_a["jobs"][0]["state"], "queued");
    let (_, none) = admin_get(&hub, "/api/v1/admin/jobs?state=completed,failed").await;
    assert!(ids(&none).is_empty());
    let (_, future) = admin_get(&hub, "/api/v1/admin/jobs?since_ms=99999999999999").await;
    assert!(ids(&future).is_empty());

    let (account, _) = hub.new_account(77).await;
    sqlx::query("UPDATE licenses SET account_id = ? WHERE id = ?")
        .bind(&account)
        .bind(lic_b)
        .execute(hub.pool())
        .await
        .unwrap();
    let (_, of_account) =
        admin_get(&hub, &format!("/api/v1/admin/jobs?account_id={account}")).await;
    assert_eq!(ids(&of_account), vec![b_job.clone()]);
    assert_eq!(of_account["jobs"][0]["account_id"], account.as_str());

    // Bad filters are refused by name.
    assert_error(
        &admin_get(&hub, "/api/v1/admin/jobs?state=done").await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &admin_get(&hub, "/api/v1/admin/jobs?target=amiga").await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &admin_get(&hub, "/api/v1/admin/jobs?limit=0").await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &admin_get(&hub, "/api/v1/admin/jobs?colour=red").await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &admin_get(&hub, "/api/v1/admin/jobs?cursor=garbage").await,
        400,
        "BAD_REQUEST",
    );
    hub.stop().await;
}

#[tokio::test]
async fn one_job_shows_its_attempts_events_and_artifacts() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let job_id = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("linux-a", &["linux"], 1).await;
    worker.assignment().await;
    hub.insert_artifact(&job_id, "app.tar.gz", "linux", b"bytes")
        .await;

    let (status, job) = admin_get(&hub, &format!("/api/v1/admin/jobs/{job_id}")).await;

    assert_eq!(status, 200, "{job}");
    assert_eq!(job["job_id"], job_id.as_str());
    assert_eq!(job["state"], "assigned");
    assert_eq!(job["worker_name"], "linux-a");
    assert_eq!(job["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(job["attempts"][0]["worker_name"], "linux-a");
    assert_eq!(job["attempts"][0]["attempt"], 1);
    assert_eq!(job["artifacts"][0]["name"], "app.tar.gz");
    assert_eq!(job["artifacts"][0]["size"], 5);
    let kinds: Vec<&str> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"artifact_ready"), "{kinds:?}");
    // Paging the events: nothing after the last one.
    let last = job["events"].as_array().unwrap().last().unwrap()["seq"]
        .as_i64()
        .unwrap();
    let (_, tail) = admin_get(
        &hub,
        &format!("/api/v1/admin/jobs/{job_id}?after_seq={last}"),
    )
    .await;
    assert_eq!(tail["events"], json!([]));

    assert_error(
        &admin_get(
            &hub,
            "/api/v1/admin/jobs/00000000-0000-0000-0000-000000000000",
        )
        .await,
        404,
        "JOB_NOT_FOUND",
    );
    hub.stop().await;
}

#[tokio::test]
async fn cancel_ends_a_waiting_job_and_tells_the_worker_of_a_held_one() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let waiting = hub.insert_job(license, "macos", 10, b"t", json!({})).await;
    let held = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("linux-c", &["linux"], 1).await;
    worker.assignment().await;

    let (status, body) = admin_post(
        &hub,
        &format!("/api/v1/admin/jobs/{waiting}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"job_id": waiting, "result": "cancelled", "state": "cancelled"})
    );
    assert_eq!(hub.job_state(&waiting).await, "cancelled");
    // An ended job cannot be cancelled again.
    let again = admin_post(
        &hub,
        &format!("/api/v1/admin/jobs/{waiting}/cancel"),
        &json!({}),
    )
    .await;
    assert_error(&again, 409, "CONFLICT");

    let (status, body) = admin_post(
        &hub,
        &format!("/api/v1/admin/jobs/{held}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "cancel_requested");
    let cancel = worker.ws.expect("cancel").await;
    assert_eq!(cancel["job_id"], held.as_str());
    worker.send(json!({"type":"complete","job_id":held,"success":false,"duration_secs":0.1,"artifacts":[]})).await;
    hub.wait_state(&held, "cancelled").await;

    let missing = admin_post(&hub, "/api/v1/admin/jobs/nope/cancel", &json!({})).await;
    assert_error(&missing, 404, "JOB_NOT_FOUND");
    hub.stop().await;
}

#[tokio::test]
async fn a_failed_job_runs_again_after_a_requeue() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let job_id = hub.submit_linux_build(&key).await;
    let mut worker = hub.worker("linux-r", &["linux"], 1).await;
    assert_eq!(worker.assignment().await["job_id"], job_id.as_str());
    // Only a failed job can be requeued.
    let early = admin_post(
        &hub,
        &format!("/api/v1/admin/jobs/{job_id}/requeue"),
        &json!({}),
    )
    .await;
    assert_error(&early, 409, "CONFLICT");
    worker.send(json!({"type":"complete","job_id":job_id,"success":false,"duration_secs":0.1,"artifacts":[],"error":"flaky"})).await;
    hub.wait_state(&job_id, "failed").await;

    let (status, body) = admin_post(
        &hub,
        &format!("/api/v1/admin/jobs/{job_id}/requeue"),
        &json!({}),
    )
    .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"job_id": job_id, "result": "requeued", "state": "queued"})
    );
    let again = worker.assignment().await;
    assert_eq!(again["job_id"], job_id.as_str());
    let (_, job) = admin_get(&hub, &format!("/api/v1/admin/jobs/{job_id}")).await;
    assert_eq!(job["state"], "assigned");
    assert!(job["error"].is_null(), "{job}");
    let attempts: Vec<i64> = job["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, vec![1, 2]);
    hub.stop().await;
}

#[tokio::test]
async fn a_failed_job_whose_credentials_were_discarded_is_not_requeued() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    // Submitted with sealed signing credentials, which a failure discards.
    let job_id = hub
        .insert_job(
            license,
            "linux",
            10,
            b"t",
            json!({"apple_id": "dev@example.com"}),
        )
        .await;
    let mut worker = hub.worker("linux-s", &["linux"], 1).await;
    worker.assignment().await;
    worker.send(json!({"type":"complete","job_id":job_id,"success":false,"duration_secs":0.1,"artifacts":[]})).await;
    hub.wait_state(&job_id, "failed").await;

    let refused = admin_post(
        &hub,
        &format!("/api/v1/admin/jobs/{job_id}/requeue"),
        &json!({}),
    )
    .await;

    assert_error(&refused, 409, "CONFLICT");
    assert!(refused.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("credentials"));
    assert_eq!(hub.job_state(&job_id).await, "failed");
    hub.stop().await;
}

#[tokio::test]
async fn a_failed_job_whose_input_is_gone_is_not_requeued() {
    let hub = TestHub::start().await;
    let key = hub.registered_license().await;
    let job_id = hub.submit_linux_build(&key).await;
    let mut worker = hub.worker("linux-g", &["linux"], 1).await;
    worker.assignment().await;
    worker.send(json!({"type":"complete","job_id":job_id,"success":false,"duration_secs":0.1,"artifacts":[]})).await;
    hub.wait_state(&job_id, "failed").await;
    let input: String = sqlx::query_scalar("SELECT input_key FROM jobs WHERE id = ?")
        .bind(&job_id)
        .fetch_one(hub.pool())
        .await
        .unwrap();
    hub.deps.blob.delete(&input).await.unwrap();

    let refused = admin_post(
        &hub,
        &format!("/api/v1/admin/jobs/{job_id}/requeue"),
        &json!({}),
    )
    .await;

    assert_error(&refused, 409, "CONFLICT");
    assert!(refused.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("input"));
    assert_eq!(hub.job_state(&job_id).await, "failed");
    hub.stop().await;
}
