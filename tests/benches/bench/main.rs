//! `make bench`: throughput and memory figures against real MariaDB, RabbitMQ and S3.
//!
//! - blob stores: 512 MiB streamed in and out of the filesystem and S3 stores;
//! - download service: a 512 MiB artifact through `/api/v1/dl/:token` (base64 and raw) against
//!   a plain file read;
//! - ingest: a 512 MiB tarball submitted as the CLI does (base64 multipart part);
//! - dispatcher: resident memory per idle CLI WebSocket at 10 000 connections;
//! - live events ([`events`]): log lines per second and latency worker → CLI, submit →
//!   `job_assign`, end-to-end builds per second and CPU per build;
//! - finisher: submission to signed artifact of a cold Windows build (VM deallocated) against a
//!   fake Azure, with and without the prewarm (DEC-15). The VM boots in
//!   `PERRY_BENCH_BOOT_SECS` (default 5; Azure takes about 90) and stage 1 takes
//!   `PERRY_BENCH_CROSS_COMPILE_SECS` (default 5).
//!
//! Figures are printed, never asserted: this is a measurement, not a test.

mod builds;
mod events;
mod sockets;
mod sql;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use blob::{BlobStore, ByteStream, PutOptions};
use futures_util::StreamExt;
use perry_hub_tests::{HubOptions, TestHub};
use serde_json::json;
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
const SIZE: u64 = 512 * MIB;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "ws-client") {
        return sockets::ws_client(
            &args[i + 1],
            &args[i + 2],
            args[i + 3].parse().unwrap_or(1000),
        );
    }
    let only = std::env::var("PERRY_BENCH").unwrap_or_default();
    sql::install();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "# Perry Hub benchmarks ({} cores)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        if only.is_empty() || only.contains("blob") {
            blob_stores().await;
        }
        if only.is_empty() || only.contains("download") {
            download().await;
        }
        if only.is_empty() || only.contains("ingest") {
            ingest().await;
        }
        if only.is_empty() || only.contains("ws") {
            sockets::idle_websockets(
                std::env::var("PERRY_BENCH_WS_CONNS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(10_000),
            )
            .await;
        }
        if only.is_empty() || only.contains("windows") {
            cold_windows_builds().await;
        }
        if only.is_empty()
            || ["events", "logs", "assign", "builds"]
                .iter()
                .any(|p| only.contains(p))
        {
            events::run(&only).await;
        }
    });
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Run `f`, returning its result, elapsed time and the peak RSS growth in MiB.
async fn measured<T>(f: impl std::future::Future<Output = T>) -> (T, Duration, u64) {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = rss_kib("VmHWM:");
    let t = Instant::now();
    let out = f.await;
    let elapsed = t.elapsed();
    (out, elapsed, rss_kib("VmHWM:").saturating_sub(base) / 1024)
}

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn generated(total: u64) -> ByteStream {
    const CHUNK: u64 = 256 * 1024;
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    Box::pin(
        futures_util::stream::iter(0..total.div_ceil(CHUNK)).map(move |i| {
            let len = usize::try_from(CHUNK.min(total - i * CHUNK)).unwrap_or(0);
            let mut buf = Vec::with_capacity(len + 8);
            while buf.len() < len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                buf.extend_from_slice(&state.to_le_bytes());
            }
            buf.truncate(len);
            Ok(bytes::Bytes::from(buf))
        }),
    )
}

async fn drain(mut s: ByteStream) -> u64 {
    let mut n = 0;
    while let Some(c) = s.next().await {
        n += c.map(|c| c.len() as u64).unwrap_or(0);
    }
    n
}

