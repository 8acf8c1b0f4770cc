//! The operator's HTTP endpoint (`--metrics-addr`, README "Running the operator"):
//!
//! - `GET /metrics`: [`Metrics::render`] as OpenMetrics text;
//! - `GET /healthz`: liveness, `200 ok` for as long as the process serves;
//! - `GET /readyz`: readiness, `200 ok` once [`Health::set_ready`] said so,
//!   `503 not ready` before and after.
//!
//! Nothing here logs requests, so neither headers nor credentials can end up in logs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// `Content-Type` of `GET /metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Readiness of the process, as `GET /readyz` reports it. `Default` is not ready.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the process ready (`true`) or not ready (`false`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The routes (`/metrics`, `/healthz`, `/readyz`); other paths are 404, other
/// methods 405.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then stops accepting
/// connections and returns once in-flight requests have finished.
///
/// # Errors
/// Only I/O errors of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    axum::serve(listener, router(metrics, health)).with_graceful_shutdown(shutdown).await
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], state.metrics.render())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.health.is_ready() { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ads::aws::CallObserver;
    use crate::metrics::tests::openmetrics;
    use axum::body::to_bytes;
    use std::time::Duration;

    async fn parts(response: impl IntoResponse) -> (StatusCode, Option<String>, String) {
        let response = response.into_response();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, content_type, String::from_utf8(body.to_vec()).unwrap())
    }

    fn state() -> AppState {
        AppState { metrics: Metrics::new(), health: Arc::new(Health::default()) }
    }

    #[test]
    fn health_defaults_to_not_ready_and_flips() {
        let health = Health::default();
        assert!(!health.is_ready());
        health.set_ready(true);
        assert!(health.is_ready());
        health.set_ready(false);
        assert!(!health.is_ready());
    }

    #[tokio::test]
    async fn healthz_is_ok() {
        let (status, _, body) = parts(healthz().await).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }

    #[tokio::test]
    async fn readyz_follows_health() {
        let state = state();
        let (status, _, body) = parts(readyz(State(state.clone())).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "not ready"));
        state.health.set_ready(true);
        let (status, _, body) = parts(readyz(State(state.clone())).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        state.health.set_ready(false);
        assert_eq!(parts(readyz(State(state)).await).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text() {
        let state = state();
        state.metrics.observe(crate::ads::Operation::Start, "ok", Duration::from_millis(5));
        let (status, content_type, body) = parts(metrics_handler(State(state)).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
        let families = openmetrics::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        let calls = &families["ads_export_operator_aws_calls"].samples;
        assert!(
            calls.iter().any(|s| s.labels["operation"] == "StartContinuousExport"
                && s.labels["outcome"] == "ok"
                && s.value == 1.0),
            "{body}"
        );
    }
}
