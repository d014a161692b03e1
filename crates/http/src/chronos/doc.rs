//! The Chronos API's OpenAPI document. Chronos's shapes are fixed by Chronos and its clients, so
//! they are described here field by field (`tempora_core::chronos::render` writes them); the
//! paths are generated from the handlers' annotations.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::openapi::Security;

/// The Chronos document (paths relative to `/scheduler`; Chronos 3.x clients use
/// `/v1/scheduler`, which serves the same operations).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tempora: the Chronos API",
        description = "The REST API of Chronos 2.x/3.x, served over tempora's jobs so that \
            Chronos clients keep working: under `/scheduler` and `/v1/scheduler`. Errors are \
            Chronos's `{\"status\", \"message\"}` with 400 for bad input and unknown jobs. \
            Every operation needs a tempora token (`Authorization: Bearer …`).",
        license(name = "Apache-2.0")
    ),
    servers((url = "/scheduler"), (url = "/v1/scheduler")),
    paths(
        super::jobs::list, super::jobs::search, super::jobs::summary, super::jobs::get_job,
        super::jobs::start, super::jobs::delete, super::jobs::save_scheduled,
        super::jobs::save_dependent, super::jobs::graph_dot, super::jobs::graph_csv,
        super::jobs::leader, super::tasks::mark_success, super::tasks::complete_task,
        super::tasks::kill, super::stats::job_stat, super::stats::stats,
    ),
    components(schemas(ChronosError, crate::error::ErrorBody)),
    modifiers(&Security),
    tags((name = "chronos", description = "Chronos jobs, tasks, graph and statistics"))
)]
pub struct ChronosDoc;

/// Chronos's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChronosError {
    /// The status's reason phrase (`Bad Request`).
    pub status: String,
    /// What went wrong.
    pub message: String,
}

/// A Chronos job, as Chronos clients send and read it. Fields tempora has no use for (Mesos
/// resources, URIs, constraints) are kept and given back.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChronosJob {
    /// Job name.
    pub name: String,
    /// The command, run by `/bin/sh -c` when `shell` is true.
    pub command: String,
    /// ISO 8601 repeating interval `R[n]/start/period` (scheduled jobs).
    pub schedule: Option<String>,
    /// Zone of the schedule.
    pub schedule_time_zone: Option<String>,
    /// Parent jobs (dependent jobs).
    pub parents: Option<Vec<String>>,
    /// How late a run may still start (ISO 8601 duration, `PT60S`).
    pub epsilon: Option<String>,
    /// Email addresses of the owners.
    pub owner: Option<String>,
    /// Owner's name.
    pub owner_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// The job reports its own completion (`PUT /task/{taskId}`).
    pub r#async: Option<bool>,
    /// Paused.
    pub disabled: Option<bool>,
    /// Retries of a failed run.
    pub retries: Option<u32>,
    /// Run the command through a shell.
    pub shell: Option<bool>,
    /// Arguments (when `shell` is false).
    pub arguments: Option<Vec<String>>,
    /// Environment of the process.
    pub environment_variables: Option<Vec<ChronosVariable>>,
    /// Failures do not count as errors.
    pub soft_error: Option<bool>,
    /// Run as this user.
    pub run_as_user: Option<String>,
    /// Kill a run after this many milliseconds.
    pub max_completion_time: Option<u64>,
    /// Several runs may overlap.
    pub concurrent: Option<bool>,
    /// A Docker container (stored and given back).
    #[schema(value_type = Option<Object>)]
    pub container: Option<serde_json::Value>,
    /// Mesos CPUs (stored).
    pub cpus: Option<f64>,
    /// Mesos memory in MiB (stored).
    pub mem: Option<f64>,
    /// Mesos disk in MiB (stored).
    pub disk: Option<f64>,
    /// Successful runs (answers only).
    pub success_count: Option<u64>,
    /// Failed runs (answers only).
    pub error_count: Option<u64>,
    /// Failures since the last success (answers only).
    pub errors_since_last_success: Option<u64>,
    /// Last success, ISO 8601 or empty (answers only).
    pub last_success: Option<String>,
    /// Last error, ISO 8601 or empty (answers only).
    pub last_error: Option<String>,
}

/// One variable of `environmentVariables`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChronosVariable {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// The body of `PUT /task/{taskId}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskCompletion {
    /// 0: the task succeeded; anything else: it failed.
    pub status_code: i64,
}
