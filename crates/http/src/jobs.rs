//! `/api/v1/jobs…` and `/api/v1/schedules/preview`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tempora_core::auth::Role;
use tempora_core::job::{JobSpec, validate_name};
use tempora_core::run::{Run, RunState};
use tempora_core::schedule::{Schedule, parse_timezone};
use tempora_core::secret::{MASK, is_sealed};
use tempora_core::time::rfc3339_in_zone;
use tempora_store::{JobRecord, PutMode};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;

/// Most items in one page of a listing.
pub const MAX_PAGE: u32 = 1000;

/// A job as the API shows it: its spec (secrets masked) and a `status` object.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// The job as defined.
    #[serde(flatten)]
    pub spec: JobSpec,
    /// What the scheduler knows of it.
    pub status: JobStatus,
}

/// The `status` of a [`JobView`].
#[derive(Debug, Serialize, ToSchema)]
pub struct JobStatus {
    /// What a run is: `command`, `http` or `container` (the capability a worker needs).
    pub kind: tempora_core::kind::Kind,
    /// The next occurrence (null: paused, dependent, or no occurrence left).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_fire_at: Option<Timestamp>,
    /// Occurrences that succeeded.
    pub success_count: u64,
    /// Occurrences that failed (after their retries).
    pub error_count: u64,
    /// When an occurrence last succeeded.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<Timestamp>,
    /// When an occurrence last failed.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_error_at: Option<Timestamp>,
    /// When the job was created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When the job was last changed.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// Increases with every change.
    pub version: i64,
    /// Its last occurrence that ended failed.
    pub failing: bool,
    /// `succeeded` or `failed`: the outcome of the last occurrence that ended (null before
    /// the first).
    pub last_result: Option<LastResult>,
    /// Its newest run (on a single job's page and after pause/resume).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// A run of it is running (in listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// Why its newest run, queued, does not start yet (on a single job's page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// The outcome of a job's last occurrence that ended.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LastResult {
    /// It succeeded.
    Succeeded,
    /// It failed (after its retries).
    Failed,
}

impl LastResult {
    /// The word the API and the pages use.
    pub fn as_str(self) -> &'static str {
        match self {
            LastResult::Succeeded => "succeeded",
            LastResult::Failed => "failed",
        }
    }
}

/// The newest run of a job, in brief.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastRun {
    /// Run id.
    pub id: i64,
    /// Its state.
    pub state: RunState,
    /// The occurrence it stands for.
    #[schema(value_type = String, format = DateTime)]
    pub scheduled_for: Timestamp,
    /// When it started.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
}

/// One page of `GET /api/v1/jobs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// The jobs, by name.
    pub jobs: Vec<JobView>,
    /// The `after` of the next page (null: this is the last).
    pub next_after: Option<String>,
}

/// The API view of a job: its spec plus a `status` object.
pub fn job_view(rec: &JobRecord, last_run: Option<&Run>) -> JobView {
    JobView {
        spec: masked(&rec.spec).into_owned(),
        status: JobStatus {
            kind: rec.spec.kind(),
            next_fire_at: rec.next_fire_at,
            success_count: rec.success_count,
            error_count: rec.error_count,
            last_success_at: rec.last_success_at,
            last_error_at: rec.last_error_at,
            created_at: rec.created_at,
            updated_at: rec.updated_at,
            version: rec.version,
            failing: rec.errors_since_success > 0,
            last_result: last_result(rec),
            last_run: last_run.map(|r| LastRun {
                id: r.id,
                state: r.state,
                scheduled_for: r.scheduled_for,
                started_at: r.started_at,
                finished_at: r.finished_at,
            }),
            running: None,
            waiting: None,
        },
    }
}

/// The outcome of the job's last occurrence that ended (after its retries), from its counters:
/// `succeeded`, `failed`, or null before the first.
pub(crate) fn last_result(rec: &JobRecord) -> Option<LastResult> {
    match (rec.last_success_at, rec.last_error_at) {
        (None, None) => None,
        (Some(_), None) => Some(LastResult::Succeeded),
        (None, Some(_)) => Some(LastResult::Failed),
        (Some(ok), Some(err)) if err > ok => Some(LastResult::Failed),
        _ => Some(LastResult::Succeeded),
    }
}

