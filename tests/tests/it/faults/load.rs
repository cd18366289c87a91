//! 500 builds from 50 CLIs onto 20 workers while processes are SIGKILLed and restarted and the
//! broker is restarted, on replicas running every service and on the four services as separate
//! processes: every accepted build ends exactly once, every artifact is the one built for it,
//! and every subscriber sees each job's events once, in order.

use std::{future::Future, sync::Arc, time::Duration};

use perry_hub_tests::{
    chaos::{self, CliOutcome, Endpoints, Routes},
    ingest_settings, HubOptions, HubProcess, TestHub,
};
use shared::config::HubConfig;
use tokio_util::sync::CancellationToken;

use super::verdict::verify;

pub(super) const BUILDS: usize = 500;
const CLIS: usize = 50;
pub(super) const WORKERS: usize = 20;

/// The private broker, or None (then the scenario says why and checks nothing, unless
/// `make test` requires it).
fn private_broker() -> Option<(String, String)> {
    let url = std::env::var("PERRY_TEST_FAULT_AMQP_URL").ok();
    let node = std::env::var("PERRY_TEST_FAULT_RABBITMQ_NODE").ok();
    match (url, node) {
        (Some(url), Some(node)) => Some((url, node)),
        _ => {
            assert!(
                std::env::var_os("PERRY_TEST_REQUIRE_FAULT_BROKER").is_none(),
                "private RabbitMQ not configured: scripts/fault-services.sh prints the variables"
            );
            eprintln!("private RabbitMQ not configured: run scripts/fault-services.sh and export what it prints");
            None
        }
    }
}

async fn rabbitmqctl(node: &str, args: &[&str]) {
    let run = tokio::process::Command::new("rabbitmqctl")
        .args(["-q", "-n", node])
        .args(args)
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("rabbitmqctl {args:?} did not finish within 120 s"))
        .expect("run rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

async fn completed(hub: &TestHub) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'completed'")
        .fetch_one(hub.pool())
        .await
        .unwrap_or(0)
}

