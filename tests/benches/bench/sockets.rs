//! Idle WebSockets: what the hub holds per subscribed CLI connection that waits.

use std::{
    io::{BufRead as _, Write as _},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use perry_hub_tests::{HubOptions, TestHub};
use serde_json::json;

use crate::rss_kib;

/// Memory per idle subscriber: `n` CLI sockets (from a subprocess) watching one ended job.
pub async fn idle_websockets(n: usize) {
    println!("\n## Dispatcher: {n} idle CLI WebSockets");
    // Every connection comes from this machine and watches one job: lift the limits per
    // address and per job for the measurement.
    let hub = TestHub::start_with(HubOptions {
        fs_blobs: true,
        no_finisher: true,
        dispatcher: Some(dispatcher::Settings {
            max_subscriptions_per_address: n,
            max_subscribers_per_job: n,
            ..dispatcher::Settings::default()
        }),
        // Every client connects from 127.0.0.1: lift the connection caps.
        hub: Some(Box::new(|h| {
            h.http.max_connections = 0;
            h.http.max_connections_per_addr = 0;
        })),
        ..HubOptions::default()
    })
    .await;
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "ios", 10, b"t", json!({})).await;
    sqlx::query("UPDATE jobs SET state = 'completed' WHERE id = ?")
        .bind(&job)
        .execute(hub.pool())
        .await
        .ok();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib("VmRSS:");
    let exe = std::env::current_exe().expect("exe");
    let mut child = std::process::Command::new(exe)
        .args(["ws-client", &hub.ws_url(), &job, &n.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn client");
    let stdout = child.stdout.take().expect("stdout");
    let t = Instant::now();
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        line
    })
    .await
    .unwrap_or_default();
    let took = t.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib("VmRSS:");
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    println!("   client: {}", ready.trim());
    println!(
        "   hub RSS {} MiB -> {} MiB: {per:.1} KiB per idle connection (connected in {took:.1?})",
        before / 1024,
        after / 1024
    );
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"done\n");
    }
    let _ = child.kill();
    let _ = child.wait();
    hub.stop().await;
}

/// Subprocess: open `n` CLI connections subscribed to `job`, report, and hold them until
/// stdin closes.
pub fn ws_client(url: &str, job: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conns = Vec::with_capacity(n);
        let mut failed = 0;
        for _ in 0..n {
            match tokio_tungstenite::connect_async(url).await {
                Ok((mut ws, _)) => {
                    use futures_util::SinkExt;
                    let sub = json!({"type":"subscribe","job_id":job}).to_string();
                    let _ = ws
                        .send(tokio_tungstenite::tungstenite::Message::Text(sub.into()))
                        .await;
                    // Wait for job_created so the hub's session is fully set up; anything
                    // else (a close) is a failed connection.
                    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                        Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))))
                            if t.contains("\"job_created\"") =>
                        {
                            conns.push(ws);
                        }
                        _ => failed += 1,
                    }
                }
                Err(_) => failed += 1,
            }
        }
        println!("{} connected, {failed} failed", conns.len());
        let _ = std::io::stdout().flush();
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
        drop(conns);
    });
}