/// Query of `GET /jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Continue after this job name.
    pub after: Option<String>,
    /// Case-insensitive substring of the name or description.
    pub q: Option<String>,
    /// `key=value` labels the job must have (several: `a=b,c=d`).
    pub label: Option<String>,
    /// Case-insensitive substring of the owner.
    pub owner: Option<String>,
    /// `paused`, `active`, `failing` or `running`.
    pub state: Option<String>,
}

/// `GET /api/v1/jobs`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    operation_id = "listJobs",
    tag = "jobs",
    params(ListQuery),
    responses((status = 200, description = "One page of jobs, by name", body = JobList), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody))
)]
pub async fn list(
    State(s): State<Arc<AppState>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<JobList>> {
    let Query(q) = q.map_err(|e| ApiError::query(&e))?;
    let limit = check_limit(q.limit, 100)?;
    let filters = crate::find::Filters::parse(q.q, q.label, q.owner, q.state)?;
    let running = crate::find::running_jobs(s.store.as_ref()).await?;
    let (jobs, next_after) = if filters.any() {
        crate::find::find(
            s.store.as_ref(),
            &filters,
            &running,
            q.after.as_deref(),
            limit,
        )
        .await?
    } else {
        let jobs = s.store.list_jobs(q.after.as_deref(), limit).await?;
        let next = (jobs.len() as u32 == limit)
            .then(|| jobs.last().map(|j| j.spec.name.clone()))
            .flatten();
        (jobs, next)
    };
    let jobs = jobs
        .iter()
        .map(|j| {
            let mut v = job_view(j, None);
            v.status.running = Some(running.contains(&j.spec.name));
            v
        })
        .collect();
    Ok(Json(JobList { jobs, next_after }))
}

/// Validate a `limit` query parameter.
pub fn check_limit(limit: Option<u32>, default: u32) -> ApiResult<u32> {
    match limit {
        None => Ok(default),
        Some(0) => Err(ApiError::field(
            "invalid_query",
            "limit",
            "limit must be at least 1",
        )),
        Some(n) if n > MAX_PAGE => Err(ApiError::field(
            "invalid_query",
            "limit",
            format!("limit must be at most {MAX_PAGE}"),
        )),
        Some(n) => Ok(n),
    }
}

fn path_name(name: &str) -> ApiResult<()> {
    validate_name(name)
        .map_err(|e| ApiError::not_found(format!("job `{name}` not found ({})", e.message)))
}

async fn write(s: &AppState, caller: &Caller, spec: JobSpec, mode: PutMode) -> ApiResult<Response> {
    let out = save(s, caller, spec, mode).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(crate::auth::with_spec_note(
        (status, Json(job_view(&out.record, None))),
        &out.record.spec,
    ))
}

/// Check a job as every write does (fields, `run_as`, a schedule that fires again, secrets
/// sealed) and store it: the API's `POST`/`PUT` and the web UI's form.
pub(crate) async fn save(
    s: &AppState,
    caller: &Caller,
    mut spec: JobSpec,
    mode: PutMode,
) -> ApiResult<tempora_store::PutOutcome> {
    spec.take_zone_prefix()?;
    tempora_core::chronos::tidy(&mut spec);
    spec.validate()?;
    check_privileges(s, &spec, caller)?;
    crate::artifacts::check_job_artifact(s, &spec).await?;
    let stored = stored_if_needed(s, &spec).await?;
    check_fires_again(&spec, stored.as_ref())?;
    seal_secrets(s, &mut spec, stored.as_ref())?;
    let out = s
        .store
        .put_job(spec, mode, tempora_store::clock::now())
        .await?;
    s.scheduler.job_changed(&out.record.spec.name);
    tracing::info!(message = "job saved", job = %out.record.spec.name, created = out.created);
    Ok(out)
}

/// The stored job of the same name, read only when the checks below need it: a secret sent as
/// `***` (keep the stored value), or a schedule with no occurrence left (kept if unchanged).
pub(crate) async fn stored_if_needed(s: &AppState, spec: &JobSpec) -> ApiResult<Option<JobSpec>> {
    let now = tempora_store::clock::now();
    let keeps_secret = spec.secrets.values().any(|v| v == MASK);
    let no_occurrence = spec.schedule.is_some()
        && tempora_store::first_occurrence(spec, now, now)
            .map(|o| o.is_none())
            .unwrap_or(false);
    if !keeps_secret && !no_occurrence {
        return Ok(None);
    }
    Ok(s.store.get_job(&spec.name).await?.map(|r| r.spec))
}

/// A schedule with no occurrence left (an `@at`, or a finite ISO 8601 series, wholly in the
/// past — further back than `epsilon`, within which a missed occurrence still starts) is refused
/// when it is new: the job would be stored and never fire. The same schedule already stored (an
/// exported job applied again after it fired) is kept as it is. (The Chronos API accepts such
/// jobs, as Chronos does.)
pub(crate) fn check_fires_again(spec: &JobSpec, stored: Option<&JobSpec>) -> ApiResult<()> {
    let now = tempora_store::clock::now();
    if spec.schedule.is_none() || tempora_store::first_occurrence(spec, now, now)?.is_some() {
        return Ok(());
    }
    if stored.is_some_and(|r| r.schedule == spec.schedule && r.timezone == spec.timezone) {
        return Ok(());
    }
    Err(ApiError::field(
        "schedule_in_past",
        "schedule",
        format!(
            "schedule `{}` has no occurrence left (it is {} UTC, the job's zone is {} and its \
             epsilon {}): the job would never fire; give a future time, or run it now with \
             `tempora job run`",
            spec.schedule.as_deref().unwrap_or_default(),
            now.strftime("%Y-%m-%dT%H:%M:%S"),
            spec.timezone,
            tempora_core::duration::format_duration(spec.epsilon),
        ),
    ))
}

/// The spec as every read shows it: secret values replaced by `***`.
pub fn masked(spec: &JobSpec) -> std::borrow::Cow<'_, JobSpec> {
    if spec.secrets.is_empty() {
        return std::borrow::Cow::Borrowed(spec);
    }
    let mut m = spec.clone();
    for v in m.secrets.values_mut() {
        *v = MASK.to_owned();
    }
    std::borrow::Cow::Owned(m)
}

