//! Prometheus metrics shared by every service, exposed on `/metrics`.

use std::sync::OnceLock;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Label set: a list of (name, value) pairs.
pub type Labels = Vec<(String, String)>;

/// Every metric the hub exports.
pub struct Metrics {
    registry: Registry,
    /// Outbox rows published with a broker confirm.
    pub outbox_published: Counter,
    /// Failed relay batches (retried).
    pub outbox_errors: Counter,
    /// Open WebSocket connections by role (`worker`, `cli`, `unidentified`).
    pub ws_connections: Family<Labels, Gauge>,
    /// Connected workers on this process.
    pub active_workers: Gauge,
    /// Queued jobs per target (refreshed periodically).
    pub queue_depth: Family<Labels, Gauge>,
    /// Seconds from enqueue to assignment.
    pub time_to_assign_seconds: Histogram,
    /// Bytes received, by kind (`tarball`, `artifact`).
    pub bytes_in: Family<Labels, Counter>,
    /// Bytes sent, by kind (`tarball`, `artifact`).
    pub bytes_out: Family<Labels, Counter>,
    /// Leases that expired (worker lost).
    pub lease_expiries: Counter,
    /// Jobs requeued after a lost worker.
    pub retries: Counter,
    /// Worker or CLI frames ignored, by reason.
    pub frames_ignored: Family<Labels, Counter>,
    /// Azure calls by operation and outcome.
    pub azure_calls: Family<Labels, Counter>,
    /// Download attempts by outcome.
    pub downloads: Family<Labels, Counter>,
    /// Jobs reaching a terminal state, by state.
    pub jobs_finished: Family<Labels, Counter>,
    /// HTTP connections refused at accept, by reason (`full`, `address_full`).
    pub connections_refused: Family<Labels, Counter>,
}

/// One-label helper.
pub fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_owned(), value.to_owned())]
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("perry_hub");
        let m = Self {
            outbox_published: Counter::default(),
            outbox_errors: Counter::default(),
            ws_connections: Family::default(),
            active_workers: Gauge::default(),
            queue_depth: Family::default(),
            time_to_assign_seconds: Histogram::new([
                0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            lease_expiries: Counter::default(),
            retries: Counter::default(),
            frames_ignored: Family::default(),
            azure_calls: Family::default(),
            downloads: Family::default(),
            jobs_finished: Family::default(),
            connections_refused: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "outbox_published",
            "Outbox rows published and confirmed",
            m.outbox_published.clone(),
        );
        registry.register(
            "outbox_errors",
            "Failed outbox relay batches",
            m.outbox_errors.clone(),
        );
        registry.register(
            "ws_connections",
            "Open WebSocket connections by role",
            m.ws_connections.clone(),
        );
        registry.register(
            "active_workers",
            "Connected workers",
            m.active_workers.clone(),
        );
        registry.register(
            "queue_depth",
            "Queued jobs per target",
            m.queue_depth.clone(),
        );
        registry.register(
            "time_to_assign_seconds",
            "Seconds from enqueue to assignment",
            m.time_to_assign_seconds.clone(),
        );
        registry.register("bytes_in", "Bytes received", m.bytes_in.clone());
        registry.register("bytes_out", "Bytes sent", m.bytes_out.clone());
        registry.register(
            "lease_expiries",
            "Expired job leases",
            m.lease_expiries.clone(),
        );
        registry.register(
            "retries",
            "Jobs requeued after a lost worker",
            m.retries.clone(),
        );
        registry.register(
            "frames_ignored",
            "Ignored WebSocket frames by reason",
            m.frames_ignored.clone(),
        );
        registry.register(
            "connections_refused",
            "HTTP connections refused at accept by reason",
            m.connections_refused.clone(),
        );
        registry.register(
            "azure_calls",
            "Azure API calls by operation and outcome",
            m.azure_calls.clone(),
        );
        registry.register(
            "downloads",
            "Download attempts by outcome",
            m.downloads.clone(),
        );
        registry.register(
            "jobs_finished",
            "Jobs reaching a terminal state",
            m.jobs_finished.clone(),
        );
        Self { registry, ..m }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics");
        }
        out
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}
