//! The jobs overview (`/`, its rows refreshed every 5 s), a job's page (`/ui/jobs/{name}`) and
//! the actions on a job (run now, pause, resume, delete).

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tempora_core::job::JobSpec;
use tempora_core::run::{Run, RunState, Trigger};
use tempora_core::schedule::{Schedule, parse_timezone};
use tempora_store::{JobRecord, RunFilter};

use super::session::Session;
use super::{Nav, local_time, message_page, relative, render};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Jobs per page of the overview.
const PAGE: u32 = 50;
/// Runs in a job's strip of recent outcomes.
const STRIP: u32 = 20;
/// Runs per page of a job's history.
const HISTORY: u32 = 25;
/// Fire times listed on a job's page.
const NEXT_FIRES: usize = 10;

/// The overview's filters (also the rows fragment's query).
#[derive(Debug, Default, Deserialize)]
pub struct OverviewQuery {
    /// Substring of the name or description.
    #[serde(default)]
    pub q: String,
    /// `paused`, `active`, `failing`, `running` or empty.
    #[serde(default)]
    pub state: String,
    /// `key=value` labels.
    #[serde(default)]
    pub label: String,
    /// Substring of the owner.
    #[serde(default)]
    pub owner: String,
    /// Continue after this job name.
    #[serde(default)]
    pub after: Option<String>,
}

impl OverviewQuery {
    /// The filters as a query string (without `after`).
    fn query(&self) -> String {
        let e = tempora_client::encode_segment;
        format!(
            "q={}&state={}&label={}&owner={}",
            e(&self.q),
            e(&self.state),
            e(&self.label),
            e(&self.owner)
        )
    }
}

