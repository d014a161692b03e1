//! Operational endpoints: liveness, readiness, Prometheus metrics, status.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tempora_store::{StoreCounts, WorkerStatus};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// `GET /health`: the process is alive. `OK` and a newline, as Aurora's health protocol reads.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "operations",
    responses((status = 200, description = "The process is alive: `OK` and a newline", body = String, content_type = "text/plain")),
    security(())
)]
pub async fn health() -> &'static str {
    "OK\n"
}

/// `GET /ready`: the store answers and the node is not shutting down.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "operations",
    responses((status = 200, description = "Ready: `ready`", body = String, content_type = "text/plain"), (status = 503, description = "Not ready (shutting down, or the store is unreachable)", body = String, content_type = "text/plain")),
    security(())
)]
pub async fn ready(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    // A node that is shutting down still answers the API while its runs drain, but a load
    // balancer should send new work elsewhere.
    if s.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down".to_owned(),
        );
    }
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}

/// Query of `/metrics`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// `prometheus` or `json`; without it the `Accept` header decides.
    #[param(pattern = "^(prometheus|json)$")]
    pub format: Option<String>,
}

/// Whether `/metrics` answers Chronos's JSON: asked for by `?format=json`, by an `Accept` header
/// naming `application/json`, or by sending no `Accept` header at all (Chronos clients such as
/// chronos-python send none; Prometheus and curl always send one).
fn wants_json(format: Option<&str>, accept: Option<&str>) -> ApiResult<bool> {
    match format {
        Some("json") => Ok(true),
        Some("prometheus") => Ok(false),
        Some(other) => Err(ApiError::field(
            "invalid_query",
            "format",
            format!("format must be prometheus or json, not `{other}`"),
        )),
        None => Ok(accept.is_none_or(|a| a.contains("application/json"))),
    }
}

