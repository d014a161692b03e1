//! `POST /api/v1/jobs/{name}/backfill`: runs for the past occurrences of a job's schedule in
//! `[from, to)`, each at most once (an occurrence that ran, or was backfilled before, is not run
//! again), one after another. `dry_run` lists the occurrences and creates nothing.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tempora_core::job::validate_name;
use tempora_core::schedule::{Schedule, parse_timezone};
use tempora_core::time::rfc3339_in_zone;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::jobs::parse_instant;

/// Occurrences a backfill may create unless `max` allows more.
pub const DEFAULT_MAX: u64 = 10_000;
/// `max` may not exceed this: one backfill is one transaction.
pub const MAX_MAX: u64 = 100_000;

/// Body of `POST /api/v1/jobs/{name}/backfill`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillBody {
    /// First instant of the range (inclusive), RFC 3339.
    pub from: String,
    /// End of the range (exclusive), RFC 3339; not after now.
    pub to: String,
    /// Most occurrences to create (default 10,000; at most 100,000).
    #[serde(default)]
    pub max: Option<u64>,
    /// List the occurrences, create nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a backfill created, or would create (`dry_run`).
#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillAnswer {
    /// The job.
    pub job: String,
    /// True when nothing was created (a dry run).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The occurrences of the range, RFC 3339 in the job's zone.
    pub occurrences: Vec<String>,
    /// The runs created, oldest occurrence first (absent on a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Vec<i64>>,
    /// Occurrences that had a run already, scheduled or backfilled (absent on a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing: Option<u64>,
    /// Occurrences whose run retention deleted: not run again (absent on a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned: Option<u64>,
}

/// `POST /api/v1/jobs/{name}/backfill`.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{name}/backfill",
    operation_id = "backfillJob",
    tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    request_body = BackfillBody,
    responses((status = 200, description = "Nothing new to create, or a dry run", body = BackfillAnswer), (status = 201, description = "Runs created", body = BackfillAnswer), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 404, description = "Job not found", body = crate::error::ErrorBody), (status = 409, description = "The job has no schedule to backfill", body = crate::error::ErrorBody))
)]
pub async fn backfill(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<BackfillBody>,
) -> ApiResult<Response> {
    if validate_name(&name).is_err() {
        return Err(ApiError::not_found(format!("job `{name}` not found")));
    }
    let from = parse_instant("from", &body.from)?;
    let to = parse_instant("to", &body.to)?;
    let now = tempora_store::clock::now();
    if to <= from {
        return Err(ApiError::field(
            "invalid_value",
            "to",
            format!("`to` ({to}) must be after `from` ({from})"),
        ));
    }
    if to > now {
        return Err(ApiError::field(
            "invalid_value",
            "to",
            format!(
                "`to` ({to}) is in the future: a backfill runs past occurrences; the scheduler runs the others"
            ),
        ));
    }
    let max = body.max.unwrap_or(DEFAULT_MAX);
    if max == 0 || max > MAX_MAX {
        return Err(ApiError::field(
            "invalid_value",
            "max",
            format!("`max` must be between 1 and {MAX_MAX}"),
        ));
    }
    let rec = s
        .store
        .get_job(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job `{name}` not found")))?;
    let Some(expr) = rec.spec.schedule.as_deref() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_schedule",
            format!("job `{name}` has no schedule: there are no occurrences to backfill"),
        ));
    };
    let problem = |e: String| {
        ApiError::new(
            StatusCode::CONFLICT,
            "invalid_stored_job",
            format!("job `{name}`'s stored schedule cannot be read: {e}"),
        )
    };
    let schedule = Schedule::parse(expr).map_err(|e| problem(e.message))?;
    let tz = parse_timezone(&rec.spec.timezone).map_err(|e| problem(e.message))?;
    // Occurrences in [from, to): the first strictly after the instant just before `from`.
    let mut occurrences = Vec::new();
    let mut t = from - jiff::SignedDuration::from_micros(1);
    while let Some(next) = schedule.next_after(t, &tz, rec.created_at) {
        if next >= to {
            break;
        }
        if occurrences.len() as u64 == max {
            return Err(ApiError::field(
                "too_many_occurrences",
                "max",
                format!(
                    "[{from}, {to}) holds more than {max} occurrences of `{expr}`; narrow the range or raise `max` (at most {MAX_MAX})"
                ),
            ));
        }
        occurrences.push(next);
        t = next;
    }
    let shown: Vec<String> = occurrences
        .iter()
        .map(|t| rfc3339_in_zone(*t, &tz))
        .collect();
    if body.dry_run {
        return Ok(Json(BackfillAnswer {
            job: name,
            dry_run: true,
            occurrences: shown,
            created: None,
            existing: None,
            pruned: None,
        })
        .into_response());
    }
    let done = s.store.backfill(&name, occurrences, now).await?;
    tracing::info!(message = "backfill", job = %name, %from, %to, created = done.created.len(), existing = done.existing, pruned = done.pruned);
    s.work_ready.notify_one();
    let status = if done.created.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(BackfillAnswer {
            job: name,
            dry_run: false,
            occurrences: shown,
            created: Some(done.created),
            existing: Some(done.existing),
            pruned: Some(done.pruned),
        }),
    )
        .into_response())
}