/// One job in the overview.
pub struct JobRow {
    name: String,
    description: Option<String>,
    state: &'static str,
    strip: Vec<(i64, &'static str)>,
    last_result: Option<&'static str>,
    /// (when, in the job's zone; how far).
    next: Option<(String, String)>,
    owner: String,
    labels: Vec<String>,
}

/// The overview page.
#[derive(Template)]
#[template(path = "jobs.html")]
pub struct OverviewPage {
    nav: Nav,
    q: String,
    state: String,
    label: String,
    owner: String,
    states: Vec<(&'static str, &'static str)>,
    rows: String,
}

/// The overview's rows (a fragment).
#[derive(Template)]
#[template(path = "jobs_rows.html")]
pub struct Rows {
    jobs: Vec<JobRow>,
    next_after: Option<String>,
    query: String,
    error: Option<String>,
}

const STATES: [(&str, &str); 5] = [
    ("", "Any state"),
    ("active", "Active"),
    ("paused", "Paused"),
    ("running", "Running"),
    ("failing", "Failing"),
];

fn nonempty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

async fn rows_of(s: &AppState, q: &OverviewQuery) -> Rows {
    let mut rows = Rows {
        jobs: Vec::new(),
        next_after: None,
        query: q.query(),
        error: None,
    };
    match find_rows(s, q).await {
        Ok((jobs, next)) => {
            rows.jobs = jobs;
            rows.next_after = next;
        }
        Err(e) => rows.error = Some(e.message),
    }
    rows
}

async fn find_rows(
    s: &AppState,
    q: &OverviewQuery,
) -> Result<(Vec<JobRow>, Option<String>), ApiError> {
    let filters = crate::find::Filters::parse(
        nonempty(&q.q),
        nonempty(&q.label),
        nonempty(&q.owner),
        nonempty(&q.state),
    )?;
    let store = s.store.as_ref();
    let running = crate::find::running_jobs(store).await?;
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    let (jobs, next_after) = if filters.any() {
        crate::find::find(store, &filters, &running, after, PAGE).await?
    } else {
        let jobs = store.list_jobs(after, PAGE).await?;
        let next = (jobs.len() as u32 == PAGE)
            .then(|| jobs.last().map(|j| j.spec.name.clone()))
            .flatten();
        (jobs, next)
    };
    let now = tempora_store::clock::now();
    let mut out = Vec::with_capacity(jobs.len());
    for j in &jobs {
        let mut recent = store.list_runs(&j.spec.name, None, STRIP).await?;
        recent.reverse();
        let tz = parse_timezone(&j.spec.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        out.push(JobRow {
            name: j.spec.name.clone(),
            description: j.spec.description.clone(),
            state: crate::find::state_word(j, &running),
            strip: recent.iter().map(|r| (r.id, r.state.as_str())).collect(),
            last_result: crate::jobs::last_result(j).map(crate::jobs::LastResult::as_str),
            next: j
                .next_fire_at
                .filter(|_| !j.spec.paused)
                .map(|t| (local_time(t, &tz), relative(t, now))),
            owner: j.spec.owner.clone().unwrap_or_default(),
            labels: j
                .spec
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        });
    }
    Ok((out, next_after))
}

fn query_of(
    q: Result<Query<OverviewQuery>, axum::extract::rejection::QueryRejection>,
) -> OverviewQuery {
    q.map(|Query(q)| q).unwrap_or_default()
}

/// `GET /`: every job, filtered and paged.
pub async fn overview(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(session): Extension<Session>,
    q: Result<Query<OverviewQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query_of(q);
    let rows = match rows_of(&s, &q).await.render() {
        Ok(html) => html,
        Err(e) => return message_page(StatusCode::INTERNAL_SERVER_ERROR, "Error", &e.to_string()),
    };
    render(&OverviewPage {
        nav: Nav::new(&s, &caller, &session),
        q: q.q,
        state: q.state,
        label: q.label,
        owner: q.owner,
        states: STATES.to_vec(),
        rows,
    })
}

/// `GET /ui/jobs/rows`: the overview's rows (htmx: on a filter change and every 5 s).
pub async fn rows(
    State(s): State<Arc<AppState>>,
    q: Result<Query<OverviewQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    render(&rows_of(&s, &query_of(q)).await)
}

/// One run in a job's history.
pub struct RunRow {
    id: i64,
    attempt: u32,
    state: &'static str,
    trigger: &'static str,
    due: String,
    took: String,
    exit: String,
    note: String,
}

impl RunRow {
    /// A run as a row, its times in `tz`.
    pub fn of(r: &Run, tz: &jiff::tz::TimeZone) -> RunRow {
        let took = match (r.started_at, r.finished_at) {
            (Some(a), Some(b)) => format!("{:.1} s", b.duration_since(a).as_secs_f64()),
            _ => String::new(),
        };
        let exit = match (r.exit_code, r.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => String::new(),
        };
        RunRow {
            id: r.id,
            attempt: r.attempt,
            state: r.state.as_str(),
            trigger: r.trigger.as_str(),
            due: local_time(r.scheduled_for, tz),
            took,
            exit,
            note: r.error.clone().unwrap_or_default(),
        }
    }
}

/// A job's page.
#[derive(Template)]
#[template(path = "job.html")]
pub struct JobPage {
    nav: Nav,
    name: String,
    description: Option<String>,
    state: &'static str,
    paused: bool,
    delete_warning: String,
    words: Option<String>,
    trigger_text: String,
    /// (when, how far, a DST change before it).
    next_fires: Vec<(String, String, Option<String>)>,
    fields: Vec<(&'static str, String)>,
    yaml: String,
    runs: Vec<RunRow>,
    next_before: Option<i64>,
    run_state: String,
    trigger: String,
    run_states: Vec<(&'static str, &'static str)>,
    triggers: Vec<(&'static str, &'static str)>,
}

/// Query of a job's page: the history's filters and page.
#[derive(Debug, Default, Deserialize)]
pub struct JobQuery {
    /// Only runs in this state.
    #[serde(default)]
    pub state: String,
    /// Only runs with this trigger.
    #[serde(default)]
    pub trigger: String,
    /// Runs older than this id.
    #[serde(default)]
    pub before: Option<i64>,
}

fn fields_of(spec: &JobSpec) -> Vec<(&'static str, String)> {
    let mut f = vec![("kind", spec.kind().to_string())];
    match &spec.http {
        Some(h) => f.extend([
            ("request", format!("{} {}", h.method, h.url)),
            ("expect", h.expected_text()),
        ]),
        None => f.push(("command", spec.command.clone())),
    }
    if let Some(c) = &spec.container {
        f.push(("image", format!("{} (pull: {})", c.image, c.pull.as_str())));
        if let Some(n) = &c.network {
            f.push(("network", n.clone()));
        }
        if let Some(e) = &c.entrypoint {
            f.push(("entrypoint", e.join(" ")));
        }
        if let Some(u) = &c.user {
            f.push(("user", u.clone()));
        }
        if !c.volumes.is_empty() {
            f.push(("volumes", c.volumes.join(", ")));
        }
        let limits: Vec<String> = c
            .cpus
            .map(|n| format!("{n} CPUs"))
            .into_iter()
            .chain(c.memory.as_ref().map(|m| format!("{m} memory")))
            .collect();
        if !limits.is_empty() {
            f.push(("limits", limits.join(", ")));
        }
    }
    if !spec.arguments.is_empty() {
        f.push(("arguments", spec.arguments.join(" ")));
    }
    if spec.http.is_none() {
        f.push(("shell", spec.shell.to_string()));
    }
    if let Some(s) = &spec.schedule {
        f.push(("schedule", s.clone()));
    }
    if !spec.parents.is_empty() {
        f.push(("parents", spec.parents.join(", ")));
    }
    f.push(("timezone", spec.timezone.clone()));
    f.push((
        "concurrency",
        format!("{:?}", spec.concurrency).to_lowercase(),
    ));
    f.push(("retries", spec.retries.to_string()));
    if let Some(t) = spec.timeout {
        f.push(("timeout", tempora_core::duration::format_duration(t)));
    }
    if let Some(o) = &spec.owner {
        f.push(("owner", o.clone()));
    }
    if !spec.labels.is_empty() {
        let l: Vec<String> = spec
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.push(("labels", l.join(", ")));
    }
    if !spec.env.is_empty() {
        let e: Vec<&str> = spec.env.keys().map(String::as_str).collect();
        f.push(("env", e.join(", ")));
    }
    if !spec.secrets.is_empty() {
        let e: Vec<String> = spec.secrets.keys().map(|k| format!("{k}=***")).collect();
        f.push(("secrets", e.join(", ")));
    }
    if let Some(u) = &spec.run_as {
        f.push(("run as", u.clone()));
    }
    if let Some(w) = &spec.workdir {
        f.push(("workdir", w.clone()));
    }
    f
}

/// The next fire times in the job's zone, each with the UTC offset change before it, if any.
fn next_fires(
    schedule: &Schedule,
    rec: &JobRecord,
    tz: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
) -> Vec<(String, String, Option<String>)> {
    let after = rec
        .next_fire_at
        .map_or(now, |t| t - jiff::SignedDuration::from_micros(1));
    let times = schedule.upcoming(after, tz, rec.created_at, NEXT_FIRES);
    let mut prev = tz.to_offset(after);
    times
        .into_iter()
        .map(|t| {
            let off = tz.to_offset(t);
            let dst = (off != prev).then(|| format!("clocks change: UTC{prev} → UTC{off}"));
            prev = off;
            (local_time(t, tz), relative(t, now), dst)
        })
        .collect()
}

/// `GET /ui/jobs/{name}`.
pub async fn page(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    q: Result<Query<JobQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    match job_page(&s, Nav::new(&s, &caller, &session), &name, q).await {
        Ok(Some(page)) => render(&page),
        Ok(None) => message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("There is no job `{name}`."),
        ),
        Err(e) => message_page(e.status, "Error", &e.message),
    }
}

async fn job_page(
    s: &AppState,
    nav: Nav,
    name: &str,
    q: JobQuery,
) -> Result<Option<JobPage>, ApiError> {
    let Some(rec) = s.store.get_job(name).await? else {
        return Ok(None);
    };
    let now = tempora_store::clock::now();
    let spec = crate::jobs::masked(&rec.spec).into_owned();
    let tz = parse_timezone(&spec.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let schedule = spec
        .schedule
        .as_deref()
        .and_then(|e| Schedule::parse(e).ok());
    let words = schedule.as_ref().map(|sch| sch.describe(&spec.timezone));
    let fires = match &schedule {
        Some(sch) if !spec.paused => next_fires(sch, &rec, &tz, now),
        _ => Vec::new(),
    };
    let trigger_text = if spec.parents.is_empty() {
        "No schedule: it runs when triggered.".to_owned()
    } else {
        format!("Runs after its parents: {}.", spec.parents.join(", "))
    };
    let children: Vec<String> = s
        .store
        .dependency_edges()
        .await?
        .into_iter()
        .filter(|(p, _)| p == name)
        .map(|(_, c)| c)
        .collect();
    let delete_warning = if children.is_empty() {
        format!("Delete job {name} and its run history?")
    } else {
        format!(
            "Jobs {} depend on {name}: they lose it as a parent. Delete job {name} and its run history?",
            children.join(", ")
        )
    };
    let run_state: Option<RunState> = q.state.parse().ok();
    let trigger: Option<Trigger> = q.trigger.parse().ok();
    let filter = RunFilter {
        job: Some(name.to_owned()),
        state: run_state,
        trigger,
        ..RunFilter::default()
    };
    let runs = s.store.search_runs(&filter, q.before, HISTORY).await?;
    let next_before = (runs.len() as u32 == HISTORY)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    let running = crate::find::running_jobs(s.store.as_ref()).await?;
    Ok(Some(JobPage {
        state: crate::find::state_word(&rec, &running),
        nav,
        name: name.to_owned(),
        description: spec.description.clone(),
        paused: spec.paused,
        delete_warning,
        words,
        trigger_text,
        next_fires: fires,
        fields: fields_of(&spec),
        yaml: serde_yaml_ng::to_string(&spec).unwrap_or_default(),
        runs: runs.iter().map(|r| RunRow::of(r, &tz)).collect(),
        next_before,
        run_state: run_state.map(|r| r.as_str().to_owned()).unwrap_or_default(),
        trigger: trigger.map(|t| t.as_str().to_owned()).unwrap_or_default(),
        run_states: vec![
            ("", "Any state"),
            ("queued", "Queued"),
            ("running", "Running"),
            ("succeeded", "Succeeded"),
            ("failed", "Failed"),
            ("timed_out", "Timed out"),
            ("cancelled", "Cancelled"),
            ("lost", "Lost"),
            ("skipped", "Skipped"),
        ],
        triggers: vec![
            ("", "Any trigger"),
            ("schedule", "Schedule"),
            ("manual", "Manual"),
            ("retry", "Retry"),
            ("dependency", "Dependency"),
            ("backfill", "Backfill"),
        ],
    }))
}

/// An htmx answer that sends the browser to `to`.
fn go(to: &str) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert("hx-redirect", v);
    }
    res
}

/// An action's refusal, shown where the page shows messages.
fn refused(e: ApiError) -> Response {
    // Its own status (the audit log records only successes); the pages' htmx shows error
    // answers too (assets/tempora.js), here in the page's message area.
    let mut res = super::notice(e.status, &e.message);
    res.headers_mut()
        .insert("hx-retarget", HeaderValue::from_static("#flash"));
    res.headers_mut()
        .insert("hx-reswap", HeaderValue::from_static("innerHTML"));
    res
}

/// The "run with…" form of a job's page (all optional: the plain button sends none).
#[derive(Debug, Default, Deserialize)]
pub struct RunForm {
    /// `KEY=VALUE` lines added to the run's environment (editor).
    #[serde(default)]
    pub env: String,
    /// Arguments, one per line, replacing the job's (editor).
    #[serde(default)]
    pub arguments: String,
    /// Run even if the overlap policy would not.
    #[serde(default)]
    pub force: Option<String>,
}

/// `POST /ui/jobs/{name}/run`: trigger a run now (with the form's overrides, under the API's
/// rules) and open its page.
pub async fn run_now(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    form: Result<axum::Form<RunForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let f = form.map(|axum::Form(f)| f).unwrap_or_default();
    let env = match super::edit::pairs("env", &f.env) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        Ok(_) => Default::default(),
        Err(e) => return refused(e),
    };
    let arguments: Vec<String> = f
        .arguments
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let body = crate::runs::TriggerBody {
        env,
        arguments: (!arguments.is_empty()).then_some(arguments),
        force: f.force.is_some(),
    };
    match crate::runs::trigger_run(&s, &caller, &name, body).await {
        Ok((run, note)) => {
            tracing::info!(message = "run triggered (web UI)", job = %name, run_id = run.id);
            note.attach(go(&format!("/ui/runs/{}", run.id)))
        }
        Err(e) => refused(e),
    }
}

async fn set_paused(s: &AppState, name: &str, paused: bool) -> Response {
    match crate::jobs::set_paused(s, name, paused).await {
        Ok(_) => {
            let mut res = StatusCode::NO_CONTENT.into_response();
            res.headers_mut()
                .insert("hx-refresh", HeaderValue::from_static("true"));
            res
        }
        Err(e) => refused(e),
    }
}

/// `POST /ui/jobs/{name}/pause`.
pub async fn pause(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    set_paused(&s, &name, true).await
}

/// `POST /ui/jobs/{name}/resume`.
pub async fn resume(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    set_paused(&s, &name, false).await
}

/// `DELETE /ui/jobs/{name}`: delete it (its children lose it as a parent, as the page warned)
/// and go back to the overview.
pub async fn delete(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match crate::jobs::delete_job(&s, &name, true).await {
        Ok(()) => go("/"),
        Err(e) => refused(e),
    }
}
