//! The task routes: a job marked successful, an async task completed, a job's tasks killed.

use super::*;

/// `PUT /scheduler/job/success/{name}`: record a success without running; answers
/// `marked job X as successful: true|false` (false for an unknown job, as Chronos).
#[utoipa::path(
    put,
    path = "/job/success/{name}",
    operation_id = "chronosMarkSuccess",
    tag = "chronos",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, description = "`marked job <name> as successful: true` (`false` for an unknown job, as Chronos answers)", body = String, content_type = "text/plain"), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn mark_success(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ChronosResult<Response> {
    let ok = match s
        .store
        .mark_success(&name, tempora_store::clock::now())
        .await
    {
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
pub(super) struct Completion {
    status_code: i64,
}

/// `PUT /scheduler/task/{taskId}` with `{"statusCode": n}`: an async job reports its outcome
/// (0 = success, anything else = failure).
#[utoipa::path(
    put,
    path = "/task/{task_id}",
    operation_id = "chronosCompleteTask",
    tag = "chronos",
    params(("task_id" = String, Path, description = "`ct:<due millis>:<attempt>:<job>:<arguments>`")),
    request_body = super::doc::TaskCompletion,
    responses((status = 204, description = "Recorded"), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn complete_task(
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
        .complete_run(run.id, state, error, tempora_store::clock::now())
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
pub(super) async fn find_task(store: &dyn Store, id: &TaskId) -> ChronosResult<Option<Run>> {
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
#[utoipa::path(
    delete,
    path = "/task/kill/{name}",
    operation_id = "chronosKillTasks",
    tag = "chronos",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 204, description = "The job's queued and running tasks are being stopped"), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn kill(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ChronosResult<StatusCode> {
    job_or_400(s.store.as_ref(), &name).await?;
    let now = tempora_store::clock::now();
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
