//! The operator API (issue 17): jobs, workers and drain, queues, the outbox and dead letters,
//! licences and tokens, all behind the admin secret.

mod cli;
mod dashboard;
mod fleet;
mod jobs;
mod licences;
mod metrics;

use perry_hub_tests::{api::Reply, TestHub};
use serde_json::Value;

/// GET with the admin secret.
pub async fn admin_get(hub: &TestHub, path: &str) -> Reply {
    let auth = hub.admin_auth();
    hub.get_json(path, &[("authorization", &auth)]).await
}

/// POST with the admin secret.
pub async fn admin_post(hub: &TestHub, path: &str, body: &Value) -> Reply {
    let auth = hub.admin_auth();
    hub.post_json(path, body, &[("authorization", &auth)]).await
}

/// Wait until the dispatcher of `hub` offers exactly `free` slots for `target`.
pub async fn wait_free_slots(hub: &TestHub, target: &str, free: usize) {
    let deadline = tokio::time::Instant::now() + perry_hub_tests::WAIT;
    loop {
        let now = hub.dispatcher.registry.free_slots(target);
        if now == free {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{target}: {now} free slots, expected {free}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