/// Seal the secret values of `spec` for the store: a new value is sealed; `***` keeps the
/// stored value of that name (so that an export applies back unchanged).
pub(crate) fn seal_secrets(
    s: &AppState,
    spec: &mut JobSpec,
    stored: Option<&JobSpec>,
) -> ApiResult<()> {
    let none = Default::default();
    let stored = stored.map_or(&none, |j| &j.secrets);
    let job = spec.name.clone();
    for (name, value) in spec.secrets.iter_mut() {
        if value == MASK {
            *value = stored.get(name).cloned().ok_or_else(|| {
                ApiError::field(
                    "invalid_value",
                    format!("secrets.{name}"),
                    format!("`***` keeps the stored value, and job `{job}` has none for `{name}`: send the value"),
                )
            })?;
        } else if is_sealed(value) {
            return Err(ApiError::field(
                "invalid_value",
                format!("secrets.{name}"),
                "a value starting with `sealed:v1:` is tempora's own sealed form; send the value itself",
            ));
        } else {
            let mut nonce = [0u8; 12];
            getrandom::fill(&mut nonce).map_err(|e| {
                tracing::error!(message = "no random bytes for a secret's nonce", error = %e);
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "cannot seal the secret (see the server log)",
                )
            })?;
            *value = s.secret_key.seal(&job, name, value, nonce);
        }
    }
    Ok(())
}

/// A job's `run_as`: the user must exist on this server, which must be able to switch to it
/// (run as root) unless it is the server's own user; switching to another user is running code
/// as that user, which needs role `admin`.
fn check_run_as(s: &AppState, spec: &JobSpec, caller: &Caller) -> ApiResult<()> {
    let Some(user) = &spec.run_as else {
        return Ok(());
    };
    let switch = (s.run_as)(user).map_err(|e| ApiError::field("invalid_value", "run_as", e))?;
    if switch && caller.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "`run_as` another user than the server's own needs role `admin`; token `{}` has role `{}`",
                caller.name, caller.role
            ),
        ));
    }
    Ok(())
}

/// What only some roles may ask of a job: `run_as` another user, a container that reaches into
/// the host. Every write path (API, UI, Chronos API, `apply`) checks it.
pub(crate) fn check_privileges(s: &AppState, spec: &JobSpec, caller: &Caller) -> ApiResult<()> {
    check_run_as(s, spec, caller)?;
    check_container(spec, caller)
}

/// Why choosing a run's variables or arguments for this job needs role `admin` (None: an
/// editor may): the job switches users, or is a container that reaches into the host — either
/// way the overrides are code running with that power.
pub(crate) fn overrides_need_admin(s: &AppState, spec: &JobSpec) -> Option<String> {
    if let Some(user) = &spec.run_as
        && (s.run_as)(user).is_ok_and(|switch| switch)
    {
        return Some(format!("runs as `{user}`"));
    }
    spec.container
        .as_ref()
        .and_then(|c| c.needs_admin())
        .map(|why| format!("is a container job where {why}"))
}

