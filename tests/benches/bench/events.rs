//! Live events: how fast worker frames reach a subscribed CLI, how soon a submitted build is
//! assigned, and whole builds per second with the CPU they cost (see [`crate::builds`]).
//!
//! Prints one Markdown table and writes it to `target/bench-events.md` at the workspace root,
//! so a later run can be compared with this one.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use perry_hub_tests::{sim, HubOptions, QueueKind, TestHub};
use serde_json::json;

/// Log lines in the saturating run (`PERRY_BENCH_LINES` sets another count, e.g. a longer run
/// to profile).
fn lines() -> usize {
    std::env::var("PERRY_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}
/// Log lines in the paced run, and the pause between them.
const PACED_LINES: usize = 500;
const PACE: Duration = Duration::from_millis(10);
/// Builds submitted one after another to an idle worker.
const SUBMITS: usize = 200;
/// How long one log run may take before it reports what arrived.
const GIVE_UP: Duration = Duration::from_secs(120);

/// One line of the table: figure, value, how it was measured.
pub type Row = (String, String, String);

/// Run the section: print the table and write it to `target/bench-events.md`. `only` is
/// `PERRY_BENCH`: empty or `events` runs every part, `logs`, `assign` or `builds` one of them.
pub async fn run(only: &str) {
    println!("\n## Live events (filesystem store, real MariaDB and RabbitMQ)");
    let part = |name: &str| only.is_empty() || only.contains("events") || only.contains(name);
    let started = Instant::now();
    let mut rows = Vec::new();
    if part("logs") {
        rows.extend(log_stream().await);
    }
    for queue in [QueueKind::RabbitMq, QueueKind::InProcess, QueueKind::OneBox] {
        if part("assign") {
            rows.extend(submit_to_assign(queue).await);
        }
        if part("builds") {
            rows.extend(crate::builds::end_to_end(queue).await);
        }
    }
    let table = render(&rows, started.elapsed());
    print!("{table}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("target/bench-events.md");
    let written = path
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .and_then(|_| std::fs::write(&path, &table));
    match written {
        Ok(_) => println!("   (written to {})", path.display()),
        Err(e) => println!("   (could not write {}: {e})", path.display()),
    }
}

fn render(rows: &[Row], took: Duration) -> String {
    let mut out = String::from("\n| Figure | Value | Notes |\n|---|---|---|\n");
    for (figure, value, notes) in rows {
        out.push_str(&format!("| {figure} | {value} | {notes} |\n"));
    }
    out.push_str(&format!(
        "\nSection took {:.0} s on {} cores.\n",
        took.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    out
}

/// How a figure measured on `queue` is named: the RabbitMQ figures as they always were, the
/// one-process hub's (`perry-hub all` without `AMQP_URL`) marked.
pub fn on(queue: QueueKind, figure: &str) -> String {
    match queue {
        QueueKind::RabbitMq => figure.to_owned(),
        QueueKind::InProcess => format!("{figure}, one process on the in-process queue"),
        QueueKind::OneBox => format!("{figure}, one box (SQLite, in-process queue)"),
    }
}

/// A hub as the section uses it: filesystem blobs, limits lifted so hundreds of builds fit.
pub async fn hub(queue: QueueKind) -> TestHub {
    // Every simulated CLI and worker connects from 127.0.0.1: lift the per-address caps.
    let mut ingest = perry_hub_tests::ingest_settings();
    ingest.anonymous_uploads_per_addr = 0;
    ingest.anonymous_uploads_global = 0;
    TestHub::start_with(HubOptions {
        fs_blobs: true,
        hub: Some(Box::new(|h| {
            h.self_hosted = true;
            h.http.max_connections_per_addr = 0;
        })),
        ingest: Some(ingest),
        queue,
        ..HubOptions::default()
    })
    .await
}

/// The `q` quantile of `samples` in milliseconds (nearest rank).
pub fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1].as_secs_f64() * 1000.0
}

fn row(figure: &str, value: String, notes: &str) -> Row {
    (figure.to_owned(), value, notes.to_owned())
}

/// One job, one worker holding it (on `hub`), one subscribed CLI (on `cli_hub`: the same
/// process, or another replica that gets the frames over RabbitMQ); `lines` stamped log lines.
async fn one_log_run(
    hub: &TestHub,
    cli_hub: &TestHub,
    name: &str,
    lines: usize,
    pace: Option<Duration>,
) -> (sim::LogTally, usize) {
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let mut worker = hub.worker(name, &["linux"], 1).await;
    worker.assignment().await;
    let mut cli = cli_hub.cli(&job).await;
    cli.expect("job_created").await;
    let base = Instant::now();
    let sender = {
        let job = job.clone();
        tokio::spawn(async move {
            sim::send_logs(&mut worker, &job, lines, pace, base).await;
            worker
        })
    };
    let tally = sim::receive_logs(&mut cli, lines, GIVE_UP, base).await;
    // End the job, so a later run's worker is not handed it again.
    match tokio::time::timeout(Duration::from_secs(10), sender).await {
        Ok(Ok(mut worker)) => {
            worker
                .send(json!({"type":"complete","job_id":job,"success":false,"duration_secs":0.0,"artifacts":[]}))
                .await;
            hub.wait_state(&job, "failed").await;
        }
        _ => println!("   (worker {name} still sending after the run)"),
    }
    let mut seen = tally.seqs.clone();
    seen.sort_unstable();
    seen.dedup();
    (tally, lines - seen.len())
}

async fn log_stream() -> Vec<Row> {
    let hub = hub(QueueKind::RabbitMq).await;
    let mut rows = log_runs(&hub, &hub, "logs", "").await;
    // Split: the worker's dispatcher and the CLI's are two replicas; frames cross RabbitMQ in
    // batches.
    let other = hub.replica().await;
    rows.extend(log_runs(&other, &hub, "split", ", CLI on another replica").await);
    other.stop().await;
    hub.stop().await;
    rows
}

/// The saturated and the paced log run, worker on `hub`, CLI on `cli_hub`.
async fn log_runs(hub: &TestHub, cli_hub: &TestHub, name: &str, suffix: &str) -> Vec<Row> {
    let lines = lines();
    let (mut tally, lost) = one_log_run(hub, cli_hub, &format!("{name}-1"), lines, None).await;
    let rate = tally.span.map_or(0.0, |(first, last)| {
        tally.seqs.len() as f64 / (last - first).as_secs_f64()
    });
    let in_order = tally.seqs.windows(2).all(|w| w[0] < w[1]);
    let mut rows = vec![
        row(
            &format!("Log lines/s worker → subscribed CLI{suffix}"),
            format!("{rate:.0}"),
            &format!(
                "{lines} `log` frames sent back to back by one worker; first sent → last received"
            ),
        ),
        row(
            &format!("Log latency worker → CLI{suffix}, saturated (p50 / p99)"),
            format!(
                "{:.1} ms / {:.1} ms",
                quantile_ms(&mut tally.latencies, 0.50),
                quantile_ms(&mut tally.latencies, 0.99)
            ),
            "send timestamp in `line`; includes the backlog the burst builds up",
        ),
        row(
            &format!("Log lines lost{suffix}"),
            format!("{lost} of {lines}"),
            &format!(
                "{} received in {}, gave up after {} s",
                tally.seqs.len(),
                if in_order { "order" } else { "DISORDER" },
                GIVE_UP.as_secs()
            ),
        ),
    ];
    let (mut paced, paced_lost) =
        one_log_run(hub, cli_hub, &format!("{name}-2"), PACED_LINES, Some(PACE)).await;
    rows.push(row(
        &format!("Log latency worker → CLI{suffix}, paced (p50 / p99)"),
        format!(
            "{:.1} ms / {:.1} ms",
            quantile_ms(&mut paced.latencies, 0.50),
            quantile_ms(&mut paced.latencies, 0.99)
        ),
        &format!(
            "{PACED_LINES} lines, one every {} ms (no backlog); {paced_lost} lost",
            PACE.as_millis()
        ),
    ));
    rows
}

async fn submit_to_assign(queue: QueueKind) -> Vec<Row> {
    let hub = hub(queue).await;
    let (key, _) = hub.insert_license("pro").await;
    // Enough slots that a slot is always free; each job is still ended before the next submit.
    let mut worker = hub.worker("idle-1", &["linux"], 16).await;
    let mut took = Vec::with_capacity(SUBMITS);
    let mut answered = Vec::with_capacity(SUBMITS);
    for _ in 0..SUBMITS {
        let sent = Instant::now();
        let submit = async {
            let job = hub.submit_linux_build(&key).await;
            (job, sent.elapsed())
        };
        let assigned = async {
            let frame = worker.assignment().await;
            (frame, sent.elapsed())
        };
        let ((job, answer), (frame, elapsed)) = tokio::join!(submit, assigned);
        assert_eq!(
            frame["job_id"],
            job.as_str(),
            "the submitted job is assigned"
        );
        took.push(elapsed);
        answered.push(answer);
        worker
            .send(json!({"type":"complete","job_id":job,"success":false,"duration_secs":0.0,"artifacts":[]}))
            .await;
        hub.wait_state(&job, "failed").await;
    }
    hub.stop().await;
    vec![row(
        &on(queue, "Submit → `job_assign` at an idle worker (p50 / p99)"),
        format!(
            "{:.1} ms / {:.1} ms",
            quantile_ms(&mut took, 0.50),
            quantile_ms(&mut took, 0.99)
        ),
        &format!(
            "{SUBMITS} builds one after another via `POST /api/v1/build` (CLI multipart); \
             worker ends each with `complete{{success:false}}` before the next; the CLI had its \
             answer (tarball stored, job committed) after {:.1} ms (p50)",
            quantile_ms(&mut answered, 0.50)
        ),
    )]
}