async fn blob_stores() {
    println!("\n## Blob stores: 512 MiB put then get");
    let dir = perry_hub_tests::tempdir::TempDir::new("perry-bench-fs");
    let fs: Arc<dyn BlobStore> = Arc::new(blob::FsBlobStore::new(dir.0.clone()).expect("fs store"));
    let (s3, _) = shared::testing::s3_store().await;
    for (label, store) in [("fs", fs), ("s3 (s3s-fs)", s3 as Arc<dyn BlobStore>)] {
        let (put, d_put, m_put) =
            measured(store.put("bench/blob", generated(SIZE), PutOptions::new(SIZE))).await;
        let put = put.expect("put");
        let (n, d_get, m_get) =
            measured(async { drain(store.get("bench/blob", None).await.expect("get").body).await })
                .await;
        assert_eq!(n, put.size);
        println!(
            "{label:>12}: put {:7.1} MiB/s (peak RSS +{m_put} MiB), get {:7.1} MiB/s (peak RSS +{m_get} MiB)",
            rate(SIZE, d_put),
            rate(SIZE, d_get)
        );
        let _ = store.delete("bench/blob").await;
    }
}

/// Store a 512 MiB artifact for a fresh job and mint a download token; returns (token, blob path).
async fn big_artifact(hub: &TestHub) -> (String, String) {
    let (_, license) = hub.insert_license("pro").await;
    let job = hub.insert_job(license, "linux", 10, b"t", json!({})).await;
    let id = uuid::Uuid::new_v4().to_string();
    let key = job::artifacts::artifact_key(&id);
    let put = hub
        .deps
        .blob
        .put(&key, generated(SIZE), PutOptions::new(SIZE))
        .await
        .expect("put");
    sqlx::query(
        "INSERT INTO artifacts (id, job_id, attempt, name, target, size, sha256, blob_key, hidden, created_ms, expires_ms) \
         VALUES (?, ?, 0, 'big.tar.gz', 'linux', ?, ?, ?, FALSE, 0, 9999999999999)",
    )
    .bind(&id)
    .bind(&job)
    .bind(i64::try_from(put.size).unwrap_or(0))
    .bind(put.sha256_hex())
    .bind(&key)
    .execute(hub.pool())
    .await
    .expect("artifact row");
    let mut conn = hub.pool().acquire().await.expect("conn");
    let token = job::artifacts::mint_download_token(&mut conn, &id, 600)
        .await
        .expect("token");
    (token, key)
}

async fn http_drain(resp: reqwest::Response) -> u64 {
    let mut n = 0;
    let mut body = resp.bytes_stream();
    while let Some(c) = body.next().await {
        n += c.map(|c| c.len() as u64).unwrap_or(0);
    }
    n
}

async fn download() {
    println!("\n## Download service: 512 MiB artifact over HTTP (filesystem store)");
    let hub = TestHub::start_with(HubOptions {
        fs_blobs: true,
        ..HubOptions::default()
    })
    .await;
    let (token, key) = big_artifact(&hub).await;
    let path = hub.blob_config.dir.join(&key);
    let (n, d_file, _) = measured(async {
        use tokio::io::AsyncReadExt;
        let mut f = tokio::fs::File::open(&path).await.expect("open blob file");
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            let r = f.read(&mut buf).await.expect("read");
            if r == 0 {
                break n;
            }
            n += r as u64;
        }
    })
    .await;
    println!(
        "   plain file read: {:7.1} MiB/s ({n} bytes)",
        rate(n, d_file)
    );
    let url = hub.url(&format!("/api/v1/dl/{token}"));
    let (n, d, m) =
        measured(async { http_drain(hub.http.get(&url).send().await.expect("GET")).await }).await;
    println!(
        "   base64 (legacy): {:7.1} MiB/s of artifact, {n} bytes on the wire, peak RSS +{m} MiB",
        rate(SIZE, d)
    );
    let (token2, _) = big_artifact(&hub).await;
    let url = hub.url(&format!("/api/v1/dl/{token2}"));
    let (n, d, m) = measured(async {
        http_drain(
            hub.http
                .get(&url)
                .header("accept", "application/octet-stream")
                .send()
                .await
                .expect("GET"),
        )
        .await
    })
    .await;
    println!(
        "   raw:             {:7.1} MiB/s, {n} bytes, peak RSS +{m} MiB",
        rate(n, d)
    );
    hub.stop().await;
}

