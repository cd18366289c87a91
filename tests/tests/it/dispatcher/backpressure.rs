//! What a subscriber costs the hub stays bounded whatever it does (DEC-18): a CLI that stops
//! reading is dropped instead of queueing a build's log in memory, subscriptions are limited per
//! address and per job, and a late subscriber's replay starts at the newest log lines.

use perry_hub_tests::{HubOptions, TestHub, WsClient};
use serde_json::json;

use super::support::{frame_types, until_complete};

/// Stored log lines of a job.
async fn stored_logs(hub: &TestHub, job_id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM job_events WHERE job_id = ? AND kind = 'log'")
        .bind(job_id)
        .fetch_one(hub.pool())
        .await
        .expect("count")
}

#[tokio::test]
async fn a_cli_that_stops_reading_is_dropped_while_the_worker_streams_on() {
    let hub = TestHub::start_with(HubOptions {
        dispatcher: Some(dispatcher::Settings {
            write_timeout_secs: 1,
            ..dispatcher::Settings::default()
        }),
        ..HubOptions::default()
    })
    .await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("w", &["linux"], 1).await;
    worker.assignment().await;
    let mut stalled = WsClient::connect_small_buffer(&hub.ws_url()).await;
    stalled.send(json!({"type":"subscribe","job_id":job})).await;
    stalled.expect("job_created").await;

    // 12 MB of log while the CLI reads nothing: more than the kernel buffers between them.
    const LINES: usize = 12_000;
    let text = "x".repeat(1000);
    for i in 0..LINES {
        let line = format!("{i} {text}");
        worker
            .send(json!({"type":"log","job_id":job,"stage":"compiling","line":line,"stream":"stdout"}))
            .await;
    }
    // The worker is not held back: every line is stored.
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    while stored_logs(&hub, &job).await < LINES as i64 {
        assert!(tokio::time::Instant::now() < deadline, "lines not stored");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The hub drops the stalled CLI once its writes have waited past the write timeout (each
    // test runs in its own process, so the counter is this hub's).
    let dropped = || {
        shared::metrics::get()
            .frames_ignored
            .get_or_create(&shared::metrics::label("reason", "write_timeout"))
            .get()
    };
    while dropped() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled CLI was never dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // It reads what was in flight, then the end, far short of the whole log.
    let mut received = 0;
    while let Some(frame) = stalled.recv().await {
        if frame["type"] == "log" {
            received += 1;
        }
    }
    assert!(
        received < LINES / 2,
        "a CLI that stopped reading got {received} of {LINES} lines: it was not dropped"
    );
    // Reconnecting replays from storage (the newest 1000 lines) and follows live.
    let mut again = hub.cli(&job).await;
    again.expect("job_created").await;
    worker
        .send(json!({"type":"complete","job_id":job,"success":false,"duration_secs":1.0,"artifacts":[],"error":"stop"}))
        .await;
    let frames = until_complete(&mut again).await;
    let logs: Vec<&str> = frames
        .iter()
        .filter(|f| f["type"] == "log")
        .map(|f| f["line"].as_str().unwrap())
        .collect();
    assert_eq!(logs.len(), 1000);
    assert!(logs.last().unwrap().starts_with(&format!("{} ", LINES - 1)));
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "12-cli-stops-reading",
        fault: "A CLI stops reading its socket",
        outcome: "Its bounded queue filled, the connection was dropped after the write timeout and the worker streamed on; the CLI replays from storage when it reconnects (DEC-18).".to_owned(),
        test: "dispatcher::backpressure::a_cli_that_stops_reading_is_dropped_while_the_worker_streams_on",
    });
    hub.stop().await;
}

#[tokio::test]
async fn subscriptions_over_the_limits_are_closed_with_try_again_later() {
    let hub = TestHub::start_with(HubOptions {
        dispatcher: Some(dispatcher::Settings {
            max_subscribers_per_job: 2,
            max_subscriptions_per_address: 3,
            ..dispatcher::Settings::default()
        }),
        ..HubOptions::default()
    })
    .await;
    let (_, license) = hub.insert_license("pro").await;
    let a = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let b = hub.insert_job(license, "linux", 10, b"t", json!({})).await;

    let mut held = Vec::new();
    for job in [&a, &a] {
        let mut cli = hub.cli(job).await;
        cli.expect("job_created").await;
        held.push(cli);
    }
    let mut third = hub.cli(&a).await;
    assert_eq!(
        third.closed().await,
        Some((1013, "too many subscribers for this job".to_owned()))
    );
    let mut other_job = hub.cli(&b).await;
    other_job.expect("job_created").await;
    held.push(other_job);
    let mut over = hub.cli(&b).await;
    assert_eq!(
        over.closed().await,
        Some((1013, "too many subscriptions from this address".to_owned()))
    );
    // A subscription that ends frees its place.
    held.remove(0).close().await;
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    loop {
        let mut cli = hub.cli(&b).await;
        match cli.recv().await {
            Some(f) if f["type"] == "job_created" => break,
            _ => assert!(tokio::time::Instant::now() < deadline, "place never freed"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    hub.stop().await;
}

#[tokio::test]
async fn a_late_subscriber_gets_every_event_but_only_the_newest_log_lines_in_order() {
    let hub = TestHub::start().await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("w", &["linux"], 1).await;
    worker.assignment().await;
    // 1500 lines with a stage before each block of 500.
    for block in 0..3 {
        worker
            .send(json!({"type":"stage","job_id":job,"stage":format!("s{block}"),"message":"m"}))
            .await;
        for i in 0..500 {
            let line = format!("{}", block * 500 + i);
            worker
                .send(json!({"type":"log","job_id":job,"stage":"compiling","line":line,"stream":"stdout"}))
                .await;
        }
    }
    worker
        .send(json!({"type":"complete","job_id":job,"success":false,"duration_secs":1.0,"artifacts":[],"error":"stop"}))
        .await;
    let mut first = hub.cli(&job).await;
    first.expect("job_created").await;
    until_complete(&mut first).await;

    let mut late = hub.cli(&job).await;
    late.expect("job_created").await;
    let frames = until_complete(&mut late).await;
    let stages: Vec<&str> = frames
        .iter()
        .filter(|f| f["type"] == "stage")
        .map(|f| f["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["s0", "s1", "s2"], "{:?}", frame_types(&frames));
    let lines: Vec<u32> = frames
        .iter()
        .filter(|f| f["type"] == "log")
        .map(|f| f["line"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(lines, (500..1500).collect::<Vec<_>>());
    // Stages stay where they were among the lines they precede.
    let s2 = frames.iter().position(|f| f["stage"] == "s2").unwrap();
    assert_eq!(frames[s2 + 1]["line"], "1000");
    hub.stop().await;
}
