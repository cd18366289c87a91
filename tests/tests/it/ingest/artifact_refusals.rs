//! Refused worker artifact uploads: every rejection in the order of §3.9, and the token of an
//! earlier attempt, keeping nothing.

use perry_hub_tests::TestHub;

use super::artifacts::{kept, upload};
use super::support::{self, assert_error, b64};

/// (what, job id, Authorization, content type, body, headers, status, code).
type Rejection<'a> = (
    &'a str,
    String,
    Option<String>,
    &'a str,
    Vec<u8>,
    Vec<(&'a str, &'a str)>,
    u16,
    &'a str,
);

#[tokio::test]
async fn upload_rejections_follow_the_protocol_order_and_keep_nothing() {
    let hub = support::hub_with(|s| s.max_artifact_bytes = 1024).await;
    let (job_id, token, _worker) = hub.assigned_job().await;
    let bearer = format!("Bearer {token}");
    let good = b64(b"artifact").into_bytes();
    let before = kept(&hub).await;
    let unknown = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let long_name = "n".repeat(256);
    let mismatch = "00".repeat(32);

    let cases: Vec<Rejection<'_>> = vec![
        (
            "no token",
            job_id.clone(),
            None,
            "text/plain",
            good.clone(),
            vec![],
            403,
            "FORBIDDEN",
        ),
        (
            "wrong token",
            job_id.clone(),
            Some(format!("Bearer {unknown}")),
            "text/plain",
            good.clone(),
            vec![],
            403,
            "FORBIDDEN",
        ),
        (
            "suffix match",
            job_id.clone(),
            Some(format!("Bearer junk{token}")),
            "text/plain",
            good.clone(),
            vec![],
            403,
            "FORBIDDEN",
        ),
        (
            "unknown job, foreign token",
            unknown.to_owned(),
            Some(format!("Bearer {unknown}")),
            "text/plain",
            good.clone(),
            vec![],
            403,
            "FORBIDDEN",
        ),
        (
            "unknown job, genuine token",
            unknown.to_owned(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![],
            404,
            "JOB_NOT_FOUND",
        ),
        (
            "path trick in the job id",
            "..%2F..%2Fetc%2Fpasswd".to_owned(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![],
            404,
            "JOB_NOT_FOUND",
        ),
        (
            "empty body",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            vec![],
            vec![],
            400,
            "BAD_REQUEST",
        ),
        (
            "blank body",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            b" \r\n".to_vec(),
            vec![],
            400,
            "BAD_REQUEST",
        ),
        (
            "empty name",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![("x-artifact-name", "")],
            400,
            "BAD_REQUEST",
        ),
        (
            "dot name",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![("x-artifact-name", ".")],
            400,
            "BAD_REQUEST",
        ),
        (
            "dot-dot name",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![("x-artifact-name", "..")],
            400,
            "BAD_REQUEST",
        ),
        (
            "traversal name",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![("x-artifact-name", "../../etc/passwd")],
            400,
            "BAD_REQUEST",
        ),
        (
            "backslash name",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![("x-artifact-name", "..\\boot.ini")],
            400,
            "BAD_REQUEST",
        ),
        (
            "control character",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![("x-artifact-name", "a\tb")],
            400,
            "BAD_REQUEST",
        ),
        (
            "long name",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![("x-artifact-name", long_name.as_str())],
            400,
            "BAD_REQUEST",
        ),
        (
            "malformed sha",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![("x-artifact-sha256", "xyz")],
            400,
            "BAD_REQUEST",
        ),
        (
            "unknown target",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![("x-artifact-target", "../x")],
            400,
            "BAD_REQUEST",
        ),
        (
            "sha mismatch",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            good.clone(),
            vec![("x-artifact-sha256", mismatch.as_str())],
            400,
            "BAD_REQUEST",
        ),
        (
            "bad base64",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            b"QUJD*not-base64".to_vec(),
            vec![],
            400,
            "BAD_REQUEST",
        ),
        (
            "base64 over the cap",
            job_id.clone(),
            Some(bearer.clone()),
            "text/plain",
            b64(&[1u8; 2048]).into_bytes(),
            vec![],
            413,
            "UPLOAD_TOO_LARGE",
        ),
        (
            "raw over the cap",
            job_id.clone(),
            Some(bearer.clone()),
            "application/octet-stream",
            vec![1u8; 2048],
            vec![],
            413,
            "UPLOAD_TOO_LARGE",
        ),
    ];
    for (what, id, auth, content_type, body, headers, status, code) in cases {
        let got = upload(&hub, &id, auth.as_deref(), content_type, body, &headers).await;
        assert_eq!(
            (got.0, got.1["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {}",
            got.1
        );
        assert_eq!(kept(&hub).await, before, "{what} kept something");
    }

    sqlx::query("UPDATE jobs SET state = 'completed' WHERE id = ?")
        .bind(&job_id)
        .execute(hub.pool())
        .await
        .expect("complete");
    let late = upload(&hub, &job_id, Some(&bearer), "text/plain", good, &[]).await;
    assert_error(&late, 409, "JOB_NOT_RUNNING");
    assert_eq!(kept(&hub).await, before);
    hub.stop().await;
}

#[tokio::test]
async fn the_token_of_a_previous_attempt_is_refused() {
    let hub = TestHub::start().await;
    let (job_id, old_token, _first) = hub.assigned_job().await;
    let mut tx = shared::db::begin(hub.pool()).await.expect("tx");
    let outcome = job::transition::requeue_lost(&mut tx, &job_id, 1, "Builder disconnected")
        .await
        .expect("requeue");
    tx.commit().await.expect("commit");
    hub.deps.notify_outbox();
    assert_eq!(outcome, job::transition::LostOutcome::Requeued);
    let mut second = hub.worker("linux-2", &["linux"], 1).await;
    let assign = second.assignment().await;
    let new_token = assign["auth_token"].as_str().expect("token");
    assert_ne!(new_token, old_token);

    let stale = upload(
        &hub,
        &job_id,
        Some(&format!("Bearer {old_token}")),
        "text/plain",
        b64(b"late").into_bytes(),
        &[],
    )
    .await;
    assert_error(&stale, 403, "FORBIDDEN");
    let fresh = upload(
        &hub,
        &job_id,
        Some(&format!("Bearer {new_token}")),
        "text/plain",
        b64(b"late").into_bytes(),
        &[],
    )
    .await;
    assert_eq!(fresh.0, 200, "{}", fresh.1);
    assert_eq!(hub.db().count("artifacts", "attempt = 2").await, 1);
    hub.stop().await;
}