async fn wait_completed(hub: &TestHub, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while completed(hub).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck before {n} completions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every client comes from one address: lift the anonymous in-flight caps (in process and in
/// the processes); self-hosted, so the licence's quotas do not refuse the load.
const UNCAPPED: [(&str, &str); 2] = [
    ("PERRY_HUB_ANONYMOUS_UPLOADS_PER_ADDR", "0"),
    ("PERRY_HUB_ANONYMOUS_UPLOADS_GLOBAL", "0"),
];

async fn primary(amqp_url: String, no_finisher: bool) -> Arc<TestHub> {
    let mut ingest = ingest_settings();
    ingest.anonymous_uploads_per_addr = 0;
    ingest.anonymous_uploads_global = 0;
    Arc::new(
        TestHub::start_with(HubOptions {
            ingest: Some(ingest),
            amqp_url: Some(amqp_url),
            no_finisher,
            hub: Some(Box::new(|h: &mut HubConfig| {
                h.self_hosted = true;
                // A download cut off by a killed process frees its link soon (DEC-30).
                h.download_claim_secs = 3;
            })),
            ..HubOptions::default()
        })
        .await,
    )
}

const EXE: &str = env!("CARGO_BIN_EXE_perry-hub-process");

/// Restart the private broker.
async fn restart_broker(node: &str) {
    rabbitmqctl(node, &["stop_app"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    rabbitmqctl(node, &["start_app"]).await;
    rabbitmqctl(node, &["await_startup"]).await;
}

/// Run the load through `routes` while `faults` happen; what every CLI saw.
async fn drive(
    primary: &TestHub,
    routes: &Routes,
    key: &str,
    faults: impl Future<Output = ()>,
) -> Vec<CliOutcome> {
    let stop = CancellationToken::new();
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            chaos::spawn_worker(
                routes.clone(),
                primary.worker_secret(),
                format!("builder-{i}"),
                2,
                stop.clone(),
            )
        })
        .collect();
    let http = reqwest::Client::new();
    let clis: Vec<_> = (0..CLIS)
        .map(|_| {
            let (routes, http, key) = (routes.clone(), http.clone(), key.to_owned());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..BUILDS / CLIS {
                    seen.push(chaos::cli_build(&routes, &http, &key).await);
                }
                seen
            })
        })
        .collect();
    faults.await;
    let mut outcomes = Vec::new();
    for cli in clis {
        let seen = tokio::time::timeout(Duration::from_secs(300), cli)
            .await
            .expect("every CLI finishes")
            .expect("CLI task");
        outcomes.extend(seen);
    }
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_builds_survive_a_killed_replica_and_a_broker_restart() {
    let Some((amqp_url, node)) = private_broker() else {
        return;
    };
    let primary = primary(amqp_url, false).await;
    let replica = HubProcess::start_with(&primary, EXE, &UNCAPPED).await;
    let endpoints = Endpoints::new(vec![primary.url(""), replica.base_url.clone()]);
    let routes = Routes::same(&endpoints);
    let (key, license_id) = primary.insert_license("pro").await;
    let started = std::time::Instant::now();
    let mut replicas = vec![replica];
    let faults = async {
        // A fifth of the way in: SIGKILL the replica (its ingest, dispatcher, finisher and
        // download), and start a new one a moment later, as an orchestrator would.
        wait_completed(&primary, (BUILDS / 5) as i64).await;
        let dead = replicas.pop().expect("replica");
        endpoints.remove(&dead.base_url);
        dead.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fresh = HubProcess::start_with(&primary, EXE, &UNCAPPED).await;
        endpoints.add(fresh.base_url.clone());
        replicas.push(fresh);
        // Half way: restart the broker.
        wait_completed(&primary, (BUILDS / 2) as i64).await;
        restart_broker(&node).await;
    };
    let outcomes = drive(&primary, &routes, &key, faults).await;
    let verdict = verify(&primary, license_id, outcomes).await;
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "20-load-replica-killed",
        fault: "500 builds from 50 CLIs onto 20 workers (2 slots) on two replicas running every service: one SIGKILLed a fifth of the way in and restarted 2 s later, the broker restarted half way",
        outcome: verdict.outcome(started.elapsed().as_secs_f64()),
        test: "faults::load::five_hundred_builds_survive_a_killed_replica_and_a_broker_restart",
    });
    drop(replicas);
    shared::testing::cleanup_amqp(&primary.amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_builds_on_split_services_survive_a_killed_dispatcher_and_ingest_and_a_broker_restart(
) {
    let Some((amqp_url, node)) = private_broker() else {
        return;
    };
    // The in-process hub only holds the database, prefix and bucket (and relays its outbox):
    // nothing is routed to it, and it runs no finisher.
    let primary = primary(amqp_url, true).await;
    let start = |role: &'static str| {
        let primary = primary.clone();
        async move { HubProcess::start_role(&primary, EXE, Some(role), &UNCAPPED).await }
    };
    let ingests = vec![start("ingest").await, start("ingest").await];
    let dispatchers = vec![start("dispatcher").await, start("dispatcher").await];
    let finisher = start("finisher").await;
    let download = start("download").await;
    let routes = Routes {
        ingest: Endpoints::new(ingests.iter().map(|i| i.base_url.clone()).collect()),
        ws: Endpoints::new(dispatchers.iter().map(|d| d.base_url.clone()).collect()),
        download: Endpoints::new(vec![download.base_url.clone()]),
    };
    let (key, license_id) = primary.insert_license("pro").await;
    let started = std::time::Instant::now();
    let (mut ingests, mut dispatchers) = (ingests, dispatchers);
    let faults = async {
        // A fifth of the way in: SIGKILL a dispatcher; its workers reconnect to the other one.
        wait_completed(&primary, (BUILDS / 5) as i64).await;
        let dead = dispatchers.remove(0);
        routes.ws.remove(&dead.base_url);
        dead.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fresh = start("dispatcher").await;
        routes.ws.add(fresh.base_url.clone());
        dispatchers.push(fresh);
        // Two fifths: SIGKILL an ingest; what it was receiving fails, the other takes the rest.
        wait_completed(&primary, (2 * BUILDS / 5) as i64).await;
        let dead = ingests.remove(0);
        routes.ingest.remove(&dead.base_url);
        dead.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fresh = start("ingest").await;
        routes.ingest.add(fresh.base_url.clone());
        ingests.push(fresh);
        // Three fifths: restart the broker.
        wait_completed(&primary, (3 * BUILDS / 5) as i64).await;
        restart_broker(&node).await;
    };
    let outcomes = drive(&primary, &routes, &key, faults).await;
    let verdict = verify(&primary, license_id, outcomes).await;
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "21-load-split-services",
        fault: "500 builds from 50 CLIs onto 20 workers (2 slots) on the four services as separate processes (two ingests, two dispatchers): a dispatcher SIGKILLed a fifth of the way in, an ingest at two fifths, each restarted 2 s later, the broker restarted at three fifths",
        outcome: verdict.outcome(started.elapsed().as_secs_f64()),
        test: "faults::load::five_hundred_builds_on_split_services_survive_a_killed_dispatcher_and_ingest_and_a_broker_restart",
    });
    drop((finisher, download, ingests, dispatchers));
    shared::testing::cleanup_amqp(&primary.amqp).await;
}
