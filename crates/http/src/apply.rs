//! `POST /api/v1/apply` and `POST /api/v1/apply/plan`: a whole set of job files, applied in one
//! transaction or not at all (`tempora apply`), or only planned (`--dry-run`).
//!
//! Every check a job's own `PUT` makes is made for every job of the set, plus those of the set
//! as a whole (parents, cycles with the server's other jobs, taking over jobs not made by
//! `apply`); all problems are reported at once, and then nothing is written. The plan
//! (`tempora_core::apply`) says what happens to each job and which fields change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tempora_core::apply::{Action, Change, Desired, Plan};
use tempora_core::job::JobSpec;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{AuditNote, Caller};
use crate::error::{ApiError, ApiResult};

/// Largest body of an apply (a set of job files): 32 MiB.
pub const MAX_APPLY_BODY: usize = 32 * 1024 * 1024;
/// Most jobs in one apply.
pub const MAX_APPLY_JOBS: usize = 20_000;

/// Body of both routes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The jobs of the files.
    pub jobs: Vec<JobSpec>,
    /// Names of the jobs whose file sets `paused` explicitly (others keep the server's).
    #[serde(default)]
    pub paused_given: BTreeSet<String>,
    /// Delete managed jobs that are not in `jobs`.
    #[serde(default)]
    pub prune: bool,
    /// Take over existing jobs not made by `apply`.
    #[serde(default)]
    pub adopt: bool,
}

fn parse(body: &Bytes) -> ApiResult<ApplyRequest> {
    let req: ApplyRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::field("invalid_json", "jobs", format!("invalid body: {e}")))?;
    if req.jobs.len() > MAX_APPLY_JOBS {
        return Err(ApiError::field(
            "too_many",
            "jobs",
            format!("at most {MAX_APPLY_JOBS} jobs in one apply"),
        ));
    }
    Ok(req)
}

/// Check every job and the set, and plan. The specs to write have their secrets sealed.
async fn prepare(s: &AppState, caller: &Caller, req: ApplyRequest) -> ApiResult<Plan> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    let mut jobs = Vec::with_capacity(req.jobs.len());
    for mut spec in req.jobs {
        let checked = spec
            .take_zone_prefix()
            .and_then(|()| {
                tempora_core::chronos::tidy(&mut spec);
                spec.validate().map(|_| ())
            })
            .map_err(|v| format!("job `{}`: {}: {}", spec.name, v.field, v.message));
        if let Err(p) = checked {
            problems.push(p);
            continue;
        }
        if !names.insert(spec.name.clone()) {
            problems.push(format!("job `{}`: given twice", spec.name));
            continue;
        }
        crate::jobs::check_privileges(s, &spec, caller)?;
        crate::artifacts::check_job_artifact(s, &spec).await?;
        jobs.push(spec);
    }
    let mut current: BTreeMap<String, JobSpec> = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.store.list_jobs(after.as_deref(), 1000).await?;
        let full = page.len() == 1000;
        after = page.last().map(|r| r.spec.name.clone());
        current.extend(page.into_iter().map(|r| (r.spec.name.clone(), r.spec)));
        if !full {
            break;
        }
    }
    // A secret whose value is the one stored is no change: it becomes `***` (keep), so that
    // re-applying the same files is "unchanged". Every job's schedule is checked now too, so
    // that its problem is listed with those of the set.
    for spec in &mut jobs {
        if let Some(have) = current.get(&spec.name) {
            for (name, value) in spec.secrets.iter_mut() {
                let same = have
                    .secrets
                    .get(name)
                    .and_then(|sealed| s.secret_key.open(&spec.name, name, sealed).ok())
                    .is_some_and(|stored| stored == *value);
                if same {
                    *value = tempora_core::secret::MASK.to_owned();
                }
            }
        }
        if let Err(e) = crate::jobs::check_fires_again(spec, current.get(&spec.name)) {
            problems.push(described(&spec.name, &e));
        }
    }
    let desired = Desired {
        jobs,
        paused_given: req.paused_given,
        prune: req.prune,
        adopt: req.adopt,
    };
    let mut plan = match tempora_core::apply::plan(&desired, &current) {
        Ok(p) if problems.is_empty() => p,
        Ok(_) => return Err(refused(problems)),
        Err(more) => {
            problems.extend(more);
            return Err(refused(problems));
        }
    };
    for spec in &mut plan.puts {
        if let Err(e) = crate::jobs::seal_secrets(s, spec, current.get(&spec.name)) {
            problems.push(described(&spec.name, &e));
        }
    }
    if !problems.is_empty() {
        return Err(refused(problems));
    }
    Ok(plan)
}

/// A job's problem as listed: `job `x`: field: message`.
fn described(job: &str, e: &ApiError) -> String {
    match &e.field {
        Some(f) => format!("job `{job}`: {f}: {}", e.message),
        None => format!("job `{job}`: {}", e.message),
    }
}

/// 400 listing every problem.
fn refused(problems: Vec<String>) -> ApiError {
    let mut msg = format!("nothing applied: {} problem(s)", problems.len());
    for p in problems {
        msg.push_str("\n  ");
        msg.push_str(&p);
    }
    ApiError::field("invalid_jobs", "jobs", msg)
}

/// What an apply did, or would do.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplyPlan {
    /// True for `/apply/plan`: nothing was written.
    pub dry_run: bool,
    /// One entry per job of the set (and per pruned job).
    pub changes: Vec<Change>,
}

fn view(plan: Plan, dry_run: bool) -> ApplyPlan {
    ApplyPlan {
        dry_run,
        changes: plan.changes,
    }
}

/// `POST /api/v1/apply/plan`: what `apply` would do (nothing is written).
#[utoipa::path(
    post,
    path = "/api/v1/apply/plan",
    operation_id = "planApply",
    tag = "jobs",
    request_body = ApplyRequest,
    responses((status = 200, description = "What apply would do (nothing is written)", body = ApplyPlan), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 413, description = "Body over 32 MiB", body = crate::error::ErrorBody))
)]
pub async fn plan(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<ApplyPlan>> {
    let plan = prepare(&s, &caller, parse(&body)?).await?;
    Ok(Json(view(plan, true)))
}

/// `POST /api/v1/apply`: apply the set in one transaction.
#[utoipa::path(
    post,
    path = "/api/v1/apply",
    operation_id = "applyJobs",
    tag = "jobs",
    request_body = ApplyRequest,
    responses((status = 200, description = "Applied in one transaction", body = ApplyPlan), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 409, description = "The set raced another change", body = crate::error::ErrorBody), (status = 413, description = "Body over 32 MiB", body = crate::error::ErrorBody))
)]
pub async fn apply(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    let plan = prepare(&s, &caller, parse(&body)?).await?;
    s.store
        .apply_jobs(
            plan.puts.clone(),
            plan.deletes.clone(),
            tempora_store::clock::now(),
        )
        .await?;
    for spec in &plan.puts {
        s.scheduler.job_changed(&spec.name);
    }
    for name in &plan.deletes {
        s.scheduler.job_changed(name);
    }
    if !plan.deletes.is_empty() {
        s.stops_requested.notify_one();
    }
    let list = |a: Action| {
        plan.changes
            .iter()
            .filter(|c| c.action == a)
            .map(|c| c.job.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let detail = format!(
        "created: {}; updated: {}; deleted: {}",
        list(Action::Create),
        list(Action::Update),
        list(Action::Delete)
    );
    tracing::info!(message = "jobs applied", changes = %detail);
    let note = AuditNote {
        detail: Some(detail),
        ..AuditNote::default()
    };
    Ok(note.attach(Json(view(plan, false))))
}