/// `GET /metrics`: Prometheus text format, or Chronos's JSON registry dump (see [`wants_json`]).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    params(MetricsQuery),
    responses((status = 200, description = "Prometheus text format; Chronos's JSON metrics with `format=json`, or without an `Accept` header", content((String = "text/plain"), (Object = "application/json"))), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody))
)]
pub async fn metrics(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<MetricsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| ApiError::query(&e))?;
    let accept = headers
        .get(header::ACCEPT)
        .map(|v| v.to_str().unwrap_or_default());
    if wants_json(q.format.as_deref(), accept)? {
        return Ok(Json(crate::chronos::metrics_json(&s).await?).into_response());
    }
    let now = tempora_store::clock::now();
    let counts = s.store.counts().await.ok();
    let workers = s.store.list_workers(now).await.ok();
    refresh_gauges(&s, counts.as_ref(), workers.as_deref(), now).await;
    let mut body = s
        .prometheus
        .as_ref()
        .map(|p| p.render())
        .unwrap_or_default();
    if s.job_metrics_max > 0 {
        match s.store.job_metrics(s.job_metrics_max).await {
            Ok(jobs) => body.push_str(&job_series(&jobs)),
            Err(e) => tracing::warn!(message = "per-job metrics not rendered", error = %e),
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// Set the gauges read from the store (jobs, queued and running runs, runs no worker can
/// take) before the registry is rendered.
/// `counts` and `workers` as the caller read them (None: that read failed; its gauges stay).
pub(crate) async fn refresh_gauges(
    s: &AppState,
    counts: Option<&tempora_store::StoreCounts>,
    workers: Option<&[tempora_store::WorkerStatus]>,
    now: jiff::Timestamp,
) {
    if let Some(c) = counts {
        metrics::gauge!("tempora_runs_queued").set(c.queued as f64);
        metrics::gauge!("tempora_runs_running").set(c.running as f64);
        metrics::gauge!("tempora_jobs").set(c.jobs as f64);
    }
    if let (Ok(queued), Some(workers)) = (s.store.queued_by_selector(now).await, workers) {
        let stuck: u64 = queued
            .iter()
            .filter(|(selector, _)| tempora_store::waiting::no_worker(selector, workers).is_some())
            .map(|(_, n)| n)
            .sum();
        metrics::gauge!("tempora_runs_waiting_for_worker").set(stuck as f64);
    }
}

/// The per-job series of the jobs labelled `metrics: "true"`, from the store (so every node of
/// a cluster shows the same values: aggregate them with `max by (job)`). Rendered here rather
/// than kept in the registry, so a deleted job or a changed state leaves no stale series.
fn job_series(jobs: &[tempora_store::JobMetrics]) -> String {
    use std::fmt::Write;
    if jobs.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP tempora_job_last_success_timestamp_seconds When a run of the job last succeeded (jobs labelled metrics: \"true\")\n\
         # TYPE tempora_job_last_success_timestamp_seconds gauge"
    );
    for j in jobs {
        if let Some(t) = j.last_success_at {
            let secs = t.as_millisecond() as f64 / 1000.0;
            let _ = writeln!(
                out,
                "tempora_job_last_success_timestamp_seconds{{job=\"{}\"}} {secs}",
                j.job
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP tempora_job_last_run_state The state of the job's newest run that ended (1; skipped runs aside)\n\
         # TYPE tempora_job_last_run_state gauge"
    );
    for j in jobs {
        if let Some(state) = j.last_state {
            let _ = writeln!(
                out,
                "tempora_job_last_run_state{{job=\"{}\",state=\"{state}\"}} 1",
                j.job
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP tempora_job_runs_total Occurrences of the job that ended, by outcome (failed: failed, timed out or lost once its retries were spent)\n\
         # TYPE tempora_job_runs_total counter"
    );
    for j in jobs {
        for (state, n) in [("succeeded", j.succeeded), ("failed", j.failed)] {
            let _ = writeln!(
                out,
                "tempora_job_runs_total{{job=\"{}\",state=\"{state}\"}} {n}",
                j.job
            );
        }
    }
    out
}

/// `GET /api/v1/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeStatus {
    /// tempora's version.
    pub version: &'static str,
    /// This node's id.
    pub node: String,
    /// When this process started.
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// Seconds since then.
    pub uptime_seconds: u64,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// Whether this node leads.
    pub leader: bool,
    /// This node's clock offset to the database's, in milliseconds (null: not measured).
    pub clock_offset_ms: Option<f64>,
    /// Rows in the store.
    pub counts: StoreCounts,
}

/// `GET /api/v1/status`: version, node, uptime, leadership, this node's clock offset to the
/// database's (`null` without one), counts.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    operation_id = "getStatus",
    tag = "operations",
    responses((status = 200, description = "This node", body = NodeStatus))
)]
pub async fn status(State(s): State<Arc<AppState>>) -> ApiResult<Json<NodeStatus>> {
    let counts = s.store.counts().await?;
    Ok(Json(NodeStatus {
        version: env!("CARGO_PKG_VERSION"),
        node: s.node_id.clone(),
        started_at: s.started_at,
        uptime_seconds: s.started.elapsed().as_secs(),
        store: s.store_kind,
        leader: s.leadership.borrow().is_some(),
        clock_offset_ms: tempora_store::clock::offset().map(tempora_store::clock::millis),
        counts,
    }))
}

/// `GET /api/v1/cluster`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: String,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// Whether the node that answered leads.
    pub this_node_leads: bool,
    /// The lease holder while its lease runs (null: none).
    pub leader: Option<LeaderInfo>,
    /// The leadership epoch (null: no node ever led).
    pub epoch: Option<u64>,
    /// Every node seen.
    pub nodes: Vec<ClusterNode>,
    /// Every registered worker.
    pub workers: Vec<WorkerStatus>,
}

/// The leader of a cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderInfo {
    /// Its node id.
    pub node: String,
    /// Its API address.
    pub address: String,
    /// Its epoch (the fence of its writes).
    pub epoch: u64,
    /// When its lease ends unless renewed.
    #[schema(value_type = String, format = DateTime)]
    pub lease_expires_at: Timestamp,
}

/// A node of a cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterNode {
    /// Node id.
    pub id: String,
    /// API address.
    pub address: String,
    /// Its last heartbeat.
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: Timestamp,
    /// Its clock's offset to the database's, in milliseconds (null: not measured).
    pub clock_offset_ms: Option<f64>,
    /// Heard of within the node timeout.
    pub alive: bool,
    /// Holds the lease.
    pub leader: bool,
}

