//! Workers and drain, queue depth per target, the outbox and dead letters.

use perry_hub_tests::{api::assert_error, TestHub};
use serde_json::json;

use super::{admin_get, admin_post, wait_free_slots};

#[tokio::test]
async fn a_drained_worker_finishes_its_job_and_takes_no_new_one_until_undrained() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let mut a = hub.worker("linux-a", &["linux"], 2).await;
    let first = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let first_assign = a.assignment().await;
    assert_eq!(first_assign["job_id"], first.as_str());
    wait_free_slots(&hub, "linux", 1).await;

    let (status, body) = admin_post(&hub, "/api/v1/admin/workers/linux-a/drain", &json!({})).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"name": "linux-a", "draining": true, "connected": 1, "jobs": 1})
    );
    // The dispatcher holds the drain: linux-a offers no slot although one is free.
    wait_free_slots(&hub, "linux", 0).await;
    let (_, listed) = admin_get(&hub, "/api/v1/admin/workers").await;
    assert_eq!(listed["drained"], json!(["linux-a"]));
    assert_eq!(listed["workers"][0]["draining"], true);
    assert_eq!(listed["workers"][0]["slots"], 2);
    assert_eq!(listed["workers"][0]["jobs"], json!([first]));
    assert!(listed["workers"][0]["last_seen_ms"].as_i64().unwrap() > 0);

    // A new job waits for another worker, which takes it; linux-a is given nothing.
    let second = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut b = hub.worker("linux-b", &["linux"], 1).await;
    assert_eq!(b.assignment().await["job_id"], second.as_str());
    // linux-a still finishes the job it held.
    let complete = perry_hub_tests::sim::run_assigned_build(&hub, &first_assign, b"x").await;
    a.send(complete).await;
    hub.wait_state(&first, "completed").await;

    let (status, body) =
        admin_post(&hub, "/api/v1/admin/workers/linux-a/undrain", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["draining"], false);
    wait_free_slots(&hub, "linux", 2).await;
    let third = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let got = loop {
        let f = a.ws.recv().await.expect("linux-a socket");
        if f["type"] == "job_assign" {
            break f;
        }
    };
    assert_eq!(got["job_id"], third.as_str());
    let (_, listed) = admin_get(&hub, "/api/v1/admin/workers").await;
    assert_eq!(listed["drained"], json!([]));

    let bad = admin_post(
        &hub,
        &format!("/api/v1/admin/workers/{}/drain", "x".repeat(300)),
        &json!({}),
    )
    .await;
    assert_error(&bad, 400, "BAD_REQUEST");
    hub.stop().await;
}

#[tokio::test]
async fn a_drain_outlives_a_reconnect() {
    let hub = TestHub::start().await;
    let (status, body) = admin_post(&hub, "/api/v1/admin/workers/linux-d/drain", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connected"], 0);
    let (_, license) = hub.insert_license("pro").await;
    let waiting = hub.insert_job(license, "linux", 10, b"t", json!({})).await;

    let _d = hub.worker("linux-d", &["linux"], 1).await;
    // Connected and drained from its first frame: it offers nothing.
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    loop {
        let (_, listed) = admin_get(&hub, "/api/v1/admin/workers").await;
        if listed["workers"][0]["draining"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker never listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(hub.dispatcher.registry.free_slots("linux"), 0);
    assert_eq!(hub.job_state(&waiting).await, "queued");
    hub.stop().await;
}

#[tokio::test]
async fn queues_report_depth_and_the_oldest_waiting_job_per_target() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let before = shared::clock::now_ms();
    hub.insert_job(license, "ios", 10, b"t", json!({})).await;
    hub.insert_job(license, "ios", 10, b"t", json!({})).await;

    let (status, body) = admin_get(&hub, "/api/v1/admin/queues").await;

    assert_eq!(status, 200, "{body}");
    let queues = body["queues"].as_array().unwrap();
    let ios = queues.iter().find(|q| q["target"] == "ios").expect("ios");
    assert_eq!(ios["queued"], 2);
    assert_eq!(ios["held"], 0);
    assert_eq!(ios["workers"], 0);
    assert!(ios["oldest_queued_ms"].as_i64().unwrap() >= before);
    assert!(ios["oldest_wait_secs"].as_f64().unwrap() >= 0.0);
    let linux = queues
        .iter()
        .find(|q| q["target"] == "linux")
        .expect("linux");
    assert_eq!(linux["queued"], 0);
    assert!(linux["oldest_queued_ms"].is_null());
    hub.stop().await;
}

on_both_queues! {
    /// On both queues: RabbitMQ's dead-letter queue, the in-process queue's list.
    async fn dead_letters_are_counted_and_replayed_through_the_outbox(queue: QueueKind) {
        let hub = TestHub::start_with(queue.options()).await;
        hub.outbox_drained().await;
        let (status, body) = admin_get(&hub, "/api/v1/admin/outbox").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["backlog"], 0);
        assert!(body["oldest_unsent_ms"].is_null());
        assert_eq!(body["dead_lettered"], 0);

        let message = shared::queue::Message::CapacityChanged {};
        let payload = serde_json::to_vec(&message).unwrap();
        shared::queue::dead::inject(&hub.deps.queue, &payload)
            .await
            .unwrap();
        shared::queue::dead::inject(&hub.deps.queue, b"not a hub message")
            .await
            .unwrap();
        let (_, body) = admin_get(&hub, "/api/v1/admin/outbox").await;
        assert_eq!(body["dead_lettered"], 2);

        let (status, replayed) = admin_post(&hub, "/api/v1/admin/outbox/replay", &json!({})).await;

        assert_eq!(status, 200, "{replayed}");
        assert_eq!(replayed, json!({"replayed": 1, "kept": 1}));
        // The decodable one went back through the outbox; the other stays for inspection.
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE payload = ?")
            .bind(String::from_utf8(payload).unwrap())
            .fetch_one(hub.pool())
            .await
            .unwrap();
        assert_eq!(rows, 1);
        let (_, body) = admin_get(&hub, "/api/v1/admin/outbox").await;
        assert_eq!(body["dead_lettered"], 1);
        assert_error(
            &admin_post(&hub, "/api/v1/admin/outbox/replay?limit=0", &json!({})).await,
            400,
            "BAD_REQUEST",
        );
        hub.stop().await;
    }
}
