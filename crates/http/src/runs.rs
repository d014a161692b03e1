//! `/api/v1/jobs/{name}/runs` and `/api/v1/runs/{id}…`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tempora_core::auth::Role;
use tempora_core::job::validate_name;
use tempora_core::run::{Run, RunOverrides};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AuditNote, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::jobs::check_limit;

/// Bytes returned by one non-following log read (the stored bound is 10 MiB by default).
const LOG_READ_MAX: usize = 64 * 1024 * 1024;
/// Poll interval of `?follow=true`.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// A run as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// Why a queued run does not start yet: not due, no worker it may go to, every such worker
    /// busy (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Its notifications, each with every delivery attempt (on a single run's page only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<tempora_store::notify::Notification>,
}

/// One page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// The runs.
    pub runs: Vec<RunView>,
    /// The `before` of the next page (null: this is the last).
    pub next_before: Option<i64>,
}

/// Query of `GET /jobs/{name}/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only runs with a smaller id (the `next_before` of the previous page).
    pub before: Option<i64>,
}

/// Query of `GET /api/v1/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Only this job's runs.
    pub job: Option<String>,
    /// Only runs in this state.
    pub state: Option<String>,
    /// Only runs with this trigger (`schedule`, `manual`, `retry`, `dependency`).
    pub trigger: Option<String>,
    /// Only occurrences at or after this instant (RFC 3339).
    pub since: Option<String>,
    /// Only occurrences before this instant (RFC 3339).
    pub until: Option<String>,
    /// Page size (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only runs with a smaller id (the `next_before` of the previous page).
    pub before: Option<i64>,
}

/// An optional query value of a closed set (`state`, `trigger`): 400 naming the field and the
/// allowed values.
fn parsed<T: std::str::FromStr>(
    field: &str,
    v: Option<String>,
    allowed: &str,
) -> ApiResult<Option<T>> {
    v.map(|x| {
        x.parse::<T>().map_err(|_| {
            ApiError::field(
                "invalid_query",
                field,
                format!("unknown {field} `{x}` ({allowed})"),
            )
        })
    })
    .transpose()
}

fn instant(field: &str, v: Option<String>) -> ApiResult<Option<Timestamp>> {
    v.map(|t| {
        t.parse::<Timestamp>().map_err(|_| {
            ApiError::field(
                "invalid_query",
                field,
                format!("`{t}` is not an RFC 3339 instant such as 2027-01-01T00:00:00Z"),
            )
        })
    })
    .transpose()
}

/// `GET /api/v1/runs`: runs of every job, newest first, filtered by `job`, `state`, `trigger`
/// and the occurrence window `since`..`until`.
#[utoipa::path(
    get,
    path = "/api/v1/runs",
    operation_id = "searchRuns",
    tag = "runs",
    params(SearchQuery),
    responses((status = 200, description = "One page of runs, newest first", body = RunList), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 404, description = "Job not found", body = crate::error::ErrorBody))
)]
pub async fn search(
    State(s): State<Arc<AppState>>,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<RunList>> {
    let Query(q) = q.map_err(|e| ApiError::query(&e))?;
    let limit = check_limit(q.limit, 50)?;
    let state = parsed(
        "state",
        q.state,
        "queued, running, succeeded, failed, timed_out, cancelled, lost, skipped",
    )?;
    let trigger = parsed(
        "trigger",
        q.trigger,
        "schedule, manual, retry, dependency, backfill",
    )?;
    if let Some(j) = &q.job
        && (validate_name(j).is_err() || s.store.get_job(j).await?.is_none())
    {
        return Err(ApiError::not_found(format!("job `{j}` not found")));
    }
    let filter = tempora_store::RunFilter {
        job: q.job,
        state,
        trigger,
        since: instant("since", q.since)?,
        until: instant("until", q.until)?,
    };
    let runs = s.store.search_runs(&filter, q.before, limit).await?;
    let next_before = (runs.len() as u32 == limit)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    let runs = with_waiting(&s, &runs).await?;
    Ok(Json(RunList { runs, next_before }))
}

/// `GET /api/v1/jobs/{name}/runs`: newest first.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{name}/runs",
    operation_id = "listJobRuns",
    tag = "runs",
    params(("name" = String, Path, description = "The job's name"), ListQuery),
    responses((status = 200, description = "One page of the job's runs, newest first", body = RunList), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 404, description = "Job not found", body = crate::error::ErrorBody))
)]
pub async fn list(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<RunList>> {
    let Query(q) = q.map_err(|e| ApiError::query(&e))?;
    let limit = check_limit(q.limit, 50)?;
    if validate_name(&name).is_err() || s.store.get_job(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("job `{name}` not found")));
    }
    let runs = s.store.list_runs(&name, q.before, limit).await?;
    let next_before = (runs.len() as u32 == limit)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    let runs = with_waiting(&s, &runs).await?;
    Ok(Json(RunList { runs, next_before }))
}

/// Body of `POST /jobs/{name}/runs`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// Extra environment for this run.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Replaces the job's arguments for this run.
    #[serde(default)]
    pub arguments: Option<Vec<String>>,
    /// Bypass the overlap policy.
    #[serde(default)]
    pub force: bool,
}

