//! Operational endpoints: liveness, readiness, Prometheus metrics, status.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;

/// `GET /health`: the process is alive.
pub async fn health() -> &'static str {
    "OK"
}

/// `GET /ready`: the store answers.
pub async fn ready(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    if let Ok(c) = s.store.counts().await {
        metrics::gauge!("tempora_runs_queued").set(c.queued as f64);
        metrics::gauge!("tempora_runs_running").set(c.running as f64);
        metrics::gauge!("tempora_jobs").set(c.jobs as f64);
    }
    let body = s
        .prometheus
        .as_ref()
        .map(|p| p.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// `GET /api/v1/status`: version, node, uptime, counts.
pub async fn status(State(s): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let counts = s.store.counts().await?;
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node": s.node_id,
        "started_at": s.started_at,
        "uptime_seconds": s.started.elapsed().as_secs(),
        "store": "sqlite",
        "leader": true,
        "counts": counts,
    })))
}