/// A container that reaches into the host (a volume, the host's network) is the host's files
/// or network: role `admin` only.
fn check_container(spec: &JobSpec, caller: &Caller) -> ApiResult<()> {
    let Some(why) = spec.container.as_ref().and_then(|c| c.needs_admin()) else {
        return Ok(());
    };
    if caller.role == Role::Admin {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "{why}: that needs role `admin`; token `{}` has role `{}`",
            caller.name, caller.role
        ),
    ))
}

/// `POST /api/v1/jobs`: create (409 if it exists).
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    operation_id = "createJob",
    tag = "jobs",
    request_body = JobSpec,
    responses((status = 201, description = "Created", body = JobView), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 409, description = "A job of that name exists", body = crate::error::ErrorBody), (status = 422, description = "A field tempora does not support (a Chronos field)", body = crate::error::ErrorBody))
)]
pub async fn create(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    JsonBody(spec): JsonBody<JobSpec>,
) -> ApiResult<impl IntoResponse> {
    write(&s, &caller, spec, PutMode::Create).await
}

/// `PUT /api/v1/jobs/{name}`: create (201) or replace (200).
#[utoipa::path(
    put,
    path = "/api/v1/jobs/{name}",
    operation_id = "putJob",
    tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    request_body = JobSpec,
    responses((status = 200, description = "Replaced", body = JobView), (status = 201, description = "Created", body = JobView), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 409, description = "Its parents would form a cycle, or the write raced another", body = crate::error::ErrorBody), (status = 422, description = "A field tempora does not support (a Chronos field)", body = crate::error::ErrorBody))
)]
pub async fn put(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(mut spec): JsonBody<JobSpec>,
) -> ApiResult<impl IntoResponse> {
    validate_name(&name)?;
    if spec.name.is_empty() {
        spec.name = name;
    } else if spec.name != name {
        return Err(ApiError::field(
            "name_mismatch",
            "name",
            format!(
                "the body's name `{}` differs from the URL's `{name}`",
                spec.name
            ),
        ));
    }
    write(&s, &caller, spec, PutMode::Upsert).await
}

/// `GET /api/v1/jobs/{name}`: spec and status.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{name}",
    operation_id = "getJob",
    tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, description = "The job", body = JobView), (status = 404, description = "Job not found", body = crate::error::ErrorBody))
)]
pub async fn get(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<JobView>> {
    path_name(&name)?;
    let rec = s
        .store
        .get_job(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job `{name}` not found")))?;
    let last = s.store.list_runs(&name, None, 1).await?;
    let mut view = job_view(&rec, last.first());
    // A job whose newest run waits says why.
    view.status.waiting = crate::runs::with_waiting(&s, &last)
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.waiting);
    Ok(Json(view))
}

/// Query of `DELETE /jobs/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Delete even if other jobs depend on it (they drop it from their parents).
    #[serde(default)]
    pub force: bool,
}