/// `GET /api/v1/cluster`: this node, the leader (lease holder, epoch, lease expiry), every
/// node seen (with whether it is alive) and every worker (labels, slots, running runs).
#[utoipa::path(
    get,
    path = "/api/v1/cluster",
    operation_id = "getCluster",
    tag = "operations",
    responses((status = 200, description = "The cluster", body = ClusterStatus))
)]
pub async fn cluster(State(s): State<Arc<AppState>>) -> ApiResult<Json<ClusterStatus>> {
    let view = s.store.cluster_view(tempora_store::clock::now()).await?;
    let workers = s.store.list_workers(tempora_store::clock::now()).await?;
    let timeout = jiff::SignedDuration::try_from(s.node_timeout).unwrap_or_default();
    let leader = view.lease.as_ref().filter(|l| l.expires_at > view.now);
    let nodes = view
        .nodes
        .iter()
        .map(|n| ClusterNode {
            id: n.id.clone(),
            address: n.address.clone(),
            last_seen: n.last_seen,
            clock_offset_ms: n.clock_offset.map(tempora_store::clock::millis),
            alive: view.now.duration_since(n.last_seen) <= timeout,
            leader: leader.is_some_and(|l| l.node == n.id),
        })
        .collect();
    Ok(Json(ClusterStatus {
        node: s.node_id.clone(),
        store: s.store_kind,
        this_node_leads: s.leadership.borrow().is_some(),
        leader: leader.map(|l| LeaderInfo {
            node: l.node.clone(),
            address: l.address.clone(),
            epoch: l.epoch,
            lease_expires_at: l.expires_at,
        }),
        epoch: view.lease.as_ref().map(|l| l.epoch),
        nodes,
        workers,
    }))
}

/// `POST /api/v1/backup` (admin): a consistent copy of the whole SQLite store, streamed as an
/// SQLite database file (`tempora backup FILE` saves it). The copy is written beside the
/// database and unlinked as soon as it is open, so nothing is left behind whatever happens to
/// the download. A PostgreSQL node refuses (409): `pg_dump` backs up a cluster.
#[utoipa::path(
    post,
    path = "/api/v1/backup",
    operation_id = "backup",
    tag = "operations",
    responses((status = 200, description = "A consistent copy of the SQLite store", body = [u8], content_type = "application/vnd.sqlite3"), (status = 409, description = "The store is PostgreSQL (use pg_dump)", body = crate::error::ErrorBody))
)]
pub async fn backup(State(s): State<Arc<AppState>>) -> ApiResult<Response> {
    let path = s.store.backup().await?;
    let opened = tokio::fs::File::open(&path).await;
    let _ = tokio::fs::remove_file(&path).await;
    let file = opened.map_err(|e| {
        tracing::error!(message = "cannot read the backup file", error = %e);
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cannot read the backup file (see the server log)",
        )
    })?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    tracing::info!(message = "backup written", bytes = len);
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.sqlite3".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tempora-backup.db\"".to_owned(),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::wants_json;

    #[test]
    fn metrics_format_negotiation() {
        assert!(wants_json(None, None).unwrap());
        assert!(wants_json(None, Some("application/json")).unwrap());
        assert!(!wants_json(None, Some("*/*")).unwrap());
        assert!(
            !wants_json(
                None,
                Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
            )
            .unwrap()
        );
        assert!(!wants_json(Some("prometheus"), None).unwrap());
        assert!(wants_json(Some("json"), Some("*/*")).unwrap());
        assert!(wants_json(Some("xml"), None).is_err());
    }
}
