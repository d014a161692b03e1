//! Creating and editing a job in a form (`/ui/new`, `/ui/jobs/{name}/edit`), with the same
//! checks as the API (the form becomes the API's JSON and goes through the same parser and
//! [`crate::jobs::save`]): a refused field is named next to it and nothing is saved. The
//! schedule is previewed as it is typed (`/ui/schedules/preview`).

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tempora_core::job::JobSpec;
use tempora_store::PutMode;

use super::session::Session;
use super::{Nav, local_time, message_page, relative, render};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// The form as sent: every field text (checkboxes are present when ticked).
#[derive(Debug, Default, Deserialize)]
#[allow(missing_docs)]
pub struct JobForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub shell: Option<String>,
    #[serde(default)]
    pub arguments: String,
    #[serde(default)]
    pub schedule: String,
    #[serde(default)]
    pub timezone: String,
    #[serde(default)]
    pub parents: String,
    #[serde(default)]
    pub env: String,
    #[serde(default)]
    pub secrets: String,
    #[serde(default)]
    pub workdir: String,
    #[serde(default)]
    pub timeout: String,
    #[serde(default)]
    pub retries: String,
    #[serde(default)]
    pub retry_backoff: String,
    #[serde(default)]
    pub retry_backoff_max: String,
    #[serde(default)]
    pub concurrency: String,
    #[serde(default)]
    pub misfire: String,
    #[serde(default)]
    pub epsilon: String,
    #[serde(default)]
    pub paused: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub labels: String,
    #[serde(default)]
    pub selector: String,
    #[serde(default)]
    pub run_as: String,
    #[serde(default)]
    pub soft_error: Option<String>,
    #[serde(default, rename = "async")]
    pub is_async: Option<String>,
}

/// The form page (new or edit).
#[derive(Template)]
#[template(path = "job_form.html")]
pub struct FormPage {
    nav: Nav,
    /// The job edited (None: a new job).
    editing: Option<String>,
    action: String,
    f: JobForm,
    /// Field → message.
    errors: BTreeMap<String, String>,
    /// A message that names no field of the form.
    general: Option<String>,
}

impl FormPage {
    fn error(&self, field: &str) -> String {
        self.errors.get(field).cloned().unwrap_or_default()
    }
}

fn lines(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A stored job as the form shows it (secret values as `***`: sent back unchanged, they keep
/// the stored values).
fn form_of(spec: &JobSpec) -> JobForm {
    let d = |d: std::time::Duration| tempora_core::duration::format_duration(d);
    JobForm {
        name: spec.name.clone(),
        command: spec.command.clone(),
        shell: spec.shell.then(|| "on".to_owned()),
        arguments: spec.arguments.join("\n"),
        schedule: spec.schedule.clone().unwrap_or_default(),
        timezone: spec.timezone.clone(),
        parents: spec.parents.join(", "),
        env: lines(&spec.env),
        secrets: spec
            .secrets
            .keys()
            .map(|k| format!("{k}={}", tempora_core::secret::MASK))
            .collect::<Vec<_>>()
            .join("\n"),
        workdir: spec.workdir.clone().unwrap_or_default(),
        timeout: spec.timeout.map(d).unwrap_or_default(),
        retries: spec.retries.to_string(),
        retry_backoff: d(spec.retry_backoff),
        retry_backoff_max: d(spec.retry_backoff_max),
        concurrency: format!("{:?}", spec.concurrency).to_lowercase(),
        misfire: serde_json::to_value(spec.misfire)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        epsilon: d(spec.epsilon),
        paused: spec.paused.then(|| "on".to_owned()),
        description: spec.description.clone().unwrap_or_default(),
        owner: spec.owner.clone().unwrap_or_default(),
        labels: lines(&spec.labels),
        selector: lines(&spec.selector),
        run_as: spec.run_as.clone().unwrap_or_default(),
        soft_error: spec.soft_error.then(|| "on".to_owned()),
        is_async: spec.is_async.then(|| "on".to_owned()),
    }
}

/// `KEY=VALUE` lines as a JSON object; a line without `=` is refused naming `field`.
pub(crate) fn pairs(field: &str, text: &str) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(ApiError::field(
                "invalid_value",
                field,
                format!("line {}: `KEY=VALUE` expected, not `{line}`", i + 1),
            ));
        };
        m.insert(k.trim().to_owned(), Value::from(v.trim()));
    }
    Ok(Value::Object(m))
}