/// `DELETE /api/v1/jobs/{name}` (`?force=true` to delete a job that others depend on).
#[utoipa::path(
    delete,
    path = "/api/v1/jobs/{name}",
    operation_id = "deleteJob",
    tag = "jobs",
    params(("name" = String, Path, description = "The job's name"), DeleteQuery),
    responses((status = 204, description = "Deleted"), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 404, description = "Job not found", body = crate::error::ErrorBody), (status = 409, description = "Other jobs depend on it (use `force=true`)", body = crate::error::ErrorBody))
)]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<StatusCode> {
    let Query(q) = q.map_err(|e| ApiError::query(&e))?;
    delete_job(&s, &name, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a job (with `force`, also one that others depend on: they drop it from their
/// parents), stop its runs and reschedule what changed.
pub(crate) async fn delete_job(s: &AppState, name: &str, force: bool) -> ApiResult<()> {
    path_name(name)?;
    // Children that lose this parent must be rescheduled too.
    let children: Vec<String> = if force {
        s.store
            .dependency_edges()
            .await?
            .into_iter()
            .filter(|(p, _)| *p == name)
            .map(|(_, c)| c)
            .collect()
    } else {
        Vec::new()
    };
    if s.store.delete_job(name, force).await? {
        s.stops_requested.notify_one();
        for c in &children {
            s.scheduler.job_changed(c);
        }
        s.scheduler.job_changed(name);
        tracing::info!(message = "job deleted", job = %name);
        Ok(())
    } else {
        Err(ApiError::not_found(format!("job `{name}` not found")))
    }
}

pub(crate) async fn set_paused(s: &AppState, name: &str, paused: bool) -> ApiResult<Json<JobView>> {
    path_name(name)?;
    let rec = s
        .store
        .set_paused(name, paused, tempora_store::clock::now())
        .await?;
    s.scheduler.job_changed(name);
    tracing::info!(message = if paused { "job paused" } else { "job resumed" }, job = %name);
    // The same view as GET: with the job's last run.
    let last = s.store.list_runs(name, None, 1).await?;
    Ok(Json(job_view(&rec, last.first())))
}

/// `POST /api/v1/jobs/{name}/pause`.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{name}/pause",
    operation_id = "pauseJob",
    tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, description = "Paused", body = JobView), (status = 404, description = "Job not found", body = crate::error::ErrorBody))
)]
pub async fn pause(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<JobView>> {
    set_paused(&s, &name, true).await
}

/// `POST /api/v1/jobs/{name}/resume`.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{name}/resume",
    operation_id = "resumeJob",
    tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, description = "Resumed", body = JobView), (status = 404, description = "Job not found", body = crate::error::ErrorBody))
)]
pub async fn resume(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<JobView>> {
    set_paused(&s, &name, false).await
}

/// Body of `POST /api/v1/schedules/preview`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The expression.
    pub schedule: String,
    /// Zone (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Strictly after this instant (default now).
    #[serde(default)]
    pub after: Option<String>,
    /// How many (default 5, at most 1000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub count: Option<u32>,
}

/// Answer of `POST /api/v1/schedules/preview`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    /// The next fire times, RFC 3339 in the zone's offset.
    pub next: Vec<String>,
    /// The expression as parsed (without a `CRON_TZ=` prefix).
    pub schedule: String,
    /// The zone the times are in.
    pub timezone: String,
    /// The schedule in words.
    pub description: String,
}

/// Parse an RFC 3339 instant from a request field.
pub fn parse_instant(field: &str, s: &str) -> ApiResult<Timestamp> {
    s.parse::<Timestamp>().map_err(|e| {
        ApiError::field(
            "invalid_timestamp",
            field,
            format!("{field}: `{s}` is not an RFC 3339 timestamp ({e})"),
        )
    })
}

/// A schedule to preview, checked: the expression (a `CRON_TZ=` prefix taken off), the zone it
/// is read in (the prefix's, else `timezone`, else UTC) and that zone's rules. The API's preview
/// and the web UI's form share it.
pub(crate) fn preview_schedule<'a>(
    expr: &'a str,
    timezone: Option<&'a str>,
) -> ApiResult<(Schedule, &'a str, jiff::tz::TimeZone)> {
    let (prefix_zone, expr) = tempora_core::schedule::split_zone_prefix(expr);
    let schedule = Schedule::parse(expr)
        .map_err(|e| ApiError::field("invalid_schedule", "schedule", e.message))?;
    let tz_name = match (prefix_zone, timezone) {
        (Some(p), Some(t)) if p != t && t != "UTC" => {
            return Err(ApiError::field(
                "conflicting_timezone",
                "schedule",
                format!("the schedule's CRON_TZ={p} differs from timezone `{t}`"),
            ));
        }
        (Some(p), _) => p,
        (None, t) => t.unwrap_or("UTC"),
    };
    let tz = parse_timezone(tz_name)
        .map_err(|e| ApiError::field("invalid_timezone", "timezone", e.message))?;
    Ok((schedule, tz_name, tz))
}

/// `POST /api/v1/schedules/preview` → `{"next": [RFC 3339, …]}` in the zone's offset.
#[utoipa::path(
    post,
    path = "/api/v1/schedules/preview",
    operation_id = "previewSchedule",
    tag = "schedules",
    request_body = PreviewRequest,
    responses((status = 200, description = "The next fire times and the schedule in words", body = Preview), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody))
)]
pub async fn preview(JsonBody(req): JsonBody<PreviewRequest>) -> ApiResult<Json<Preview>> {
    let (schedule, tz_name, tz) = preview_schedule(&req.schedule, req.timezone.as_deref())?;
    let now = tempora_store::clock::now();
    let after = match &req.after {
        Some(a) => parse_instant("after", a)?,
        None => schedule.listing_after(now),
    };
    let count = match req.count {
        None => 5,
        Some(0) => {
            return Err(ApiError::field(
                "invalid_value",
                "count",
                "count must be at least 1",
            ));
        }
        Some(n) if n > MAX_PAGE => {
            return Err(ApiError::field(
                "invalid_value",
                "count",
                format!("count must be at most {MAX_PAGE}"),
            ));
        }
        Some(n) => n as usize,
    };
    let next: Vec<String> = schedule
        .upcoming(after, &tz, now, count)
        .into_iter()
        .map(|t| rfc3339_in_zone(t, &tz))
        .collect();
    Ok(Json(Preview {
        description: schedule.describe(tz_name),
        schedule: schedule.as_str().to_owned(),
        timezone: tz_name.to_owned(),
        next,
    }))
}

