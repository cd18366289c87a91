//! Memory while a 512 MiB base64 tarball streams in. A measurement, not a timed test: it is
//! ignored by default; run it with
//! `cargo nextest run -p perry-hub-tests --run-ignored only -E 'test(/^ingest::memory::/)' --no-capture`.

use std::io;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use sha2::{Digest, Sha256};

use super::support::{self, manifest, BOUNDARY};

const MIB: usize = 1024 * 1024;
const CHUNKS: usize = 512;

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn chunk(i: usize) -> Vec<u8> {
    (0..MIB).map(|j| ((i * 31 + j * 7) % 251) as u8).collect()
}

#[tokio::test]
#[ignore = "measurement: streams 512 MiB through ingest into S3"]
async fn a_512_mib_base64_tarball_streams_in_with_flat_memory() {
    let hub = support::hub_with(|s| {
        s.max_body_bytes = 1 << 31;
        s.pro_tarball_cap_bytes = 1 << 30;
    })
    .await;
    let (key, _) = hub.insert_license("pro").await;
    let mut expected = Sha256::new();
    for i in 0..CHUNKS {
        expected.update(chunk(i));
    }
    let expected = hex::encode(expected.finalize());
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"credentials\"\r\n\r\n{{}}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"tarball_b64\"\r\n\r\n",
        manifest("linux", "com.example.big")
    );
    let tail = format!("\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"license_key\"\r\n\r\n{key}\r\n--{BOUNDARY}--\r\n");
    let raw = stream::iter(0..CHUNKS).map(|i| Ok::<_, io::Error>(Bytes::from(chunk(i))));
    let encoded = blob::b64::encode_stream(Box::pin(raw));
    let body = stream::once(async move { Ok(Bytes::from(head)) })
        .chain(encoded)
        .chain(stream::once(async move { Ok(Bytes::from(tail)) }));
    // Reset the high-water mark (Linux: "5" clears VmHWM) so the peak is this upload's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let started = std::time::Instant::now();

    let resp = hub
        .http
        .post(hub.url("/api/v1/build"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("submit");

    let elapsed = started.elapsed();
    let peak = status_kib("VmHWM:");
    let status = resp.status();
    let answer: serde_json::Value = resp.json().await.unwrap_or_default();
    assert_eq!(status, 200, "{answer}");
    let job_id = answer["job_id"].as_str().expect("job id");
    let stored: String = sqlx::query_scalar("SELECT input_sha256 FROM jobs WHERE id = ?")
        .bind(job_id)
        .fetch_one(hub.pool())
        .await
        .expect("job");
    assert_eq!(stored, expected);
    let growth_mib = peak.saturating_sub(before) / 1024;
    println!(
        "ingest: 512 MiB tarball ({} MiB base64) in {:.1} s ({:.0} MiB/s), RSS before {} MiB, peak {} MiB (+{growth_mib} MiB, client and server in one process)",
        blob::b64::encoded_len(512 * MIB as u64) / MIB as u64,
        elapsed.as_secs_f64(),
        512.0 / elapsed.as_secs_f64(),
        before / 1024,
        peak / 1024,
    );
    let _ = hub
        .deps
        .blob
        .delete(&job::artifacts::tarball_key(job_id))
        .await;
    assert!(
        growth_mib < 128,
        "memory grew by {growth_mib} MiB while streaming"
    );
    hub.stop().await;
}