/// The form as the API's JSON job, parsed by the API's parser (so every message is the
/// API's, naming the field).
fn spec_of(f: &JobForm, stored: Option<&JobSpec>) -> Result<JobSpec, ApiError> {
    let mut o = Map::new();
    let text = |o: &mut Map<String, Value>, k: &str, v: &str| {
        if !v.trim().is_empty() {
            o.insert(k.to_owned(), Value::from(v.trim()));
        }
    };
    text(&mut o, "name", &f.name);
    o.insert("command".into(), Value::from(f.command.trim()));
    o.insert("shell".into(), Value::from(f.shell.is_some()));
    let args: Vec<&str> = f.arguments.lines().filter(|l| !l.is_empty()).collect();
    if !args.is_empty() {
        o.insert("arguments".into(), json!(args));
    }
    text(&mut o, "schedule", &f.schedule);
    text(&mut o, "timezone", &f.timezone);
    let parents: Vec<&str> = f
        .parents
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if !parents.is_empty() {
        o.insert("parents".into(), json!(parents));
    }
    o.insert("env".into(), pairs("env", &f.env)?);
    o.insert("secrets".into(), pairs("secrets", &f.secrets)?);
    o.insert("labels".into(), pairs("labels", &f.labels)?);
    o.insert("selector".into(), pairs("selector", &f.selector)?);
    for (k, v) in [
        ("workdir", &f.workdir),
        ("timeout", &f.timeout),
        ("retry_backoff", &f.retry_backoff),
        ("retry_backoff_max", &f.retry_backoff_max),
        ("concurrency", &f.concurrency),
        ("misfire", &f.misfire),
        ("epsilon", &f.epsilon),
        ("description", &f.description),
        ("owner", &f.owner),
        ("run_as", &f.run_as),
    ] {
        text(&mut o, k, v);
    }
    if !f.retries.trim().is_empty() {
        let n = f.retries.trim();
        o.insert(
            "retries".into(),
            n.parse::<u64>()
                .map_or_else(|_| Value::from(n), Value::from),
        );
    }
    o.insert("paused".into(), Value::from(f.paused.is_some()));
    o.insert("soft_error".into(), Value::from(f.soft_error.is_some()));
    o.insert("async".into(), Value::from(f.is_async.is_some()));
    let bytes = serde_json::to_vec(&Value::Object(o)).unwrap_or_default();
    let mut spec: JobSpec = crate::extract::parse_json(&bytes)?;
    // What the form does not show is kept: the Chronos fields of a Chronos job, the request
    // of an HTTP job and the artifact of an artifact job (when no command replaces them), the
    // container of a container job (its
    // command is the form's), the notification rules.
    if let Some(s) = stored {
        spec.chronos = s.chronos.clone();
        if spec.command.is_empty() {
            spec.http = s.http.clone();
            spec.artifact = s.artifact.clone();
            spec.interpreter = s.interpreter.clone();
        }
        spec.container = s.container.clone();
        spec.notify = s.notify.clone();
    }
    Ok(spec)
}

/// The form field an API error names (`env.FOO` → `env`).
fn form_field(field: &str) -> String {
    let f = field.split(['.', '[']).next().unwrap_or(field);
    match f {
        "" | "body" => String::new(),
        f => f.to_owned(),
    }
}

const FIELDS: [&str; 25] = [
    "name",
    "command",
    "shell",
    "arguments",
    "schedule",
    "timezone",
    "parents",
    "env",
    "secrets",
    "workdir",
    "timeout",
    "retries",
    "retry_backoff",
    "retry_backoff_max",
    "concurrency",
    "misfire",
    "epsilon",
    "paused",
    "description",
    "owner",
    "labels",
    "selector",
    "run_as",
    "soft_error",
    "async",
];

fn refused_form(page: &mut FormPage, e: ApiError) {
    let field = e.field.as_deref().map(form_field).unwrap_or_default();
    if FIELDS.contains(&field.as_str()) {
        page.errors.insert(field, e.message);
    } else {
        page.general = Some(e.message);
    }
}

/// `GET /ui/new`.
pub async fn new_page(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(session): Extension<Session>,
) -> Response {
    render(&FormPage {
        nav: Nav::new(&s, &caller, &session),
        editing: None,
        action: "/ui/new".to_owned(),
        f: JobForm {
            shell: Some("on".to_owned()),
            timezone: "UTC".to_owned(),
            ..JobForm::default()
        },
        errors: BTreeMap::new(),
        general: None,
    })
}

