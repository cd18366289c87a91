//! `perry-hub all` without RabbitMQ (DEC-35): the queue is chosen by `AMQP_URL`, a whole CLI
//! build runs on either queue, and a restart offers the queued jobs again at once. The split
//! roles refuse to start without a broker.

use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use perry_hub_tests::{sim, HubProcess, TestHub, WAIT};
use serde_json::json;

const EXE: &str = env!("CARGO_BIN_EXE_perry-hub-process");

on_both_queues! {
    /// Submit through the API, a worker fetches the tarball and uploads, the CLI follows the
    /// build to `complete` and downloads the artifact.
    async fn a_cli_build_is_submitted_built_and_downloaded(queue: QueueKind) {
        let hub = Arc::new(TestHub::start_with(queue.options()).await);
        let (key, _) = hub.insert_license("pro").await;
        let worker = sim::spawn_building_worker(hub.clone(), "w1", 1, b"built bytes").await;
        let build = sim::cli_build(&hub, &key).await;
        assert!(build.success);
        assert_eq!(build.artifact.as_deref(), Some(&b"built bytes"[..]));
        hub.wait_state(&build.job_id, "completed").await;
        worker.abort();
        let _ = worker.await;
        Arc::into_inner(hub).expect("one owner").stop().await;
    }

    /// Jobs queued when the hub stops are offered to the first worker after it starts again,
    /// highest priority first, well before the reaper's re-announce delay (60 s) would.
    async fn queued_jobs_are_offered_at_once_after_a_restart(queue: QueueKind) {
        let hub = TestHub::start_with(queue.options()).await;
        let (_, free) = hub.insert_license("free").await;
        let (_, pro) = hub.insert_license("pro").await;
        let first_free = hub.insert_job(free, "linux", 1, b"t", json!({})).await;
        let pro_job = hub.insert_job(pro, "linux", 10, b"t", json!({})).await;
        hub.outbox_drained().await;
        let hub = hub.restart(queue.options()).await;
        let restarted = Instant::now();
        let mut worker = hub.worker("after-restart", &["linux"], 2).await;
        let first = worker.assignment().await;
        assert_eq!(first["job_id"], pro_job.as_str(), "priority kept");
        assert_eq!(worker.assignment().await["job_id"], first_free.as_str());
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "offered {:?} after the restart",
            restarted.elapsed()
        );
        hub.stop().await;
    }
}

/// Without `AMQP_URL` the all-in-one hub starts on the in-process queue, says so, and is ready
/// with no broker to reach. A second one on the same database refuses to start: the queue is
/// in the first one's memory.
#[tokio::test]
async fn without_amqp_url_the_all_in_one_hub_runs_on_the_in_process_queue_and_says_so() {
    // The primary uses RabbitMQ: only the process started here holds the database's queue.
    let hub = TestHub::start().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = HubProcess::command(&hub, EXE, None, port, &[("RUST_LOG", "info")]);
    cmd.env_remove("AMQP_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("start perry-hub-process");
    let stdout = child.stdout.take().unwrap();
    let said = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("queue: in-process"))
    });
    let line = tokio::time::timeout(WAIT, said)
        .await
        .expect("the startup log names the queue")
        .unwrap();
    assert!(
        line.is_some(),
        "no `queue: in-process` line before the log ended"
    );
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = hub.http.get(&url).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut second = HubProcess::command(&hub, EXE, None, 1, &[]);
    second.env_remove("AMQP_URL").stdin(Stdio::null());
    let out = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || second.output().expect("run")),
    )
    .await
    .expect("the second process gives up within its wait for the lock")
    .unwrap();
    assert!(
        !out.status.success(),
        "a second in-process hub started on the same database"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("IN_PROCESS_QUEUE_TAKEN"), "{stderr}");
    let _ = child.kill();
    let _ = child.wait();
    hub.stop().await;
}

/// Each split role refuses to start without `AMQP_URL`, with the stable code.
#[tokio::test]
async fn the_split_roles_refuse_to_start_without_amqp_url() {
    let hub = TestHub::start().await;
    for role in ["ingest", "dispatcher", "finisher", "download"] {
        let mut cmd = HubProcess::command(&hub, EXE, Some(role), 1, &[]);
        cmd.env_remove("AMQP_URL").stdin(Stdio::null());
        let out = tokio::time::timeout(
            WAIT,
            tokio::task::spawn_blocking(move || cmd.output().expect("run")),
        )
        .await
        .unwrap_or_else(|_| panic!("{role} started without AMQP_URL and kept running"))
        .unwrap();
        assert!(!out.status.success(), "{role} started without AMQP_URL");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("AMQP_URL_REQUIRED"), "{role}: {stderr}");
    }
    hub.stop().await;
}

/// The rebuild at start announces every queued job again through the outbox, except one whose
/// announcement is still waiting there (e.g. held back by `not_before_ms`): the outbox decides.
#[tokio::test]
async fn the_rebuild_announces_queued_jobs_except_those_the_outbox_still_holds() {
    // The rebuild is called here by hand, on a hub whose queue is RabbitMQ: a hub on the
    // in-process queue runs its own rebuild at start, which could announce the jobs below too
    // when it runs late.
    let hub = TestHub::start_with(perry_hub_tests::HubOptions {
        no_finisher: true,
        ..perry_hub_tests::HubOptions::default()
    })
    .await;
    let (_, license) = hub.insert_license("pro").await;
    let announced = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let held = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let running = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    hub.outbox_drained().await;
    let about = |job: &str| format!("%\"job_id\":\"{job}\"%");
    let in_an_hour = shared::clock::now_ms() + 3_600_000;
    sqlx::query("UPDATE outbox SET sent_ms = NULL, not_before_ms = ? WHERE payload LIKE ?")
        .bind(in_an_hour)
        .bind(about(&held))
        .execute(hub.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET state = 'running' WHERE id = ?")
        .bind(&running)
        .execute(hub.pool())
        .await
        .unwrap();
    let n = finisher::reannounce::announce_all_queued(hub.pool())
        .await
        .unwrap();
    assert_eq!(n, 1);
    let rows = |job: String| {
        let pool = hub.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE payload LIKE ?")
                .bind(job)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(rows(about(&announced)).await, 2, "announced again");
    assert_eq!(rows(about(&held)).await, 1, "left to its held-back row");
    assert_eq!(rows(about(&running)).await, 1, "not queued");
    hub.stop().await;
}
