//! `tempora-http`: the HTTP layer (axum). Native REST API under `/api/v1`, `/health`, `/ready`,
//! `/metrics`, Aurora's `/vars` and `/vars.json`, and the Chronos REST API under `/scheduler` and `/v1/scheduler`. Domain errors map
//! to stable codes in [`error`].
//!
//! Layout: [`jobs`] and [`runs`] hold the native API handlers, [`chronos`] the Chronos API,
//! [`ops`] the operational endpoints ([`vars`]: `/vars`), [`workers`] the remote worker protocol, [`tokens`] token
//! management and the audit log, [`extract`] strict JSON bodies. Every request passes
//! [`auth::authenticate`], which asks for the role the route has in [`auth::table`]. [`ui`] is
//! the web UI at `/`.

pub mod apply;
pub mod artifacts;
pub mod auth;
pub mod backfill;
pub mod chronos;
pub mod error;
pub mod extract;
pub mod find;
pub mod jobs;
pub mod openapi;
pub mod ops;
pub mod runs;
pub mod tokens;
pub mod ui;
pub mod vars;
pub mod workers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use jiff::Timestamp;
use metrics_exporter_prometheus::PrometheusHandle;
use tempora_scheduler::SchedulerHandle;
use tempora_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// Shared state of every handler.
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Tells the scheduler about job changes.
    pub scheduler: SchedulerHandle,
    /// Wakes the local worker pool when runs were queued.
    pub work_ready: Arc<Notify>,
    /// Wakes the local worker pool's heartbeat when runs were asked to stop (cancel, kill,
    /// delete), so a run of this node stops at once rather than at the next heartbeat.
    pub stops_requested: Arc<Notify>,
    /// Most jobs (labelled `metrics: "true"`) with their own series on `/metrics`.
    pub job_metrics_max: u32,
    /// Renders `/metrics`.
    pub prometheus: Option<PrometheusHandle>,
    /// Process start.
    pub started: Instant,
    /// Process start, wall clock.
    pub started_at: Timestamp,
    /// This node's id.
    pub node_id: String,
    /// `host:port` clients reach this node at (Chronos's `leader` endpoint).
    pub advertise: String,
    /// Whether this node leads (its fence while it does).
    pub leadership: tempora_scheduler::leader::Leadership,
    /// `sqlite` or `postgres`.
    pub store_kind: &'static str,
    /// A node unheard of for this long is shown as down.
    pub node_timeout: std::time::Duration,
    /// Lease of runs claimed by remote workers ([`workers`]).
    pub worker_lease: Duration,
    /// Longest a worker's claim is held while no run is queued (at most
    /// [`tempora_client::wire::MAX_CLAIM_WAIT`]).
    pub claim_wait_max: Duration,
    /// Largest artifact `POST /api/v1/artifacts` takes.
    pub max_artifact_bytes: usize,
    /// Fires when the node shuts down: held worker claims answer at once.
    pub shutdown: CancellationToken,
    /// Access settings (CORS origins, allowed hosts, public metrics).
    pub auth: auth::AuthConfig,
    /// This node's memory of token uses and worker bindings.
    pub auth_cache: auth::AuthCache,
    /// Seals job secrets on save and opens them for remote workers (every node of a cluster
    /// has the same key).
    pub secret_key: Arc<tempora_core::secret::SecretKey>,
    /// Checks a job's `run_as` against this machine (given by the binary, which links the
    /// process executor; the API layer does no process work itself).
    pub run_as: RunAsCheck,
    /// The effective configuration, `(key, value)` by config-file key, credentials redacted
    /// (shown by `/vars`).
    pub config: Arc<[(String, String)]>,
}

/// Whether this node can start processes as a user: `Ok(true)` when that is a switch to
/// another user than its own, `Ok(false)` when it is its own user, `Err` (why) when it cannot.
pub type RunAsCheck = Arc<dyn Fn(&str) -> Result<bool, String> + Send + Sync>;

/// The complete router. Every route passes [`auth::authenticate`] (after routing, so that it
/// knows the route's template) and, outside it, [`auth::cors`].
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/jobs", get(jobs::list).post(jobs::create))
        .route(
            "/apply",
            post(apply::apply).layer(DefaultBodyLimit::max(apply::MAX_APPLY_BODY)),
        )
        .route(
            "/apply/plan",
            post(apply::plan).layer(DefaultBodyLimit::max(apply::MAX_APPLY_BODY)),
        )
        .route(
            "/jobs/{name}",
            get(jobs::get).put(jobs::put).delete(jobs::delete),
        )
        .route("/jobs/{name}/backfill", post(backfill::backfill))
        .route("/jobs/{name}/pause", post(jobs::pause))
        .route("/jobs/{name}/resume", post(jobs::resume))
        .route("/jobs/{name}/runs", get(runs::list).post(runs::trigger))
        .route("/runs", get(runs::search))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/log", get(runs::log))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/schedules/preview", post(jobs::preview))
        .route("/graph", get(jobs::graph))
        .route("/status", get(ops::status))
        .route("/cluster", get(ops::cluster))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{token}", delete(tokens::revoke))
        .route("/audit", get(tokens::audit))
        .route("/backup", post(ops::backup))
        .route(
            "/artifacts",
            get(artifacts::list)
                .post(artifacts::push)
                .layer(DefaultBodyLimit::max(state.max_artifact_bytes)),
        )
        .route(
            "/artifacts/{sha256}",
            get(artifacts::get).delete(artifacts::delete),
        )
        .nest("/workers", worker_routes());
    Router::new()
        .nest("/api/v1", api)
        .nest("/scheduler", chronos::routes())
        .nest("/v1/scheduler", chronos::routes())
        .merge(ui::routes())
        .route("/ping", get(chronos::ping))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/vars", get(vars::text))
        .route("/vars.json", get(vars::json))
        .route(openapi::NATIVE_URL, get(openapi::native))
        .route(openapi::CHRONOS_URL, get(openapi::chronos))
        .route("/api/docs", get(openapi::docs_root))
        .route("/api/docs/", get(openapi::docs_index))
        .route("/api/docs/{file}", get(openapi::docs_asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), auth::cors))
        .layer(middleware::from_fn(track))
        .with_state(state)
}

/// The remote worker protocol ([`workers`]); bodies may be larger (results carry output).
fn worker_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(workers::list))
        .route("/register", post(workers::register))
        .route("/{id}/claim", post(workers::claim))
        .route("/{id}/heartbeat", post(workers::heartbeat))
        .route("/{id}/runs/{run}/log", post(workers::append_log))
        .route("/{id}/finish", post(workers::finish))
        .route("/{id}/artifacts/{sha256}", get(artifacts::fetch))
        .layer(DefaultBodyLimit::max(tempora_client::wire::MAX_WORKER_BODY))
        .layer(middleware::map_response(workers::stamp_time))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Count requests by route and status.
async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await.into_response();
    metrics::counter!(
        "tempora_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => res.status().as_u16().to_string()
    )
    .increment(1);
    res
}
