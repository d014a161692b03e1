//! The Chronos REST API (2.x paths under `/scheduler`, 3.x under `/v1/scheduler`), served over
//! the same jobs as the native API. The job JSON mapping lives in `tempora_core::chronos`; this
//! module holds the handlers, Chronos's error shape (`{"status","message"}`, 400 for bad input
//! and unknown jobs). CORS is the access layer's (`crate::auth::cors`): only for listed origins. What is supported and
//! how it differs from Chronos is in `docs/chronos.md`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tempora_core::auth::Role;
use tempora_core::chronos::{self, Counters, Endpoint, TaskId};
use tempora_core::job::{JobSpec, ValidationError};
use tempora_core::run::{Run, RunOverrides, RunState};
use tempora_store::{JobRecord, PutMode, Store, StoreError};

use crate::AppState;
use crate::auth::{AuditNote, Caller};
use crate::error::ApiError;

/// Runs looked at for statistics (per job).
const STAT_RUNS: u32 = 100;
/// Runs looked at to find a job's current state.
const STATE_RUNS: u32 = 50;

/// An error in Chronos's shape: `{"status": "Bad Request", "message": "..."}`. Chronos has no
/// 404: unknown jobs are 400s, as every client expects.
#[derive(Debug)]
pub struct ChronosError {
    status: StatusCode,
    message: String,
}

impl ChronosError {
    /// A 400.
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn unknown_job(name: &str) -> Self {
        Self::bad(format!("Job '{name}' not found"))
    }
}

impl From<ApiError> for ChronosError {
    fn from(e: ApiError) -> Self {
        // Chronos answers every client error 400, except a credential problem: a role that
        // does not allow something stays 403, as on every other route.
        let status = if e.status.is_client_error() && e.status != StatusCode::FORBIDDEN {
            StatusCode::BAD_REQUEST
        } else {
            e.status
        };
        Self {
            status,
            message: e.message,
        }
    }
}

impl From<StoreError> for ChronosError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<ValidationError> for ChronosError {
    fn from(e: ValidationError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ChronosError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        (
            self.status,
            Json(json!({"status": reason, "message": self.message})),
        )
            .into_response()
    }
}

type ChronosResult<T> = Result<T, ChronosError>;

/// The routes under a Chronos prefix (`/scheduler` or `/v1/scheduler`).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/jobs", get(list))
        .route("/jobs/search", get(search))
        .route("/jobs/summary", get(summary))
        .route("/job/{name}", get(get_job).put(start).delete(delete))
        .route("/job/success/{name}", put(mark_success))
        .route("/job/stat/{name}", get(job_stat))
        .route(
            "/iso8601",
            axum::routing::post(save_scheduled).put(save_scheduled),
        )
        .route(
            "/dependency",
            axum::routing::post(save_dependent).put(save_dependent),
        )
        .route("/task/kill/{name}", axum::routing::delete(kill))
        .route("/task/{task_id}", put(complete_task))
        .route("/graph/dot", get(graph_dot))
        .route("/graph/csv", get(graph_csv))
        .route("/leader", get(leader))
        .route("/stats/{percentile}", get(stats))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
}

async fn wrong_method(req: Request) -> ChronosError {
    ChronosError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!(
            "{} is not allowed on {} (see docs/chronos.md)",
            req.method(),
            req.uri().path()
        ),
    }
}

async fn unknown_route(req: Request) -> ChronosError {
    ChronosError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no Chronos endpoint {} {} (see docs/chronos.md)",
            req.method(),
            req.uri().path()
        ),
    }
}

/// `GET /ping`.
pub async fn ping() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        "pong",
    )
}

fn counters(rec: &JobRecord) -> Counters {
    Counters {
        success_count: rec.success_count,
        error_count: rec.error_count,
        errors_since_last_success: rec.errors_since_success,
        last_success_at: rec.last_success_at,
        last_error_at: rec.last_error_at,
    }
}

fn render(rec: &JobRecord) -> Value {
    chronos::render(&crate::jobs::masked(&rec.spec), &counters(rec))
}

