//! The remote worker protocol under `/api/v1/workers` (its wire types and limits are
//! `tempora_client::wire`, shared with the worker): `tempora worker`
//! agents register, claim runs with a long poll, renew their leases by heartbeat, ship output
//! while a run goes and report results. The server keeps no per-worker session: every request
//! names its worker, so a worker may fail over to any node at any time.
//!
//! Safety against a worker touching runs it does not hold: heartbeats, output and results for a
//! run not `running` on the requesting worker are refused (output) or ignored (results), and a
//! heartbeat reports such runs as ones to stop. A retried result (after a lost response) is
//! ignored the second time, because the run is no longer running.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tempora_client::wire::*;
use tempora_core::run::RunState;
use tempora_store::{ClaimedRun, RunResult, WorkerInfo};

use crate::AppState;
use crate::auth::{Caller, check_worker_binding};
use crate::error::ApiError;
use crate::extract::{JsonBody, parse_json};

/// Longest `version` and `address` a worker may report.
const MAX_INFO_TEXT: usize = 200;
/// Longest error text of a result.
const MAX_ERROR_TEXT: usize = 8 * 1024;
/// Most slots a worker may report.
const MAX_SLOTS: u32 = 100_000;
/// How often a held claim looks for work when not woken.
const CLAIM_POLL: Duration = Duration::from_millis(50);

/// Stamp an answer with [`TIME_HEADER`], as late as possible.
pub async fn stamp_time(mut resp: Response) -> Response {
    if let Ok(v) = axum::http::HeaderValue::from_str(&tempora_store::clock::now().to_string()) {
        resp.headers_mut().insert(TIME_HEADER, v);
    }
    resp
}

fn check_worker(path_id: &str, info: &WorkerInfo) -> Result<(), ApiError> {
    if info.id != path_id {
        return Err(ApiError::field(
            "invalid_value",
            "worker.id",
            format!(
                "the body names worker `{}` but the path `{path_id}`",
                info.id
            ),
        ));
    }
    check_id(path_id)?;
    tempora_core::job::validate_labels("worker.labels", &info.labels)?;
    tempora_core::kind::check_not_reserved("worker.labels", &info.labels)?;
    if info.version.len() > MAX_INFO_TEXT {
        return Err(too_long("worker.version", MAX_INFO_TEXT));
    }
    if info
        .address
        .as_ref()
        .is_some_and(|a| a.len() > MAX_INFO_TEXT)
    {
        return Err(too_long("worker.address", MAX_INFO_TEXT));
    }
    if info.slots > MAX_SLOTS {
        return Err(ApiError::field(
            "invalid_value",
            "worker.slots",
            format!("at most {MAX_SLOTS}"),
        ));
    }
    Ok(())
}

fn too_long(field: &str, max: usize) -> ApiError {
    ApiError::field("invalid_value", field, format!("longer than {max} bytes"))
}

/// A list of run ids in a worker request: at most [`MAX_LISTED_RUNS`].
fn check_listed(field: &str, n: usize) -> Result<(), ApiError> {
    if n > MAX_LISTED_RUNS {
        return Err(ApiError::field(
            "invalid_value",
            field,
            format!("at most {MAX_LISTED_RUNS} runs per request"),
        ));
    }
    Ok(())
}

/// Worker ids are 1-200 of `A-Z a-z 0-9 . _ - : @ /`: no spaces or look-alikes that would show
/// as another worker's id in listings and logs.
pub(crate) fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@' | b'/')
        });
    if !ok {
        return Err(ApiError::field(
            "invalid_value",
            "worker.id",
            "a worker id is 1-200 characters of A-Z a-z 0-9 . _ - : @ /",
        ));
    }
    Ok(())
}

fn lease(state: &AppState) -> Duration {
    state.worker_lease
}

/// `GET /api/v1/workers`: the registered workers, their labels, slots, last contact and running
/// counts.
#[utoipa::path(
    get,
    path = "/api/v1/workers",
    operation_id = "listWorkers",
    tag = "workers",
    responses((status = 200, description = "The registered workers", body = WorkerList))
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<WorkerList>, ApiError> {
    let workers = state
        .store
        .list_workers(tempora_store::clock::now())
        .await?;
    Ok(Json(WorkerList { workers }))
}

