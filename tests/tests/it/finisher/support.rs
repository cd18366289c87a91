//! Helpers shared by the scenarios of this folder.

use std::{future::Future, time::Duration};

use clap::Parser;
use perry_hub_tests::{HubOptions, QueueKind, TestHub, WsClient, WAIT};
use serde_json::Value;
use shared::{
    clock::now_ms,
    queue::{outbox, Message},
};

/// Finisher settings with fast sweeps plus `extra` flags.
pub(super) fn settings(extra: &[String]) -> finisher::Settings {
    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        s: finisher::Settings,
    }
    let mut args = vec!["test".to_owned(), "--sweep-secs".to_owned(), "1".to_owned()];
    args.extend_from_slice(extra);
    P::parse_from(args).s
}

pub(super) fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

pub(super) async fn hub_with(extra: &[String]) -> TestHub {
    hub_on(QueueKind::RabbitMq, extra).await
}

/// [`hub_with`] on `queue`.
pub(super) async fn hub_on(queue: QueueKind, extra: &[String]) -> TestHub {
    TestHub::start_with(HubOptions {
        finisher: Some(settings(extra)),
        ..queue.options()
    })
    .await
}

pub(super) async fn hub_without_finisher() -> TestHub {
    TestHub::start_with(HubOptions {
        no_finisher: true,
        ..HubOptions::default()
    })
    .await
}

/// Poll `check` until it holds, failing after [`WAIT`].
pub(super) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn frames_until_complete(cli: &mut WsClient) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let f = cli.recv().await.expect("socket closed before complete");
        let done = f["type"] == "complete";
        frames.push(f);
        if done {
            return frames;
        }
    }
}

pub(super) async fn scalar_i64(hub: &TestHub, sql: &str, id: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(hub.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub(super) async fn exec(hub: &TestHub, sql: &str) {
    sqlx::query(sql)
        .execute(hub.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Put a job in `finishing` after stage 1 (attempt 1), as the dispatcher leaves it.
pub(super) async fn make_finishing(hub: &TestHub, job: &str) {
    sqlx::query("UPDATE jobs SET state = 'finishing', attempt = 1, needs_finishing = 'windows', assigned_ms = ? WHERE id = ?")
        .bind(now_ms())
        .bind(job)
        .execute(hub.pool())
        .await
        .expect("finishing");
}

pub(super) async fn send_stage_finished(hub: &TestHub, job: &str, attempt: i32) {
    let mut tx = shared::db::begin(hub.pool()).await.expect("tx");
    outbox::enqueue(
        &mut tx,
        &Message::StageFinished {
            job_id: job.to_owned(),
            attempt,
        },
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
    hub.deps.notify_outbox();
}

pub(super) fn azure_calls(op: &str, outcome: &str) -> u64 {
    let labels = vec![
        ("op".to_owned(), op.to_owned()),
        ("outcome".to_owned(), outcome.to_owned()),
    ];
    shared::metrics::get()
        .azure_calls
        .get_or_create(&labels)
        .get()
}

pub(super) async fn vm_row(hub: &TestHub) -> (String, i32, Option<String>, Option<i64>) {
    let (state, attempts, error, stop): (String, i32, shared::db::OptText, Option<i64>) =
        sqlx::query_as("SELECT state, start_attempts, last_error, last_stop_ms FROM vm_state")
            .fetch_one(hub.pool())
            .await
            .expect("vm_state row");
    (state, attempts, error.0, stop)
}

pub(super) async fn blob_exists(hub: &TestHub, key: &str) -> bool {
    hub.deps.blob.size(key).await.expect("blob size").is_some()
}

/// Close a worker's socket and wait until the hub has recorded the disconnect.
pub(super) async fn disconnect(hub: &TestHub, worker: perry_hub_tests::FakeWorker) {
    worker.ws.close().await;
    eventually("the disconnect", || async {
        hub.db()
            .count("workers", "disconnected_ms IS NOT NULL")
            .await
            >= 1
    })
    .await;
}

/// End a job's lease now (past the re-attach window).
pub(super) async fn expire_lease(hub: &TestHub, job_id: &str) {
    sqlx::query("UPDATE jobs SET lease_expires_ms = ? WHERE id = ?")
        .bind(now_ms() - 1)
        .bind(job_id)
        .execute(hub.pool())
        .await
        .expect("expire the lease");
}