async fn ingest() {
    println!("\n## Ingest: 512 MiB tarball submitted as base64 multipart (S3 store)");
    let hub = TestHub::start_with(HubOptions {
        hub: Some(Box::new(|h| h.self_hosted = true)),
        ingest: Some(big_ingest_settings()),
        ..HubOptions::default()
    })
    .await;
    let (key, _) = hub.insert_license("pro").await;
    let manifest = json!({"app_name":"bench","bundle_id":"com.example.bench","version":"1.0.0","entry":"src/main.ts","targets":["linux"]});
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let h = hasher.clone();
    let b64 = blob::b64::encode_stream(Box::pin(generated(SIZE).map(move |c| {
        if let Ok(c) = &c {
            h.lock().map(|mut h| h.update(c)).ok();
        }
        c
    })));
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(b64));
    let form = reqwest::multipart::Form::new()
        .text("manifest", manifest.to_string())
        .text("credentials", "{}")
        .part("tarball_b64", part)
        .text("license_key", key);
    let (resp, d, m) = measured(async {
        hub.http
            .post(hub.url("/api/v1/build"))
            .multipart(form)
            .send()
            .await
    })
    .await;
    match resp {
        Ok(r) if r.status().is_success() => {
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            let job = body["job_id"].as_str().unwrap_or_default().to_owned();
            let stored: Option<String> =
                sqlx::query_scalar("SELECT input_sha256 FROM jobs WHERE id = ?")
                    .bind(&job)
                    .fetch_optional(hub.pool())
                    .await
                    .ok()
                    .flatten();
            let expected = hex::encode(
                hasher
                    .lock()
                    .map(|h| h.clone().finalize().to_vec())
                    .unwrap_or_default(),
            );
            println!(
                "   {:7.1} MiB/s of tarball ({} MiB base64 on the wire), peak RSS +{m} MiB, sha256 matches: {}",
                rate(SIZE, d),
                blob::b64::encoded_len(SIZE) / MIB,
                stored.as_deref() == Some(expected.as_str())
            );
        }
        Ok(r) => println!(
            "   submission refused: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ),
        Err(e) => println!("   submission failed: {e}"),
    }
    hub.stop().await;
}

fn big_ingest_settings() -> ingest::Settings {
    let mut s = perry_hub_tests::ingest_settings();
    s.max_body_bytes = 2048 * MIB;
    s.pro_tarball_cap_bytes = 1024 * MIB;
    s
}

fn secs_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

async fn cold_windows_builds() {
    use perry_hub_tests::{fake_azure::FakeAzure, windows::cold_build};
    let boot = secs_from_env("PERRY_BENCH_BOOT_SECS", 5);
    let cross_compile = secs_from_env("PERRY_BENCH_CROSS_COMPILE_SECS", 5);
    println!(
        "\n## Cold Windows build: submission to signed artifact (VM boot {}s, cross-compile {}s)",
        boot.as_secs(),
        cross_compile.as_secs()
    );
    for prewarm in ["false", "true"] {
        let azure = FakeAzure::start(3600).await;
        azure.set_boot(boot);
        let mut args = vec![
            "bench".to_owned(),
            "--sweep-secs".to_owned(),
            "1".to_owned(),
        ];
        args.extend(azure.args());
        args.extend(["--azure-prewarm".to_owned(), prewarm.to_owned()]);
        let hub = TestHub::start_with(HubOptions {
            finisher: Some(finisher_settings(&args)),
            ..HubOptions::default()
        })
        .await;
        let limit = boot + cross_compile + Duration::from_secs(60);
        let b = cold_build(&hub, &azure, cross_compile, limit).await;
        let at =
            |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()));
        println!(
            "{:>12}: signed after {:6.1}s (VM start requested at {}, stage 1 done at {:.1}s, VM up at {:.1}s)",
            if prewarm == "true" { "prewarm" } else { "no prewarm" },
            b.signed.as_secs_f64(),
            at(b.vm_start),
            b.stage_one.as_secs_f64(),
            b.vm_up.as_secs_f64()
        );
        hub.stop().await;
    }
}

fn finisher_settings(args: &[String]) -> finisher::Settings {
    use clap::Parser;
    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        s: finisher::Settings,
    }
    P::parse_from(args).s
}