/// `POST /api/v1/workers/register`: record a worker (once per worker start: runs a previous
/// start with the same id left `running` become `lost`); answer with the lease to use.
#[utoipa::path(
    post,
    path = "/api/v1/workers/register",
    operation_id = "registerWorker",
    tag = "workers",
    request_body = WorkerInfo,
    responses((status = 200, description = "Registered; the lease and heartbeat to use", body = RegisterResponse), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody))
)]
pub async fn register(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    JsonBody(info): JsonBody<WorkerInfo>,
) -> Result<Json<RegisterResponse>, ApiError> {
    let id = info.id.clone();
    check_worker(&id, &info)?;
    let now = tempora_store::clock::now();
    // `<node>/local` is a server's own pool: no token may act as it.
    if id.to_ascii_lowercase().ends_with("/local") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("worker ids ending in `/local` are the servers' own (`{id}`)"),
        ));
    }
    if !state.store.bind_worker(&id, &caller.token_id, now).await? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("worker `{id}` is registered with another token"),
        ));
    }
    state.auth_cache.remember_binding(&id, &caller.token_id);
    state.store.upsert_worker(info, now).await?;
    // A worker registers once per start: runs a previous incarnation with this id left
    // `running` died with it.
    let lost = state
        .store
        .recover_worker(
            &id,
            "lost: the worker restarted while the run was going",
            now,
        )
        .await?;
    if !lost.is_empty() {
        tracing::warn!(message = "runs of the worker's previous start marked lost", worker = %id, runs = ?lost);
        state.work_ready.notify_waiters();
    }
    let lease = lease(&state);
    tracing::info!(message = "worker registered", worker = %id);
    Ok(Json(RegisterResponse {
        worker: id,
        node: state.node_id.clone(),
        lease_ttl_ms: lease.as_millis() as u64,
        heartbeat_ms: (lease / 3).min(Duration::from_secs(2)).as_millis() as u64,
    }))
}

/// `POST /api/v1/workers/{id}/claim`: claim runs this worker's labels allow, holding the
/// request up to `wait_ms` while there are none.
#[utoipa::path(
    post,
    path = "/api/v1/workers/{id}/claim",
    operation_id = "claimRuns",
    tag = "workers",
    params(("id" = String, Path, description = "The worker's id")),
    request_body = ClaimRequest,
    responses((status = 200, description = "Claimed runs (none when the wait ran out)", body = ClaimResponse), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody))
)]
pub async fn claim(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    check_worker(&id, &req.worker)?;
    check_listed("held", req.held.len())?;
    check_worker_binding(&state, &caller, &id).await?;
    // A node that is shutting down hands out nothing: 503 sends the worker to another node
    // (an empty answer would keep it polling this one while it drains).
    if state.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this node is shutting down; claim from another",
        ));
    }
    // Its labels and one reserved label per capability: a job's kind is part of its selector.
    let labels: BTreeMap<String, String> = req.worker.claim_labels();
    state
        .store
        .upsert_worker(req.worker, tempora_store::clock::now())
        .await?;
    // Claimed for this worker before, but the answer never reached it.
    let lost: Vec<ClaimedRun> = state
        .store
        .worker_runs(&id)
        .await?
        .into_iter()
        .filter(|c| !req.held.contains(&c.run.id))
        .collect();
    let (lost, failed) = tempora_store::secrets::open_secrets(Some(&state.secret_key), lost);
    if !failed.is_empty() {
        state.store.finish_runs(&id, failed).await?;
    }
    let lost_answers: Vec<WireClaim> = lost.into_iter().map(WireClaim::from).collect();
    if !lost_answers.is_empty() {
        tracing::warn!(message = "handing out runs again whose claim answer was lost", worker = %id, runs = ?lost_answers.iter().map(|c| c.run.id).collect::<Vec<_>>());
        return Ok(Json(ClaimResponse { runs: lost_answers }));
    }
    let max = req.max.min(10_000);
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.wait_ms).min(state.claim_wait_max);
    let mut first = true;
    loop {
        // A node shutting down hands out no more work. While the request is held, a read
        // looks for work first: an idle worker's poll does not write to the store.
        let now = tempora_store::clock::now();
        let runs = if max == 0 || state.shutdown.is_cancelled() {
            Vec::new()
        } else if first || state.store.any_claimable(&labels, now).await? {
            state
                .store
                .claim_runs_labeled(&id, &labels, max, now, lease(&state))
                .await?
        } else {
            Vec::new()
        };
        first = false;
        // Secrets go to the worker opened (it has no key); a run whose secrets do not open
        // on this node fails here, saying why, instead of starting without them.
        let (runs, failed) = tempora_store::secrets::open_secrets(Some(&state.secret_key), runs);
        if !failed.is_empty() {
            state.store.finish_runs(&id, failed).await?;
        }
        if !runs.is_empty()
            || tokio::time::Instant::now() >= deadline
            || state.shutdown.is_cancelled()
        {
            return Ok(Json(ClaimResponse {
                runs: runs.into_iter().map(WireClaim::from).collect(),
            }));
        }
        let wake = tokio::time::Instant::now() + CLAIM_POLL;
        tokio::select! {
            _ = state.shutdown.cancelled() => {}
            _ = state.work_ready.notified() => {}
            _ = tokio::time::sleep_until(wake.min(deadline)) => {}
        }
    }
}

