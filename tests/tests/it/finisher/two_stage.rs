//! Two-stage builds: the hand-over from stage 1 to the signing stage.

use std::time::Duration;

use super::support::*;
use finisher::stage2::{self, HandOver};
use serde_json::{json, Value};

on_both_queues! {
    /// On both queues.
    async fn a_windows_build_is_signed_in_stage_two_and_the_cli_follows_one_job_to_one_complete(
        queue: QueueKind,
    ) {
        let hub = hub_on(queue, &[]).await;
        let (_, license) = hub.insert_license("pro").await;
        let job = hub
            .insert_job(
                license,
                "windows",
                10,
                b"stage one source",
                json!({"windows": {"pfx": "secret"}}),
            )
            .await;
        let mut cli = hub.cli(&job).await;
        cli.expect("job_created").await;

        // Stage 1 on a Linux builder: the hidden bundle, then complete with needs_finishing.
        let mut builder = hub.worker("linux-1", &["windows"], 1).await;
        let first = builder.assignment().await;
        assert_eq!(first["job_id"], job.as_str());
        // Stage one cross-compiles: no signing material on the Linux builder (DEC-25).
        assert_eq!(first["credentials"], json!({}));
        let bundle = b"perry-precompiled/metadata.json and objects".to_vec();
        hub.insert_artifact(&job, "bundle.tar.gz", "windows-precompiled", &bundle)
            .await;
        builder
            .send(json!({"type": "complete", "job_id": job, "success": true, "duration_secs": 2.5, "needs_finishing": "windows", "artifacts": []}))
            .await;

        // Stage 2 on a signing worker: same job, manifest retargeted, the bundle as its tarball.
        let mut signer = hub.worker("sign-1", &["windows-sign"], 1).await;
        let second = signer.assignment().await;
        assert_eq!(second["job_id"], job.as_str());
        assert_eq!(second["manifest"]["targets"], json!(["windows-sign"]));
        let (mut m1, mut m2) = (first["manifest"].clone(), second["manifest"].clone());
        m1.as_object_mut().unwrap().remove("targets");
        m2.as_object_mut().unwrap().remove("targets");
        assert_eq!(m1, m2, "only the targets change");
        assert_eq!(second["credentials"], json!({"windows": {"pfx": "secret"}}));
        let (stage, target, retries, input_key): (i16, String, i32, String) =
            sqlx::query_as("SELECT stage, target, retries, input_key FROM jobs WHERE id = ?")
                .bind(&job)
                .fetch_one(hub.pool())
                .await
                .unwrap();
        assert_eq!((stage, target.as_str(), retries), (2, "windows-sign", 0));
        let bundle_key: String = sqlx::query_scalar(
            "SELECT blob_key FROM artifacts WHERE job_id = ? AND target = 'windows-precompiled'",
        )
        .bind(&job)
        .fetch_one(hub.pool())
        .await
        .unwrap();
        assert_eq!(input_key, bundle_key);
        assert!(
            !blob_exists(&hub, &job::artifacts::tarball_key(&job)).await,
            "the stage-1 source tarball is released"
        );
        let fetched = hub
            .http
            .get(second["tarball_url"].as_str().unwrap())
            .bearer_auth(second["auth_token"].as_str().unwrap())
            .header("accept", "application/octet-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(fetched.status(), 200);
        assert_eq!(
            fetched.bytes().await.unwrap().to_vec(),
            bundle,
            "the sign worker's tarball is the bundle"
        );

        let signed = b"signed installer".to_vec();
        hub.insert_artifact(&job, "app-setup.exe", "windows", &signed)
            .await;
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&signed));
        // A sign worker that echoes `needs_finishing` ends stage 2 all the same: only stage 1 hands
        // over.
        signer
            .send(
                json!({"type": "complete", "job_id": job, "success": true, "duration_secs": 4.0,
                "needs_finishing": "windows",
                "artifacts": [{"name": "app-setup.exe", "size": signed.len(), "sha256": sha}]}),
            )
            .await;

        let frames = frames_until_complete(&mut cli).await;
        let kinds: Vec<&str> = frames
            .iter()
            .map(|f| f["type"].as_str().unwrap_or_default())
            .collect();
        assert!(!kinds.contains(&"error"), "{kinds:?}");
        let signing = kinds
            .iter()
            .position(|k| *k == "stage")
            .expect("stage frame");
        assert_eq!(frames[signing]["stage"], "signing");
        assert_eq!(
            frames[signing]["message"],
            "Routing to platform worker for signing and packaging..."
        );
        let ready: Vec<&Value> = frames
            .iter()
            .filter(|f| f["type"] == "artifact_ready")
            .collect();
        assert_eq!(
            ready.len(),
            1,
            "only the signed artifact is offered: {frames:?}"
        );
        assert_eq!(ready[0]["artifact_name"], "app-setup.exe");
        assert!(signing < kinds.iter().position(|k| *k == "artifact_ready").unwrap());
        let complete = frames.last().unwrap();
        assert_eq!(complete["success"], true);
        assert_eq!(
            complete["artifacts"],
            json!([{"name": "app-setup.exe", "size": signed.len(), "sha256": sha}])
        );
        assert_eq!(kinds.iter().filter(|k| **k == "complete").count(), 1);
        assert!(
            cli.recv_within(Duration::from_millis(700)).await.is_err(),
            "nothing after the one complete"
        );
        assert_eq!(hub.job_state(&job).await, "completed");
        hub.stop().await;
    }
}

