//! Prometheus metrics shared by every service, exposed on `/metrics` in the OpenMetrics text
//! format ([`CONTENT_TYPE`]). [`refresh`] sets the gauges read from MySQL (queues, outbox,
//! pool) when `/metrics` is scraped; [`http`] counts and times every HTTP request.

pub mod http;
pub mod refresh;

use std::sync::OnceLock;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::Registry,
};

/// Content type of [`Metrics::render`]: `prometheus_client` writes OpenMetrics text (it ends
/// with `# EOF`), which Prometheus parses only when told so.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram family with fixed buckets.
pub type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn http_buckets() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

fn build_buckets() -> Histogram {
    Histogram::new([
        10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    ])
}

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
    /// HTTP requests by method, route (the matched pattern) and status.
    pub http_requests: Family<Labels, Counter>,
    /// HTTP request latency (to the response head) by method, route and status.
    pub http_request_duration_seconds: Histograms,
    /// Outbox rows not published yet (read from MySQL at scrape).
    pub outbox_backlog: Gauge,
    /// Age of the oldest unpublished outbox row, 0 when none (at scrape).
    pub outbox_oldest_unsent_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// How long the longest-waiting queued job of each target has waited (at scrape).
    pub queue_oldest_wait_seconds: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Jobs ended, submission to end, by asked-for target and outcome.
    pub build_duration_seconds: Histograms,
    /// Database pool connections by state (`idle`, `in_use`) and the pool's maximum (`max`).
    pub db_pool_connections: Family<Labels, Gauge>,
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
            http_requests: Family::default(),
            http_request_duration_seconds: Family::new_with_constructor(http_buckets),
            outbox_backlog: Gauge::default(),
            outbox_oldest_unsent_seconds: Gauge::default(),
            queue_oldest_wait_seconds: Family::default(),
            build_duration_seconds: Family::new_with_constructor(build_buckets),
            db_pool_connections: Family::default(),
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
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route and status",
            m.http_request_duration_seconds.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Outbox rows not yet published",
            m.outbox_backlog.clone(),
        );
        registry.register(
            "outbox_oldest_unsent_seconds",
            "Age of the oldest unpublished outbox row",
            m.outbox_oldest_unsent_seconds.clone(),
        );
        registry.register(
            "queue_oldest_wait_seconds",
            "Wait of the longest-waiting queued job per target",
            m.queue_oldest_wait_seconds.clone(),
        );
        registry.register(
            "build_duration_seconds",
            "Submission to end of a job by target and outcome",
            m.build_duration_seconds.clone(),
        );
        // OpenMetrics info: `perry_hub_build_info{version="…"} 1`.
        registry.register(
            "build",
            "Version of this process",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections by state",
            m.db_pool_connections.clone(),
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