/// Every job, in name order.
async fn all_jobs(store: &dyn Store) -> ChronosResult<Vec<JobRecord>> {
    let mut out: Vec<JobRecord> = Vec::new();
    loop {
        let after = out.last().map(|j| j.spec.name.clone());
        let page = store.list_jobs(after.as_deref(), 1000).await?;
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

async fn job_or_400(store: &dyn Store, name: &str) -> ChronosResult<JobRecord> {
    if tempora_core::job::validate_name(name).is_err() {
        return Err(ChronosError::unknown_job(name));
    }
    store
        .get_job(name)
        .await?
        .ok_or_else(|| ChronosError::unknown_job(name))
}

fn json_response(v: Value) -> Response {
    Json(v).into_response()
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// `GET /scheduler/jobs`.
async fn list(State(s): State<Arc<AppState>>) -> ChronosResult<Response> {
    let jobs = all_jobs(s.store.as_ref()).await?;
    Ok(json_response(Value::Array(
        jobs.iter().map(render).collect(),
    )))
}

/// `GET /scheduler/job/{name}`.
async fn get_job(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ChronosResult<Response> {
    let rec = job_or_400(s.store.as_ref(), &name).await?;
    Ok(json_response(render(&rec)))
}

/// Query of `jobs/search` (unknown parameters are ignored, as in Chronos).
#[derive(Debug, Deserialize)]
struct SearchQuery {
    name: Option<String>,
    command: Option<String>,
    any: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn count_param(field: &str, v: Option<&str>, default: usize) -> ChronosResult<usize> {
    match v {
        None | Some("") => Ok(default),
        Some(x) => x.parse::<usize>().map_err(|_| {
            ChronosError::bad(format!(
                "{field}: must be a non-negative integer, not `{x}`"
            ))
        }),
    }
}

/// `GET /scheduler/jobs/search?name=&command=&any=&limit=10&offset=0`: case-insensitive
/// substring match; `name` and `command` must both match; `any` matches name or command and
/// also admits jobs the other terms rejected.
async fn search(
    State(s): State<Arc<AppState>>,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ChronosResult<Response> {
    let Query(q) = q.map_err(|e| ChronosError::bad(e.body_text()))?;
    let limit = count_param("limit", q.limit.as_deref(), 10)?;
    let offset = count_param("offset", q.offset.as_deref(), 0)?;
    let lower = |o: &Option<String>| {
        o.as_ref()
            .filter(|x| !x.is_empty())
            .map(|x| x.to_lowercase())
    };
    let (name, command, any) = (lower(&q.name), lower(&q.command), lower(&q.any));
    let contains = |hay: &str, needle: &Option<String>| {
        needle
            .as_ref()
            .is_none_or(|n| hay.to_lowercase().contains(n.as_str()))
    };
    let jobs = all_jobs(s.store.as_ref()).await?;
    let found: Vec<Value> = jobs
        .iter()
        .filter(|j| {
            let by_terms = contains(&j.spec.name, &name) && contains(&j.spec.command, &command);
            let by_any =
                any.is_some() && (contains(&j.spec.name, &any) || contains(&j.spec.command, &any));
            if name.is_none() && command.is_none() && any.is_some() {
                by_any
            } else {
                by_terms || by_any
            }
        })
        .skip(offset)
        .take(limit)
        .map(render)
        .collect();
    Ok(json_response(Value::Array(found)))
}

/// `success`, `failure` or `fresh`, from the counters (Chronos compares the last times).
fn last_state(rec: &JobRecord) -> &'static str {
    match (rec.last_success_at, rec.last_error_at) {
        (None, None) => "fresh",
        (Some(_), None) => "success",
        (None, Some(_)) => "failure",
        (Some(ok), Some(err)) if ok >= err => "success",
        _ => "failure",
    }
}

/// `idle`, `queued`, `running` or `N running`.
async fn current_state(store: &dyn Store, name: &str) -> ChronosResult<String> {
    let runs = store.list_runs(name, None, STATE_RUNS).await?;
    let running = runs.iter().filter(|r| r.state == RunState::Running).count();
    let queued = runs.iter().any(|r| r.state == RunState::Queued);
    Ok(match running {
        0 if queued => "queued".to_owned(),
        0 => "idle".to_owned(),
        1 => "running".to_owned(),
        n => format!("{n} running"),
    })
}

/// `GET /scheduler/jobs/summary` (the Chronos 3.x web UI's list).
async fn summary(State(s): State<Arc<AppState>>) -> ChronosResult<Response> {
    let jobs = all_jobs(s.store.as_ref()).await?;
    let mut out = Vec::with_capacity(jobs.len());
    for j in &jobs {
        let state = current_state(s.store.as_ref(), &j.spec.name).await?;
        out.push(json!({
            "name": j.spec.name,
            "status": last_state(j),
            "state": state,
            "schedule": if j.spec.parents.is_empty() {
                j.spec.schedule.clone().unwrap_or_default()
            } else {
                String::new()
            },
            "parents": j.spec.parents,
            "disabled": j.spec.paused,
        }));
    }
    Ok(json_response(json!({ "jobs": out })))
}

/// Query of a manual start.
#[derive(Debug, Deserialize)]
struct StartQuery {
    arguments: Option<String>,
}

/// `PUT /scheduler/job/{name}?arguments=…`: start the job now. For shell jobs the arguments
/// (with `;` removed) are appended to the command; otherwise they replace the job's arguments.
async fn start(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    q: Result<Query<StartQuery>, axum::extract::rejection::QueryRejection>,
) -> ChronosResult<Response> {
    let Query(q) = q.map_err(|e| ChronosError::bad(e.body_text()))?;
    let rec = job_or_400(s.store.as_ref(), &name).await?;
    let args = q
        .arguments
        .as_deref()
        .map(chronos::clean_arguments)
        .filter(|a| !a.trim().is_empty());
    // Arguments can make an interpreter run anything (`-c id`): an editor's power.
    if args.is_some() && !caller.role.allows(Role::Editor) {
        return Err(ChronosError {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "a start with `arguments` needs role `editor`; token `{}` has role `{}`",
                caller.name, caller.role
            ),
        });
    }
    let note = AuditNote {
        detail: args
            .as_deref()
            .map(|a| format!("arguments: {}", a.split_whitespace().count())),
        ..AuditNote::default()
    };
    if args.as_deref().is_some_and(|a| a.contains('\0')) {
        return Err(ChronosError::bad("arguments must not contain NUL"));
    }
    let overrides = match args {
        None => RunOverrides::default(),
        Some(a) if rec.spec.shell => RunOverrides {
            command_suffix: Some(a),
            ..RunOverrides::default()
        },
        Some(a) => RunOverrides {
            arguments: Some(a.split_whitespace().map(str::to_owned).collect()),
            ..RunOverrides::default()
        },
    };
    let run = s
        .store
        .trigger_run(&name, overrides, false, Timestamp::now())
        .await?;
    s.work_ready.notify_one();
    tracing::info!(message = "run triggered (Chronos API)", job = %name, run_id = run.id, state = %run.state);
    Ok(note.attach(StatusCode::NO_CONTENT))
}

/// `DELETE /scheduler/job/{name}`: Chronos rewires the children first. A dependent job's
/// children inherit its parents; a scheduled job's only-child becomes a scheduled job with its
/// schedule; a child with other parents just drops it.
async fn delete(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ChronosResult<StatusCode> {
    let rec = job_or_400(s.store.as_ref(), &name).await?;
    let children: Vec<String> = s
        .store
        .dependency_edges()
        .await?
        .into_iter()
        .filter(|(p, _)| *p == name)
        .map(|(_, c)| c)
        .collect();
    let now = Timestamp::now();
    for child in &children {
        let Some(c) = s.store.get_job(child).await? else {
            continue;
        };
        let spec = rewire(c.spec, &rec.spec);
        s.store.put_job(spec, PutMode::Upsert, now).await?;
        s.scheduler.job_changed(child);
    }
    if !s.store.delete_job(&name, false).await? {
        return Err(ChronosError::unknown_job(&name));
    }
    s.stops_requested.notify_one();
    s.scheduler.job_changed(&name);
    tracing::info!(message = "job deleted (Chronos API)", job = %name, rewired = children.len());
    Ok(StatusCode::NO_CONTENT)
}

/// A child of `deleted`, rewired as Chronos does when `deleted` goes away.
fn rewire(mut child: JobSpec, deleted: &JobSpec) -> JobSpec {
    let others: Vec<String> = child
        .parents
        .iter()
        .filter(|p| **p != deleted.name)
        .cloned()
        .collect();
    if !deleted.parents.is_empty() {
        let mut parents = others;
        for p in &deleted.parents {
            if !parents.contains(p) {
                parents.push(p.clone());
            }
        }
        child.parents = parents;
    } else if others.is_empty() {
        child.parents.clear();
        child.schedule = deleted.schedule.clone();
        child.timezone = deleted.timezone.clone();
        match deleted.chronos.get("scheduleTimeZone") {
            Some(z) => child.chronos.insert("scheduleTimeZone".into(), z.clone()),
            None => child.chronos.remove("scheduleTimeZone"),
        };
    } else {
        child.parents = others;
    }
    child
}

/// `PUT /scheduler/job/success/{name}`: record a success without running; answers
/// `marked job X as successful: true|false` (false for an unknown job, as Chronos).
async fn mark_success(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ChronosResult<Response> {
    let ok = match s.store.mark_success(&name, Timestamp::now()).await {
        Ok(run) => {
            s.work_ready.notify_one();
            tracing::info!(message = "job marked successful", job = %name, run_id = run.id);
            true
        }
        Err(StoreError::JobNotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    Ok(text(format!("marked job {name} as successful: {ok}")))
}

/// Body of `PUT /scheduler/task/{taskId}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Completion {
    status_code: i64,
}

/// `PUT /scheduler/task/{taskId}` with `{"statusCode": n}`: an async job reports its outcome
/// (0 = success, anything else = failure).
async fn complete_task(
    State(s): State<Arc<AppState>>,
    Path(task_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ChronosResult<StatusCode> {
    let bytes = body.map_err(|e| ChronosError::bad(e.body_text()))?;
    let c: Completion = serde_json::from_slice(&bytes).map_err(|e| {
        ChronosError::bad(format!(
            "statusCode: the body must be {{\"statusCode\": <integer>}} ({e})"
        ))
    })?;
    let id = TaskId::parse(&task_id).ok_or_else(|| {
        ChronosError::bad(format!(
            "taskId: `{task_id}` is not a task id (ct:<due millis>:<attempt>:<job>:<arguments>)"
        ))
    })?;
    let run = find_task(s.store.as_ref(), &id)
        .await?
        .ok_or_else(|| ChronosError::bad(format!("taskId: task `{task_id}` not found")))?;
    let (state, error) = if c.status_code == 0 {
        (RunState::Succeeded, None)
    } else {
        (
            RunState::Failed,
            Some(format!("the job reported statusCode {}", c.status_code)),
        )
    };
    let run = s
        .store
        .complete_run(run.id, state, error, Timestamp::now())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ChronosError::bad(format!("taskId: {m}")),
            e => e.into(),
        })?;
    s.work_ready.notify_one();
    tracing::info!(message = "async run reported", job = %id.job, run_id = run.id, status_code = c.status_code, state = %run.state);
    Ok(StatusCode::NO_CONTENT)
}

/// The run a task id names: same job, due instant (ms) and attempt.
async fn find_task(store: &dyn Store, id: &TaskId) -> ChronosResult<Option<Run>> {
    let Some(job) = store.get_job(&id.job).await? else {
        return Ok(None);
    };
    let mut before = None;
    for _ in 0..50 {
        let page = store.list_runs(&job.spec.name, before, 200).await?;
        if let Some(r) = page.iter().find(|r| {
            r.scheduled_for.as_millisecond() == id.due_ms
                && r.attempt.saturating_sub(1) == id.attempt
        }) {
            return Ok(Some(r.clone()));
        }
        match page.last() {
            Some(last) if page.len() == 200 => before = Some(last.id),
            _ => break,
        }
    }
    Ok(None)
}

/// `DELETE /scheduler/task/kill/{name}`: cancel the job's queued and running runs.
async fn kill(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ChronosResult<StatusCode> {
    job_or_400(s.store.as_ref(), &name).await?;
    let now = Timestamp::now();
    let mut before = None;
    loop {
        let page = s.store.list_runs(&name, before, 500).await?;
        for r in page.iter().filter(|r| !r.state.is_final()) {
            match s.store.request_cancel(r.id, now).await {
                Ok(_) | Err(StoreError::Conflict(_)) | Err(StoreError::RunNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match page.last() {
            Some(last) if page.len() == 500 => before = Some(last.id),
            _ => break,
        }
    }
    s.stops_requested.notify_one();
    tracing::info!(message = "tasks killed (Chronos API)", job = %name);
    Ok(StatusCode::NO_CONTENT)
}

/// Read a Chronos job document (a JSON object) from a request body.
fn job_document(body: Result<Bytes, BytesRejection>) -> ChronosResult<Map<String, Value>> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ChronosError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!(
                    "the request body is larger than {} bytes",
                    crate::extract::MAX_BODY
                ),
            }
        } else {
            ChronosError::bad(e.body_text())
        }
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ChronosError::bad("body: must be a JSON object (a job)")),
        Err(e) => Err(ChronosError::bad(format!("body: malformed JSON: {e}"))),
    }
}

async fn save(
    s: &AppState,
    caller: &Caller,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> ChronosResult<Response> {
    let doc = job_document(body)?;
    let name = doc.get("name").and_then(Value::as_str).unwrap_or_default();
    let existing = if tempora_core::job::validate_name(name).is_ok() {
        s.store.get_job(name).await?
    } else {
        None
    };
    let now = Timestamp::now();
    let mut spec = chronos::to_spec(&doc, existing.as_ref().map(|e| &e.spec), now, endpoint)?;
    crate::jobs::check_run_as(&spec, caller)?;
    crate::jobs::seal_secrets(s, &mut spec).await?;
    let out = s.store.put_job(spec, PutMode::Upsert, now).await?;
    s.scheduler.job_changed(&out.record.spec.name);
    tracing::info!(message = "job saved (Chronos API)", job = %out.record.spec.name, created = out.created);
    Ok(crate::auth::with_spec_note(
        StatusCode::NO_CONTENT,
        &out.record.spec,
    ))
}

/// `POST|PUT /scheduler/iso8601`: create or replace a scheduled job.
async fn save_scheduled(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ChronosResult<Response> {
    save(&s, &caller, body, Endpoint::Scheduled).await
}

/// `POST|PUT /scheduler/dependency`: create or replace a dependent job.
async fn save_dependent(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ChronosResult<Response> {
    save(&s, &caller, body, Endpoint::Dependent).await
}

fn dot_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `GET /scheduler/graph/dot`: every job a vertex (integer ids, names as labels).
async fn graph_dot(State(s): State<Arc<AppState>>) -> ChronosResult<Response> {
    let jobs = all_jobs(s.store.as_ref()).await?;
    let ids: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.spec.name.as_str(), i + 1))
        .collect();
    let mut out = String::from("digraph G {\n");
    for j in &jobs {
        let _ = writeln!(
            out,
            "  {} [ label = \"{}\" ];",
            ids[j.spec.name.as_str()],
            dot_quote(&j.spec.name)
        );
    }
    for (p, c) in s.store.dependency_edges().await? {
        if let (Some(p), Some(c)) = (ids.get(p.as_str()), ids.get(c.as_str())) {
            let _ = writeln!(out, "  {p} -> {c};");
        }
    }
    out.push_str("}\n");
    Ok(text(out))
}

/// `GET /scheduler/graph/csv`: `node,<name>,<lastState>,<currentState>` per job and
/// `link,<parent>,<child>` per edge.
async fn graph_csv(State(s): State<Arc<AppState>>) -> ChronosResult<Response> {
    let jobs = all_jobs(s.store.as_ref()).await?;
    let mut out = String::new();
    for j in &jobs {
        let state = current_state(s.store.as_ref(), &j.spec.name).await?;
        let _ = writeln!(out, "node,{},{},{state}", j.spec.name, last_state(j));
    }
    for (p, c) in s.store.dependency_edges().await? {
        let _ = writeln!(out, "link,{p},{c}");
    }
    Ok(text(out))
}

/// `GET /scheduler/leader`: the node holding the leader lease (this node when the lease is
/// free or unknown: any node answers every call).
async fn leader(State(s): State<Arc<AppState>>) -> ChronosResult<Response> {
    let view = s.store.cluster_view(Timestamp::now()).await?;
    let leader = view
        .lease
        .filter(|l| l.expires_at > view.now)
        .map_or_else(|| s.advertise.clone(), |l| l.address);
    Ok(json_response(json!({ "leader": leader })))
}

/// Durations in seconds of a job's recent successful runs, oldest first.
async fn durations(store: &dyn Store, job: &str) -> ChronosResult<Vec<f64>> {
    let runs = store.list_runs(job, None, STAT_RUNS).await?;
    Ok(runs
        .iter()
        .rev()
        .filter(|r| r.state == RunState::Succeeded)
        .filter_map(run_seconds)
        .collect())
}

/// How long a run's process took; `None` for runs without a process (a `job/success` mark).
fn run_seconds(r: &Run) -> Option<f64> {
    r.exit_code?;
    let (a, b) = (r.started_at?, r.finished_at?);
    Some(((b.as_millisecond() - a.as_millisecond()).max(0) as f64) / 1000.0)
}

/// A quantile the way Codahale's snapshots compute it (linear interpolation on sorted values).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let pos = q * (n as f64 + 1.0);
    if pos < 1.0 {
        return sorted[0];
    }
    if pos >= n as f64 {
        return sorted[n - 1];
    }
    let idx = pos.floor() as usize;
    let lower = sorted[idx - 1];
    let upper = sorted[idx];
    lower + (pos - pos.floor()) * (upper - lower)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The statistic a `stats/{percentile}` path names.
fn statistic(name: &str, sorted: &[f64]) -> Option<f64> {
    Some(match name {
        "99thPercentile" => quantile(sorted, 0.99),
        "98thPercentile" => quantile(sorted, 0.98),
        "95thPercentile" => quantile(sorted, 0.95),
        "75thPercentile" => quantile(sorted, 0.75),
        "median" => quantile(sorted, 0.5),
        "mean" => mean(sorted),
        _ => return None,
    })
}

/// `MM/dd/yy HH:mm:ss` in UTC, or `N/A`.
fn stat_time(t: Option<Timestamp>) -> String {
    t.map_or_else(
        || "N/A".to_owned(),
        |t| t.strftime("%m/%d/%y %H:%M:%S").to_string(),
    )
}

/// `1d2h3m4s`.
fn stat_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(d, 'd'), (h, 'h'), (m, 'm')] {
        if n > 0 || !out.is_empty() {
            let _ = write!(out, "{n}{unit}");
        }
    }
    let _ = write!(out, "{s}s");
    out
}

/// `GET /scheduler/job/stat/{name}`: duration histogram and recent task history.
async fn job_stat(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ChronosResult<Response> {
    let rec = job_or_400(s.store.as_ref(), &name).await?;
    let runs = s.store.list_runs(&name, None, STAT_RUNS).await?;
    let d = sorted(
        runs.iter()
            .filter(|r| r.state == RunState::Succeeded)
            .filter_map(run_seconds)
            .collect(),
    );
    let histogram = json!({
        "75thPercentile": quantile(&d, 0.75),
        "95thPercentile": quantile(&d, 0.95),
        "98thPercentile": quantile(&d, 0.98),
        "99thPercentile": quantile(&d, 0.99),
        "median": quantile(&d, 0.5),
        "mean": mean(&d),
        "count": d.len(),
    });
    let history: Vec<Value> = runs
        .iter()
        .map(|r| {
            let status = match r.state {
                RunState::Succeeded => "success",
                RunState::Running => "running",
                RunState::Queued => "idle",
                _ => "fail",
            };
            let mut o = json!({
                "taskId": TaskId::of(r, &rec.spec).to_string(),
                "jobName": r.job,
                "slaveId": r.worker.clone().unwrap_or_default(),
                "startTime": stat_time(r.started_at),
                "endTime": stat_time(r.finished_at),
                "status": status,
            });
            if let (Some(secs), Some(obj)) = (run_seconds(r), o.as_object_mut()) {
                obj.insert("duration".into(), json!(stat_duration(secs as u64)));
            }
            o
        })
        .collect();
    Ok(json_response(
        json!({"histogram": histogram, "taskStatHistory": history}),
    ))
}

/// `GET /scheduler/stats/{percentile}`: `[{"jobNameLabel", "time"}]`, slowest first.
async fn stats(State(s): State<Arc<AppState>>, Path(pct): Path<String>) -> ChronosResult<Response> {
    if statistic(&pct, &[]).is_none() {
        return Err(ChronosError::bad(format!(
            "percentile must be one of 99thPercentile, 98thPercentile, 95thPercentile, \
             75thPercentile, median, mean; not `{pct}`"
        )));
    }
    let mut out: Vec<(String, f64)> = Vec::new();
    for j in all_jobs(s.store.as_ref()).await? {
        let d = sorted(durations(s.store.as_ref(), &j.spec.name).await?);
        if let Some(t) = statistic(&pct, &d).filter(|_| !d.is_empty()) {
            out.push((j.spec.name, t));
        }
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(json_response(Value::Array(
        out.into_iter()
            .map(|(n, t)| json!({"jobNameLabel": n, "time": t}))
            .collect(),
    )))
}

/// The Codahale-style JSON registry dump Chronos serves at `/metrics`: per-job run counters
/// and duration histograms, queue gauges.
pub async fn metrics_json(s: &AppState) -> Result<Value, ApiError> {
    let counts = s.store.counts().await?;
    let mut counters = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    let jobs = all_jobs(s.store.as_ref())
        .await
        .map_err(|e| ApiError::new(e.status, "internal", e.message))?;
    for j in &jobs {
        let name = &j.spec.name;
        counters.insert(
            format!("jobs.run.success.{name}"),
            json!({"count": j.success_count}),
        );
        counters.insert(
            format!("jobs.run.failure.{name}"),
            json!({"count": j.error_count}),
        );
        let d = sorted(
            durations(s.store.as_ref(), name)
                .await
                .map_err(|e| ApiError::new(e.status, "internal", e.message))?,
        );
        let min = d.first().copied().unwrap_or(0.0);
        let max = d.last().copied().unwrap_or(0.0);
        let m = mean(&d);
        let var = if d.len() > 1 {
            d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (d.len() - 1) as f64
        } else {
            0.0
        };
        histograms.insert(
            format!("jobs.run.time.{name}"),
            json!({
                "count": d.len(), "min": min, "max": max, "mean": m, "stddev": var.sqrt(),
                "p50": quantile(&d, 0.5), "p75": quantile(&d, 0.75), "p95": quantile(&d, 0.95),
                "p98": quantile(&d, 0.98), "p99": quantile(&d, 0.99), "p999": quantile(&d, 0.999),
            }),
        );
    }
    let gauges = json!({
        "org.apache.mesos.chronos.scheduler.jobs.TaskManager.queueSize": {"value": counts.queued},
        "org.apache.mesos.chronos.scheduler.jobs.TaskManager.highQueueSize": {"value": 0},
        "tempora.runs.running": {"value": counts.running},
        "tempora.jobs": {"value": counts.jobs},
    });
    Ok(json!({
        "version": "3.0.0",
        "gauges": gauges,
        "counters": counters,
        "histograms": histograms,
        "meters": {},
        "timers": {},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_codahale() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.99), 4.0);
        assert_eq!(quantile(&v, 0.1), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(mean(&v), 2.5);
    }

    #[test]
    fn stat_formats() {
        assert_eq!(stat_duration(93784), "1d2h3m4s");
        assert_eq!(stat_duration(4), "4s");
        assert_eq!(stat_duration(3600), "1h0m0s");
        let t: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(stat_time(Some(t)), "01/02/26 03:04:05");
        assert_eq!(stat_time(None), "N/A");
    }

    fn spec(v: Value) -> JobSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn delete_rewires_like_chronos() {
        let sched = spec(
            json!({"name": "a", "command": "true", "schedule": "R/2020-01-01T00:00:00/P1D", "timezone": "Europe/Paris"}),
        );
        let dep = spec(json!({"name": "b", "command": "true", "parents": ["x", "y"]}));
        let only = spec(json!({"name": "c", "command": "true", "parents": ["a"]}));
        let c = rewire(only.clone(), &sched);
        assert!(c.parents.is_empty());
        assert_eq!(c.schedule.as_deref(), Some("R/2020-01-01T00:00:00/P1D"));
        assert_eq!(c.timezone, "Europe/Paris");
        let two = spec(json!({"name": "c", "command": "true", "parents": ["a", "z"]}));
        assert_eq!(rewire(two, &sched).parents, vec!["z"]);
        let under_b = spec(json!({"name": "c", "command": "true", "parents": ["b", "y"]}));
        assert_eq!(rewire(under_b, &dep).parents, vec!["y", "x"]);
    }
}
