//! Health routes: `/healthz` (liveness), `/readyz` (every dependency, 503 with the envelope
//! when one fails) and `/metrics`, and the [`ReadyCheck`]s of the backing services.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};

use super::ApiError;

/// A dependency that `/readyz` checks.
#[async_trait]
pub trait ReadyCheck: Send + Sync {
    /// Short name (`mysql`, `rabbitmq`, `blob`).
    fn name(&self) -> &'static str;
    /// Ok when usable now.
    async fn check(&self) -> Result<(), String>;
}

/// MySQL readiness.
pub struct DbReady(pub sqlx::AnyPool);

#[async_trait]
impl ReadyCheck for DbReady {
    fn name(&self) -> &'static str {
        "mysql"
    }
    async fn check(&self) -> Result<(), String> {
        crate::db::check(&self.0).await.map_err(|e| e.to_string())
    }
}

/// Queue readiness: RabbitMQ reachable (`rabbitmq`), or the in-process queue (`queue`).
pub struct BrokerReady(pub crate::queue::Queue);

#[async_trait]
impl ReadyCheck for BrokerReady {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}

/// Blob store readiness.
pub struct BlobReady(pub Arc<dyn blob::BlobStore>);

#[async_trait]
impl ReadyCheck for BlobReady {
    fn name(&self) -> &'static str {
        "blob"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}

/// `/healthz` (liveness), `/readyz` (dependencies, 503 with the envelope when one fails) and
/// `/metrics` (OpenMetrics text; the gauges read from MySQL through `pool` are refreshed first).
pub fn health_router(checks: Vec<Arc<dyn ReadyCheck>>, pool: sqlx::AnyPool) -> Router {
    let checks = Arc::new(checks);
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || {
                let checks = checks.clone();
                async move { readiness(&checks).await }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let pool = pool.clone();
                async move {
                    crate::metrics::refresh::refresh(&pool).await;
                    let mut resp = crate::metrics::get().render().into_response();
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                    );
                    resp
                }
            }),
        )
}

async fn readiness(checks: &[Arc<dyn ReadyCheck>]) -> Response {
    let mut failed = Vec::new();
    for c in checks {
        match tokio::time::timeout(Duration::from_secs(5), c.check()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(dependency = c.name(), %error, "not ready");
                failed.push(c.name());
            }
            Err(_) => failed.push(c.name()),
        }
    }
    if failed.is_empty() {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        ApiError::unavailable(format!("Not ready: {} unavailable", failed.join(", ")))
            .into_response()
    }
}
