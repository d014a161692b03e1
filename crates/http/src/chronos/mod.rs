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

mod doc;
mod jobs;
mod stats;
mod tasks;

pub use doc::ChronosDoc;
use jobs::*;
pub use stats::metrics_json;
use stats::*;
use tasks::*;

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