/// `POST /api/v1/workers/{id}/heartbeat`: renew leases; answer the runs that must stop.
#[utoipa::path(
    post,
    path = "/api/v1/workers/{id}/heartbeat",
    operation_id = "workerHeartbeat",
    tag = "workers",
    params(("id" = String, Path, description = "The worker's id")),
    request_body = HeartbeatRequest,
    responses((status = 200, description = "Runs to stop", body = HeartbeatResponse), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody))
)]
pub async fn heartbeat(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    check_worker(&id, &req.worker)?;
    check_listed("runs", req.runs.len())?;
    check_worker_binding(&state, &caller, &id).await?;
    let now = tempora_store::clock::now();
    state.store.upsert_worker(req.worker, now).await?;
    let stop = state
        .store
        .heartbeat(&id, &req.runs, now, lease(&state))
        .await?;
    Ok(Json(HeartbeatResponse { stop }))
}

/// `POST /api/v1/workers/{id}/runs/{run}/log`: append output (the raw body) to a run this
/// worker is running; 409 otherwise.
#[utoipa::path(
    post,
    path = "/api/v1/workers/{id}/runs/{run}/log",
    operation_id = "appendRunLog",
    tag = "workers",
    params(("id" = String, Path, description = "The worker's id"), ("run" = i64, Path, description = "The run's id")),
    request_body(content = [u8], content_type = "application/octet-stream"),
    responses((status = 204, description = "Stored"), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 404, description = "Run not found", body = crate::error::ErrorBody), (status = 409, description = "The run is not this worker's any more", body = crate::error::ErrorBody))
)]
pub async fn append_log(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, run)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let run_id: i64 = run.parse().map_err(|_| {
        ApiError::field(
            "invalid_value",
            "run",
            format!("run: `{run}` is not a run id (an integer)"),
        )
    })?;
    check_id(&id)?;
    check_worker_binding(&state, &caller, &id).await?;
    let run = state
        .store
        .get_run(run_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run {run_id} not found")))?;
    if run.state != RunState::Running || run.worker.as_deref() != Some(id.as_str()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_held",
            format!("run {run_id} is not running on worker `{id}`"),
        ));
    }
    state.store.append_log(run_id, body.to_vec()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/workers/{id}/finish`: record results. Results for runs not running on this
/// worker (already recorded, reaped, or someone else's) are ignored, so a re-sent batch is safe.
#[utoipa::path(
    post,
    path = "/api/v1/workers/{id}/finish",
    operation_id = "finishRuns",
    tag = "workers",
    params(("id" = String, Path, description = "The worker's id")),
    request_body = FinishRequest,
    responses((status = 204, description = "Recorded"), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody))
)]
pub async fn finish(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    check_worker_binding(&state, &caller, &id).await?;
    let req: FinishRequest = parse_json(&body)?;
    let mut results: Vec<RunResult> = req.results;
    // A run cannot have ended after now, nor started after it ended: times a worker reports
    // past those bounds (a broken clock, or a forged result) are held to them. The store holds
    // them to the run's queue time from below.
    let now = tempora_store::clock::now();
    for r in &mut results {
        r.finished_at = r.finished_at.min(now);
        r.started_at = r.started_at.map(|s| s.min(r.finished_at));
    }
    check_listed("results", results.len())?;
    for (i, r) in results.iter().enumerate() {
        if !r.state.is_final() || r.state == RunState::Skipped {
            return Err(ApiError::field(
                "invalid_value",
                format!("results[{i}].state"),
                "a result is `succeeded`, `failed`, `timed_out`, `cancelled` or `lost`",
            ));
        }
        if r.awaits_completion && r.state != RunState::Succeeded {
            return Err(ApiError::field(
                "invalid_value",
                format!("results[{i}].awaits_completion"),
                "only a run whose process exited 0 (`succeeded`) waits for its completion call",
            ));
        }
        if r.log_tail.len() > MAX_LOG_TAIL {
            return Err(too_long(&format!("results[{i}].log_tail"), MAX_LOG_TAIL));
        }
        if r.error.as_ref().is_some_and(|e| e.len() > MAX_ERROR_TEXT) {
            return Err(too_long(&format!("results[{i}].error"), MAX_ERROR_TEXT));
        }
    }
    let n = results.len();
    state.store.finish_runs(&id, results).await?;
    if n > 0 {
        state.work_ready.notify_waiters();
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