/// `GET /ui/jobs/{name}/edit`.
pub async fn edit_page(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Response {
    let rec = match s.store.get_job(&name).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return message_page(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("There is no job `{name}`."),
            );
        }
        Err(e) => {
            let e = ApiError::from(e);
            return message_page(e.status, "Error", &e.message);
        }
    };
    render(&FormPage {
        nav: Nav::new(&s, &caller, &session),
        action: format!("/ui/jobs/{}/edit", tempora_client::encode_segment(&name)),
        editing: Some(name),
        f: form_of(&crate::jobs::masked(&rec.spec)),
        errors: BTreeMap::new(),
        general: None,
    })
}

async fn submit(
    s: &AppState,
    caller: &Caller,
    session: &Session,
    editing: Option<String>,
    f: JobForm,
) -> Response {
    let stored = match &editing {
        Some(name) => s.store.get_job(name).await.ok().flatten().map(|r| r.spec),
        None => None,
    };
    let mut page = FormPage {
        nav: Nav::new(s, caller, session),
        action: editing.as_ref().map_or_else(
            || "/ui/new".to_owned(),
            |n| format!("/ui/jobs/{}/edit", tempora_client::encode_segment(n)),
        ),
        editing: editing.clone(),
        f,
        errors: BTreeMap::new(),
        general: None,
    };
    let spec = match spec_of(&page.f, stored.as_ref()) {
        Ok(mut spec) => {
            if let Some(name) = &editing {
                if !spec.name.is_empty() && spec.name != *name {
                    refused_form(
                        &mut page,
                        ApiError::field(
                            "name_mismatch",
                            "name",
                            "the name of a job cannot change (create a new job instead)",
                        ),
                    );
                    return refused_page(&page);
                }
                spec.name = name.clone();
            }
            spec
        }
        Err(e) => {
            refused_form(&mut page, e);
            return refused_page(&page);
        }
    };
    let mode = if editing.is_some() {
        PutMode::Upsert
    } else {
        PutMode::Create
    };
    match crate::jobs::save(s, caller, spec, mode).await {
        Ok(out) => {
            let to = format!(
                "/ui/jobs/{}",
                tempora_client::encode_segment(&out.record.spec.name)
            );
            let mut res = crate::auth::with_spec_note(StatusCode::NO_CONTENT, &out.record.spec);
            if let Ok(v) = HeaderValue::from_str(&to) {
                res.headers_mut().insert("hx-redirect", v);
            }
            res
        }
        Err(e) => {
            refused_form(&mut page, e);
            refused_page(&page)
        }
    }
}

/// The form again with what is wrong: 422, nothing saved (and nothing in the audit log).
fn refused_page(page: &FormPage) -> Response {
    let mut res = render(page);
    if res.status().is_success() {
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    res
}

/// `POST /ui/new`: create the job, or show the form again with what is wrong.
pub async fn create(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(session): Extension<Session>,
    form: Result<Form<JobForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) => submit(&s, &caller, &session, None, f).await,
        Err(e) => message_page(StatusCode::BAD_REQUEST, "Refused", &e.body_text()),
    }
}

/// `POST /ui/jobs/{name}/edit`: replace the job, or show the form again with what is wrong.
pub async fn update(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    form: Result<Form<JobForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) => submit(&s, &caller, &session, Some(name), f).await,
        Err(e) => message_page(StatusCode::BAD_REQUEST, "Refused", &e.body_text()),
    }
}

/// The schedule preview fragment.
#[derive(Template)]
#[template(path = "preview.html")]
pub struct PreviewPart {
    words: Option<String>,
    next: Vec<(String, String)>,
    error: Option<String>,
}

/// What the preview reads of the form.
#[derive(Debug, Default, Deserialize)]
pub struct PreviewForm {
    /// The expression.
    #[serde(default)]
    pub schedule: String,
    /// Its zone.
    #[serde(default)]
    pub timezone: String,
}

/// `POST /ui/schedules/preview`: the schedule in words and its next 5 fire times, or why it
/// does not parse.
pub async fn preview(
    form: Result<Form<PreviewForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let mut part = PreviewPart {
        words: None,
        next: Vec::new(),
        error: None,
    };
    let expr = f.schedule.trim();
    if expr.is_empty() {
        return render(&part);
    }
    let zone = Some(f.timezone.trim()).filter(|z| !z.is_empty());
    match crate::jobs::preview_schedule(expr, zone) {
        Ok((schedule, zone, tz)) => {
            let now = tempora_store::clock::now();
            part.words = Some(schedule.describe(zone));
            part.next = schedule
                .upcoming(schedule.listing_after(now), &tz, now, 5)
                .into_iter()
                .map(|t| (local_time(t, &tz), relative(t, now)))
                .collect();
        }
        Err(e) => part.error = Some(e.message),
    }
    let mut res = render(&part);
    *res.status_mut() = StatusCode::OK;
    res.into_response()
}
