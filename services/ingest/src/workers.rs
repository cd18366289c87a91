//! Worker presence as the dispatchers record it in MySQL: which workers are connected, whether
//! they are busy, and the expected compiler version.

use shared::{clock::now_ms, db, runtime::Deps};
use sqlx::AnyPool;

/// A worker is connected when its row is open and was refreshed this recently (the dispatcher
/// refreshes it with every ping; a worker silent for 90 s is lost, §4.1).
pub const PRESENCE_WINDOW_MS: i64 = 90_000;

/// The targets `/status` reports, in the order of §3.1.
pub const REPORTED_TARGETS: &[&str] = &["macos", "ios", "android", "linux", "windows"];

/// A connected worker.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkerRow {
    /// Worker name.
    pub name: String,
    /// Seed string form, e.g. `",linux,android,"`.
    pub capabilities: String,
    /// Reported compiler version.
    pub perry_version: Option<String>,
    /// 1 when it holds an assigned or running job.
    pub busy: i64,
    /// Connection id.
    pub id: String,
    /// Parallel job slots.
    pub max_concurrent: i32,
    /// When it connected (epoch ms).
    pub connected_ms: i64,
    /// Last ping (epoch ms).
    pub last_seen_ms: i64,
    /// 1 when an operator drained its name.
    pub draining: i64,
}

impl WorkerRow {
    /// Whether it holds an assigned or running job.
    pub fn is_busy(&self) -> bool {
        self.busy != 0
    }

    /// The reported version, `"unknown"` if never reported.
    pub fn version(&self) -> String {
        self.perry_version
            .clone()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// Every connected worker, oldest connection first.
pub async fn connected(pool: &AnyPool) -> Result<Vec<WorkerRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT w.name, w.capabilities, w.perry_version, \
         CAST(EXISTS(SELECT 1 FROM jobs j WHERE j.worker_id = w.id AND j.state IN ('assigned', 'running')) AS SIGNED) AS busy, \
         w.id, w.max_concurrent, w.connected_ms, w.last_seen_ms, \
         CAST(EXISTS(SELECT 1 FROM worker_drains d WHERE d.name = w.name) AS SIGNED) AS draining \
         FROM workers w WHERE w.disconnected_ms IS NULL AND w.last_seen_ms > ? ORDER BY w.connected_ms, w.name",
    )
    .bind(now_ms() - PRESENCE_WINDOW_MS)
    .fetch_all(pool)
    .await
}

/// The targets of [`REPORTED_TARGETS`] that some worker advertises exactly, in that order.
pub fn supported_targets(capabilities: &[&str]) -> Vec<String> {
    REPORTED_TARGETS
        .iter()
        .filter(|t| {
            capabilities
                .iter()
                .any(|caps| caps.split(',').any(|c| c.trim() == **t))
        })
        .map(|t| (*t).to_owned())
        .collect()
}

/// The expected worker version: the persisted setting, else the configured one (`""` if none).
pub async fn expected_version(deps: &Deps) -> Result<String, sqlx::Error> {
    Ok(db::get_setting(&deps.pool, db::SETTING_EXPECTED_VERSION)
        .await?
        .unwrap_or_else(|| deps.hub.expected_version.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_targets_are_exact_matches_in_the_fixed_order() {
        let caps = [",windows,linux,", ",macos-sign,ios-sign,", ",tvos,android,"];
        assert_eq!(
            supported_targets(&caps),
            vec!["android", "linux", "windows"]
        );
        assert!(supported_targets(&[",windows-sign,", ",tvos,"]).is_empty());
        assert!(supported_targets(&[]).is_empty());
    }

    #[test]
    fn unknown_versions_are_reported_as_unknown() {
        let w = WorkerRow {
            name: "w".into(),
            capabilities: ",linux,".into(),
            perry_version: None,
            busy: 1,
            id: "c".into(),
            max_concurrent: 1,
            connected_ms: 0,
            last_seen_ms: 0,
            draining: 0,
        };
        assert_eq!(w.version(), "unknown");
        assert!(w.is_busy());
    }
}