#[tokio::test]
async fn a_hand_over_without_a_stored_bundle_fails_the_job_with_a_clear_error() {
    let hub = hub_with(&[]).await;
    let (_, license) = hub.insert_license("pro").await;
    // No bundle row at all.
    let missing = hub
        .insert_job(license, "windows", 10, b"src", json!({}))
        .await;
    make_finishing(&hub, &missing).await;
    // A bundle row whose blob is gone.
    let lost = hub
        .insert_job(license, "windows", 10, b"src", json!({}))
        .await;
    make_finishing(&hub, &lost).await;
    let artifact = hub
        .insert_artifact(&lost, "bundle.tar.gz", "windows-precompiled", b"bundle")
        .await;
    hub.deps
        .blob
        .delete(&job::artifacts::artifact_key(&artifact))
        .await
        .unwrap();
    let mut cli = hub.cli(&missing).await;

    send_stage_finished(&hub, &missing, 1).await;
    send_stage_finished(&hub, &lost, 1).await;

    let error = cli.expect("error").await;
    assert_eq!(
        error["message"],
        "Stage 1 finished without uploading the windows-precompiled bundle"
    );
    let complete = cli.expect("complete").await;
    assert_eq!(complete["success"], false);
    assert_eq!(complete["artifacts"], json!([]));
    hub.wait_state(&lost, "failed").await;
    let shared::db::Text(message) =
        sqlx::query_scalar("SELECT error_message FROM jobs WHERE id = ?")
            .bind(&lost)
            .fetch_one(hub.pool())
            .await
            .unwrap();
    assert_eq!(
        message,
        "The windows-precompiled bundle of stage 1 is missing from storage"
    );
    assert_eq!(
        hub.db()
            .count("outbox", "routing_key = 'windows-sign'")
            .await,
        0,
        "nothing was queued for signing"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_repeated_or_stale_hand_over_changes_nothing() {
    let hub = hub_without_finisher().await;
    let (_, license) = hub.insert_license("free").await;
    let job = hub
        .insert_job(license, "windows", 1, b"src", json!({}))
        .await;
    make_finishing(&hub, &job).await;
    hub.insert_artifact(&job, "bundle.tar.gz", "windows-precompiled", b"bundle")
        .await;

    assert_eq!(
        stage2::hand_over(&hub.deps, &job, 0).await.unwrap(),
        HandOver::Unchanged,
        "stale attempt"
    );
    assert_eq!(
        stage2::hand_over(&hub.deps, &job, 1).await.unwrap(),
        HandOver::Queued("windows-sign".into())
    );
    assert_eq!(
        stage2::hand_over(&hub.deps, &job, 1).await.unwrap(),
        HandOver::Unchanged,
        "duplicate"
    );

    assert_eq!(
        hub.db()
            .count(
                "job_events",
                &format!("job_id = '{job}' AND kind = 'stage'")
            )
            .await,
        1
    );
    assert_eq!(
        hub.db()
            .count("outbox", "routing_key = 'windows-sign'")
            .await,
        1
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_job_left_finishing_after_its_message_was_lost_is_handed_over_by_the_sweep() {
    let hub = hub_with(&flags(&["--finishing-grace-secs", "1"])).await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub
        .insert_job(license, "windows", 10, b"src", json!({}))
        .await;
    make_finishing(&hub, &job).await;
    hub.insert_artifact(&job, "bundle.tar.gz", "windows-precompiled", b"bundle")
        .await;

    // No StageFinished message is ever sent.
    hub.wait_state(&job, "queued").await;
    eventually("the job to be retargeted", || async {
        scalar_i64(&hub, "SELECT stage FROM jobs WHERE id = ?", &job).await == 2
    })
    .await;
    let mut signer = hub.worker("sign-1", &["windows-sign"], 1).await;
    assert_eq!(signer.assignment().await["job_id"], job.as_str());
    hub.stop().await;
}