/// Query of `GET /graph`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GraphQuery {
    /// `json` (default) or `dot` (Graphviz).
    #[serde(default)]
    #[param(pattern = "^(json|dot)$")]
    pub format: Option<String>,
}

/// The dependency graph (`GET /api/v1/graph`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Graph {
    /// The jobs that have parents or children.
    pub nodes: Vec<GraphNode>,
    /// Parent → child.
    pub edges: Vec<GraphEdge>,
}

/// A job in the dependency graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphNode {
    /// The job.
    pub name: String,
    /// Its schedule, if it has one.
    pub schedule: Option<String>,
    /// Its parents.
    pub parents: Vec<String>,
    /// Whether it is paused.
    pub paused: bool,
    /// The state of its newest run (null: none yet).
    pub last_state: Option<RunState>,
}

/// A dependency: `to` runs after `from`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphEdge {
    /// The parent.
    pub from: String,
    /// The child.
    pub to: String,
}

/// `GET /api/v1/graph`: the dependency graph. JSON `{nodes: [{name, schedule, parents,
/// last_state}], edges: [{from, to}]}`, or Graphviz DOT with `?format=dot`. Nodes are the jobs
/// that have parents or children.
#[utoipa::path(
    get,
    path = "/api/v1/graph",
    operation_id = "getGraph",
    tag = "jobs",
    params(GraphQuery),
    responses((status = 200, description = "The dependency graph: JSON, or Graphviz DOT with `format=dot`", content((Graph = "application/json"), (String = "text/vnd.graphviz"))), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody))
)]
pub async fn graph(
    State(s): State<Arc<AppState>>,
    q: Result<Query<GraphQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<axum::response::Response> {
    let Query(q) = q.map_err(|e| ApiError::query(&e))?;
    let dot = match q.format.as_deref() {
        None | Some("json") => false,
        Some("dot") => true,
        Some(other) => {
            return Err(ApiError::field(
                "invalid_query",
                "format",
                format!("format must be json or dot, not `{other}`"),
            ));
        }
    };
    let edges = s.store.dependency_edges().await?;
    let mut names: Vec<&str> = edges
        .iter()
        .flat_map(|(p, c)| [p.as_str(), c.as_str()])
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut nodes = Vec::with_capacity(names.len());
    for name in &names {
        let Some(rec) = s.store.get_job(name).await? else {
            continue;
        };
        let last = s.store.list_runs(name, None, 1).await?;
        nodes.push(GraphNode {
            name: (*name).to_owned(),
            schedule: rec.spec.schedule,
            parents: rec.spec.parents,
            paused: rec.spec.paused,
            last_state: last.first().map(|r| r.state),
        });
    }
    if dot {
        let mut out = String::from("digraph tempora {\n");
        for n in &nodes {
            let name = &n.name;
            let state = n.last_state.map_or("none", RunState::as_str);
            let color = match state {
                "succeeded" => "green",
                "failed" | "timed_out" | "lost" => "red",
                "running" | "queued" => "blue",
                _ => "gray",
            };
            out.push_str(&format!(
                "  \"{name}\" [label=\"{name}\\n{state}\", color={color}];\n"
            ));
        }
        for (p, c) in &edges {
            out.push_str(&format!("  \"{p}\" -> \"{c}\";\n"));
        }
        out.push_str("}\n");
        return Ok((
            [(
                axum::http::header::CONTENT_TYPE,
                "text/vnd.graphviz; charset=utf-8",
            )],
            out,
        )
            .into_response());
    }
    let edges = edges
        .into_iter()
        .map(|(from, to)| GraphEdge { from, to })
        .collect();
    Ok(Json(Graph { nodes, edges }).into_response())
}
