//! The attack log behind `docs/attacks.md`: each attack scenario (`tests/it/attacks/`) records
//! what it sent, the limit it hit, the answer and the hub process's memory before and after, as
//! one table row in `target/attacks/<slug>.md`. `scripts/attacks-report.sh` renders the rows
//! into `docs/attacks.md` (`make attacks` runs both), so the table is what the tests saw.

use std::path::PathBuf;

/// One attack as the test saw it.
#[derive(Debug, Clone)]
pub struct Attack<'a> {
    /// File name of the row (stable, unique per scenario).
    pub slug: &'a str,
    /// What was sent.
    pub request: &'a str,
    /// The limit that stopped it.
    pub limit: &'a str,
    /// The hub's answer.
    pub response: &'a str,
}

/// Memory of this process (the in-process hub and the test's clients), in KiB of resident set.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Where the rows go.
pub fn dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("attacks")
}

/// Record `attack` with the resident memory before it (`before_kib`) and now.
pub fn record(attack: &Attack<'_>, before_kib: u64) {
    let after = rss_kib();
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let row = format!(
        "| {} | {} | {} | {:.1} → {:.1} MiB |\n",
        cell(attack.request),
        cell(attack.limit),
        cell(attack.response),
        before_kib as f64 / 1024.0,
        after as f64 / 1024.0,
    );
    let dir = dir();
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{}.md", attack.slug)), row);
    }
}

/// The memory before an attack, measured after a warm-up (a fresh client's first request, a
/// licence check and the hub's first answers) so that one-time allocations of the process are
/// not counted as the attack's.
pub async fn baseline(hub: &crate::TestHub) -> u64 {
    let client = reqwest::Client::new();
    let _ = client.get(hub.url("/api/v1/status")).send().await;
    let _ = client
        .post(hub.url("/api/v1/license/verify"))
        .json(&serde_json::json!({"license_key": "FREE-0000-0000-0000"}))
        .send()
        .await;
    // Warm-up failures must not count against the scenario's own key-failure budget.
    let _ = sqlx::query("DELETE FROM rate_events WHERE bucket LIKE 'keyfail:%'")
        .execute(hub.pool())
        .await;
    rss_kib()
}
