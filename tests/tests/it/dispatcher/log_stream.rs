//! A long log stream reaches a subscribed CLI whole.

use std::time::{Duration, Instant};

use perry_hub_tests::{sim, HubOptions, TestHub};
use serde_json::json;

const LINES: usize = 20_000;
/// Generous: a correctness check, not a speed test (`make bench` measures the rate).
const BOUND: Duration = Duration::from_secs(120);

#[tokio::test]
async fn twenty_thousand_log_lines_reach_a_subscribed_cli_in_order_without_loss_or_duplicates() {
    let hub = TestHub::start_with(HubOptions {
        fs_blobs: true,
        ..HubOptions::default()
    })
    .await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker("linux-1", &["linux"], 1).await;
    worker.assignment().await;
    let mut cli = hub.cli(&job).await;
    cli.expect("job_created").await;

    let base = Instant::now();
    let sender = {
        let job = job.clone();
        tokio::spawn(async move {
            sim::send_logs(&mut worker, &job, LINES, None, base).await;
            worker
        })
    };
    let tally = sim::receive_logs(&mut cli, LINES, BOUND, base).await;
    let _worker = sender.await.expect("sender");

    let expected: Vec<usize> = (0..LINES).collect();
    assert_eq!(tally.seqs.len(), LINES, "lines received within the bound");
    assert_eq!(tally.seqs, expected, "every line once, in order");
    hub.stop().await;
}
