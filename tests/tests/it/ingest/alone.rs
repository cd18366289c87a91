//! The ingest service run on its own: ready without RabbitMQ (the outbox covers it).

use clap::Parser;
use perry_hub_tests::{tempdir::TempDir, WAIT};
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn ingest_alone_is_ready_while_rabbitmq_is_unreachable_and_stops_on_cancel() {
    let db = shared::testing::TestDb::new().await;
    let dir = TempDir::new("perry-ingest-alone");
    let mut config = ingest::Config::parse_from(["ingest"]);
    let mut amqp = shared::testing::amqp_config();
    // Nothing listens here: submissions wait in the outbox until the broker is back.
    amqp.url = shared::config::Secret::new("amqp://guest:guest@127.0.0.1:1/%2f");
    config.common = shared::config::ServiceArgs {
        bind: "127.0.0.1".into(),
        shutdown_grace_secs: 5,
        check: false,
        hub: shared::testing::hub_config("http://127.0.0.1"),
        db: db.config.clone(),
        amqp,
        blob: perry_hub_tests::fs_blob_config(&dir.0),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let cancel = CancellationToken::new();
    let server = tokio::spawn(ingest::run(config, listener, cancel.clone()));

    let ready = reqwest::Client::new()
        .get(format!("{base}/readyz"))
        .timeout(WAIT)
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);

    cancel.cancel();
    tokio::time::timeout(WAIT, server)
        .await
        .expect("stops within the grace period")
        .expect("join")
        .expect("clean exit");
}
