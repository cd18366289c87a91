//! `standalone::run`: validate, connect, migrate, serve both ports, stop on cancel.

use clap::Parser;
use perry_hub_tests::{api::Reply, tempdir::TempDir, FakeWorker, WAIT};
use serde_json::{json, Value};
use shared::{
    config::ServiceArgs,
    testing::{self, TestDb},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every setting at its default, as `perry-hub` reads them, with the test's database, broker
/// prefix and blob directory.
fn config(db: &TestDb, public_url: &str, blobs: &TempDir) -> standalone::Config {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: standalone::Config,
    }
    let mut config = Cli::parse_from(["perry-hub"]).config;
    config.common = ServiceArgs {
        bind: "127.0.0.1".into(),
        shutdown_grace_secs: 5,
        check: false,
        hub: testing::hub_config(public_url),
        db: db.config.clone(),
        amqp: testing::amqp_config(),
        blob: perry_hub_tests::fs_blob_config(&blobs.0),
    };
    config.finisher = perry_hub_tests::finisher_settings();
    config
}

async fn get(http: &reqwest::Client, url: &str, auth: &str) -> Reply {
    let resp = http
        .get(url)
        .header("authorization", auth)
        .timeout(WAIT)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn perry_hub_serves_the_api_and_the_legacy_websocket_port_then_stops_on_cancel() {
    let db = TestDb::new().await;
    let blobs = TempDir::new("perry-standalone");
    let http_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let legacy_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", http_listener.local_addr().expect("addr"));
    let legacy = format!("ws://{}", legacy_listener.local_addr().expect("addr"));
    let config = config(&db, &base, &blobs);
    let amqp = config.common.amqp.clone();
    let hub = config.common.hub.clone();
    let listeners = standalone::Listeners {
        http: http_listener,
        legacy_ws: Some(legacy_listener),
    };
    let cancel = CancellationToken::new();
    let server = tokio::spawn(standalone::run(config, listeners, cancel.clone()));
    let http = reqwest::Client::new();
    let admin = format!("Bearer {}", hub.admin_secret.expose());

    let ready = get(&http, &format!("{base}/readyz"), "").await;
    let hello = json!({"type":"worker_hello","name":"legacy-1","secret":hub.worker_secret.expose(),
        "capabilities":["linux"],"max_concurrent":1,"perry_version":"0.5.0"});
    let _worker = FakeWorker::connect(&format!("{legacy}/any/path"), hello).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed = loop {
        let (status, body) = get(&http, &format!("{base}/api/v1/admin/workers"), &admin).await;
        assert_eq!(status, 200, "{body}");
        if body["workers"].as_array().is_some_and(|w| !w.is_empty()) {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker never listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    cancel.cancel();
    let stopped = tokio::time::timeout(WAIT, server).await;

    assert_eq!(ready.0, 200, "{}", ready.1);
    assert_eq!(listed["workers"][0]["name"], "legacy-1", "{listed}");
    stopped.expect("stops").expect("task").expect("run");
    testing::cleanup_amqp(&amqp).await;
    db.drop_db().await;
}