/// `POST /api/v1/jobs/{name}/runs`: trigger a run now.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{name}/runs",
    operation_id = "triggerRun",
    tag = "runs",
    params(("name" = String, Path, description = "The job's name")),
    request_body = TriggerBody,
    responses((status = 201, description = "The run (queued, or skipped by the overlap policy)", body = RunView), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 404, description = "Job not found", body = crate::error::ErrorBody))
)]
pub async fn trigger(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<TriggerBody>,
) -> ApiResult<Response> {
    let (run, note) = trigger_run(&s, &caller, &name, body).await?;
    let view = view(&s, run).await?;
    Ok(note.attach((StatusCode::CREATED, Json(view))))
}

/// Trigger a run of `name` now for `caller`, with the checks every trigger has (overrides need
/// `editor`, or `admin` for a job that switches users): the API's and the web UI's.
pub(crate) async fn trigger_run(
    s: &AppState,
    caller: &Caller,
    name: &str,
    body: TriggerBody,
) -> ApiResult<(Run, AuditNote)> {
    let name = name.to_owned();
    if validate_name(&name).is_err() {
        return Err(ApiError::not_found(format!("job `{name}` not found")));
    }
    // Other variables or arguments for one run are an edit of the job for that run: the
    // program reads them (PERL5OPT, GIT_CONFIG_*, `bash -c …`), so they can run anything, and
    // need the role that may edit the job.
    if (!body.env.is_empty() || body.arguments.is_some()) && !caller.role.allows(Role::Editor) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a trigger with `env` or `arguments` needs role `editor`; token `{}` has role `{}` (a plain trigger needs `operator`)",
                caller.name, caller.role
            ),
        ));
    }
    tempora_core::job::validate_trigger(
        &body.env,
        body.arguments.as_deref(),
        caller.role == Role::Admin,
    )?;
    // Choosing the variables or arguments of a job that runs as another user, or in a
    // container with the host's files or network, is running code with that power: admin
    // only, like defining such a job.
    if (!body.env.is_empty() || body.arguments.is_some())
        && caller.role != Role::Admin
        && let Some(rec) = s.store.get_job(&name).await?
        && let Some(why) = crate::jobs::overrides_need_admin(s, &rec.spec)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "job `{name}` {why}: a trigger with `env` or `arguments` needs role `admin`; token `{}` has role `{}`",
                caller.name, caller.role
            ),
        ));
    }
    // The audit log names what the trigger overrode (variable names only: values may be
    // secrets).
    let mut overridden = Vec::new();
    if !body.env.is_empty() {
        let names: Vec<&str> = body.env.keys().map(String::as_str).collect();
        overridden.push(format!("env: {}", names.join(",")));
    }
    if let Some(a) = &body.arguments {
        overridden.push(format!("arguments: {}", a.len()));
    }
    if body.force {
        overridden.push("force".to_owned());
    }
    let overrides = RunOverrides {
        env: body.env,
        arguments: body.arguments,
        command_suffix: None,
    };
    let run = s
        .store
        .trigger_run(&name, overrides, body.force, tempora_store::clock::now())
        .await?;
    s.work_ready.notify_one();
    tracing::info!(message = "run triggered", job = %name, run_id = run.id, state = %run.state);
    let note = AuditNote {
        detail: (!overridden.is_empty()).then(|| overridden.join("; ")),
        ..AuditNote::default()
    };
    Ok((run, note))
}

/// `GET /api/v1/runs/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}",
    operation_id = "getRun",
    tag = "runs",
    params(("id" = i64, Path, description = "The run's id")),
    responses((status = 200, description = "The run", body = RunView), (status = 404, description = "Run not found", body = crate::error::ErrorBody))
)]
pub async fn get(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    let id = run_id(&id)?;
    let run = s
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run {id} not found")))?;
    let mut v = view(&s, run).await?;
    v.notifications = s.store.run_notifications(id).await?;
    Ok(Json(v))
}

/// Runs as the API shows them: a queued run that is not about to start says why, in `waiting`
/// (not due yet, no worker it may go to, every such worker busy).
pub(crate) async fn with_waiting(s: &AppState, runs: &[Run]) -> ApiResult<Vec<RunView>> {
    use tempora_core::run::RunState;
    let now = tempora_store::clock::now();
    let mut workers: Option<Vec<tempora_store::WorkerStatus>> = None;
    let mut selectors: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let mut waiting = None;
        if r.state == RunState::Queued {
            if workers.is_none() {
                workers = Some(s.store.list_workers(now).await?);
            }
            if !selectors.contains_key(&r.job) {
                let selector = s
                    .store
                    .get_job(&r.job)
                    .await?
                    .map(|j| j.spec.effective_selector())
                    .unwrap_or_default();
                selectors.insert(r.job.clone(), selector);
            }
            let selector = selectors.get(&r.job).cloned().unwrap_or_default();
            let workers = workers.as_deref().unwrap_or_default();
            waiting = tempora_store::waiting::waiting_reason(r, &selector, workers, now);
        }
        out.push(RunView {
            run: r.clone(),
            waiting,
            notifications: Vec::new(),
        });
    }
    Ok(out)
}

/// One run as the API shows it.
pub(crate) async fn view(s: &AppState, run: Run) -> ApiResult<RunView> {
    let waiting = with_waiting(s, std::slice::from_ref(&run))
        .await?
        .pop()
        .and_then(|v| v.waiting);
    Ok(RunView {
        run,
        waiting,
        notifications: Vec::new(),
    })
}

fn run_id(s: &str) -> ApiResult<i64> {
    s.parse::<i64>().ok().filter(|&n| n > 0).ok_or_else(|| {
        ApiError::not_found(format!(
            "run `{s}` not found (run ids are positive integers)"
        ))
    })
}

/// `POST /api/v1/runs/{id}/cancel`.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/cancel",
    operation_id = "cancelRun",
    tag = "runs",
    params(("id" = i64, Path, description = "The run's id")),
    responses((status = 202, description = "Cancel requested (a queued run is cancelled at once)", body = Run), (status = 404, description = "Run not found", body = crate::error::ErrorBody), (status = 409, description = "The run has ended", body = crate::error::ErrorBody))
)]
pub async fn cancel(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = run_id(&id)?;
    let run = s
        .store
        .request_cancel(id, tempora_store::clock::now())
        .await?;
    s.stops_requested.notify_one();
    tracing::info!(message = "cancel requested", run_id = id, state = %run.state);
    let note = AuditNote {
        job: Some(run.job.clone()),
        ..AuditNote::default()
    };
    Ok(note.attach((StatusCode::ACCEPTED, Json(run))))
}

/// Query of `GET /runs/{id}/log`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Stream until the run ends.
    #[serde(default)]
    pub follow: bool,
    /// Start at this byte offset of the output stream.
    #[serde(default)]
    pub offset: u64,
}

fn dropped_marker(n: u64) -> String {
    format!("[tempora: {n} earlier bytes of output were dropped; the tail is kept]\n")
}

/// `GET /api/v1/runs/{id}/log`: the output as text; `?follow=true` streams until the run ends.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/log",
    operation_id = "getRunLog",
    tag = "runs",
    params(("id" = i64, Path, description = "The run's id"), LogQuery),
    responses((status = 200, description = "The output (stdout and stderr, interleaved); streamed until the run ends with `follow=true`", body = String, content_type = "text/plain"), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 404, description = "Run not found", body = crate::error::ErrorBody))
)]
pub async fn log(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| ApiError::query(&e))?;
    let id = run_id(&id)?;
    let first = s
        .store
        .read_log(id, q.offset, LOG_READ_MAX)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run {id} not found")))?;
    let headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
        (
            header::HeaderName::from_static("x-tempora-run-state"),
            first.state.to_string(),
        ),
        (
            header::HeaderName::from_static("x-tempora-log-dropped"),
            first.dropped_before.to_string(),
        ),
    ];
    if !q.follow {
        let mut body = Vec::with_capacity(first.data.len() + 80);
        if first.dropped_before > 0 {
            body.extend_from_slice(dropped_marker(first.dropped_before).as_bytes());
        }
        body.extend_from_slice(&first.data);
        return Ok((headers, body).into_response());
    }
    let store = s.store.clone();
    let stream = async_stream(store, id, first);
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// The follow stream: what is there, then new output every [`FOLLOW_POLL`] until the run has
/// ended and everything was sent.
fn async_stream(
    store: Arc<dyn tempora_store::Store>,
    id: i64,
    first: tempora_store::LogSlice,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    struct St {
        store: Arc<dyn tempora_store::Store>,
        offset: u64,
        pending: Option<Vec<u8>>,
        done: bool,
    }
    let mut head = Vec::new();
    if first.dropped_before > 0 {
        head.extend_from_slice(dropped_marker(first.dropped_before).as_bytes());
    }
    head.extend_from_slice(&first.data);
    let done_now = first.state.is_final() && first.data.len() < LOG_READ_MAX;
    let st = St {
        store,
        offset: first.next_offset,
        pending: Some(head),
        done: done_now,
    };
    futures_util::stream::unfold(st, move |mut st| async move {
        loop {
            if let Some(p) = st.pending.take()
                && !p.is_empty()
            {
                return Some((Ok(p), st));
            }
            if st.done {
                return None;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
            match st.store.read_log(id, st.offset, 1024 * 1024).await {
                Ok(Some(slice)) => {
                    let mut chunk = Vec::new();
                    if slice.offset > st.offset {
                        chunk
                            .extend_from_slice(dropped_marker(slice.offset - st.offset).as_bytes());
                    }
                    chunk.extend_from_slice(&slice.data);
                    st.offset = slice.next_offset;
                    if slice.state.is_final() && slice.data.is_empty() {
                        st.done = true;
                    }
                    st.pending = Some(chunk);
                }
                Ok(None) => return None,
                Err(e) => {
                    return Some((
                        Err(std::io::Error::other(e.to_string())),
                        St { done: true, ..st },
                    ));
                }
            }
        }
    })
}
