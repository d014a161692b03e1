//! Results: the end of a run and what follows (counters, retry, a held run released, children), async completion, success marks, lost runs, cancels.

use super::*;

pub(super) const ENDED_COLS: &str = "id, job, origin, scheduled_for, attempt, overrides";

pub(super) fn ended_from_row(r: &Row) -> TxResult<Ended> {
    let attempt: i64 = r.try_get(4)?;
    Ok(Ended {
        id: r.try_get(0)?,
        job: r.try_get(1)?,
        origin: r.try_get(2)?,
        scheduled_for: r.try_get(3)?,
        attempt: u32::try_from(attempt).map_err(crate::rows::corrupt)?,
        overrides: r.try_get(5)?,
    })
}

/// After a run reached a final state: the shared follow-up ([`txn::after_final`]).
pub(super) async fn after_final(
    c: &Conn,
    e: &Ended,
    state: RunState,
    now: Timestamp,
) -> TxResult<()> {
    txn::after_final(&PgTx(c), e, state, now).await
}

/// The follow-ups of a batch of ended runs ([`txn::after_finals`]).
pub(super) async fn after_finals(
    c: &Conn,
    ended: &[(&Ended, RunState)],
    now: Timestamp,
) -> TxResult<()> {
    txn::after_finals(&PgTx(c), ended, now).await
}

/// Record worker results.
pub async fn finish_runs(
    c: &Conn,
    worker: &str,
    results: Vec<RunResult>,
    max_log: u64,
    now: Timestamp,
) -> TxResult<()> {
    let mut done: Vec<(Ended, RunState)> = Vec::with_capacity(results.len());
    for r in results {
        if r.awaits_completion {
            finish_async(c, worker, &r, max_log, now).await?;
            continue;
        }
        let ended = c
            .query_opt(
                &format!(
                    "UPDATE runs SET state = $3, finished_at = GREATEST($4, queued_at), \
                     started_at = CASE WHEN $5::bigint IS NULL THEN started_at \
                                  ELSE GREATEST($5, queued_at) END, \
                     exit_code = $6, signal = $7, \
                     error = $8, lease_expires_at = NULL \
                     WHERE id = $1 AND state = 'running' AND coalesce(worker, '') = $2 RETURNING {ENDED_COLS}"
                ),
                &[
                    &r.run_id,
                    &worker,
                    &r.state.as_str(),
                    &us(r.finished_at),
                    &r.started_at.map(us),
                    &r.exit_code,
                    &r.signal,
                    &r.error,
                ],
            )
            .await?;
        let Some(ended) = ended else {
            tracing::debug!(
                message = "result for a run no longer held by this worker",
                run_id = r.run_id,
                worker
            );
            continue;
        };
        let ended = ended_from_row(&ended)?;
        append_log(c, r.run_id, &r.log_tail, max_log).await?;
        done.push((ended, r.state));
    }
    let refs: Vec<(&Ended, RunState)> = done.iter().map(|(e, s)| (e, *s)).collect();
    after_finals(c, &refs, now).await
}

/// An async run's process exited 0: wait for the completion call, or apply the outcome it
/// already reported.
pub(super) async fn finish_async(
    c: &Conn,
    worker: &str,
    r: &RunResult,
    max_log: u64,
    now: Timestamp,
) -> TxResult<()> {
    let waiting = c
        .execute(
            "UPDATE runs SET awaiting_completion = true, \
             started_at = CASE WHEN $3::bigint IS NULL THEN started_at \
                          ELSE GREATEST($3, queued_at) END, \
             exit_code = $4, lease_expires_at = NULL, \
             error = 'waiting for the completion call PUT /scheduler/task/{taskId} (async job)' \
             WHERE id = $1 AND state = 'running' AND coalesce(worker, '') = $2 AND completion IS NULL",
            &[&r.run_id, &worker, &r.started_at.map(us), &r.exit_code],
        )
        .await?;
    if waiting == 0 {
        let ended = c
            .query_opt(
                &format!(
                    "UPDATE runs SET state = completion, finished_at = GREATEST($3, queued_at), \
                     started_at = CASE WHEN $4::bigint IS NULL THEN started_at \
                                  ELSE GREATEST($4, queued_at) END, \
                     exit_code = $5, \
                     lease_expires_at = NULL, \
                     error = CASE completion WHEN 'failed' THEN 'the job reported failure' END \
                     WHERE id = $1 AND state = 'running' AND coalesce(worker, '') = $2 \
                     AND completion IS NOT NULL \
                     RETURNING {ENDED_COLS}, state"
                ),
                &[
                    &r.run_id,
                    &worker,
                    &us(r.finished_at),
                    &r.started_at.map(us),
                    &r.exit_code,
                ],
            )
            .await?;
        if let Some(row) = ended {
            let e = ended_from_row(&row)?;
            let state: String = row.try_get(6)?;
            append_log(c, r.run_id, &r.log_tail, max_log).await?;
            let state = state.parse::<RunState>().unwrap_or(RunState::Failed);
            after_final(c, &e, state, now).await?;
        }
        return Ok(());
    }
    append_log(c, r.run_id, &r.log_tail, max_log).await
}

/// Apply an async run's reported outcome.
pub async fn complete_run(
    c: &Conn,
    id: i64,
    state: RunState,
    error: Option<&str>,
    now: Timestamp,
) -> TxResult<Run> {
    let ended = c
        .query_opt(
            &format!(
                "UPDATE runs SET state = $2, finished_at = $3, awaiting_completion = false, \
                 error = $4 \
                 WHERE id = $1 AND state = 'running' AND awaiting_completion \
                 RETURNING {ENDED_COLS}"
            ),
            &[&id, &state.as_str(), &us(now), &error],
        )
        .await?;
    match ended {
        Some(row) => {
            let e = ended_from_row(&row)?;
            after_final(c, &e, state, now).await?;
        }
        None => {
            let n = c
                .execute(
                    "UPDATE runs SET completion = $2 WHERE id = $1 AND state = 'running'",
                    &[&id, &state.as_str()],
                )
                .await?;
            if n == 0 {
                let run = load_run(c, id).await?.ok_or(StoreError::RunNotFound(id))?;
                return Err(StoreError::Conflict(format!(
                    "run {id} has already ended ({})",
                    run.state
                ))
                .into());
            }
        }
    }
    Ok(load_run(c, id).await?.ok_or(StoreError::RunNotFound(id))?)
}

/// Record a success without running the job.
pub async fn mark_success(c: &Conn, job: &str, now: Timestamp) -> TxResult<Run> {
    if lock_job(c, job).await?.is_none() {
        return Err(StoreError::JobNotFound(job.to_owned()).into());
    }
    let id = insert_run(
        c,
        &NewRun {
            job,
            trigger: Trigger::Manual,
            origin: Trigger::Manual,
            scheduled_for: now,
            attempt: 1,
            state: RunState::Succeeded,
            hold: false,
            now,
            not_before: now,
            error: Some("marked successful through the API; nothing ran"),
            overrides: &RunOverrides::default(),
            triggered_by: &[],
        },
    )
    .await?
    .ok_or_else(|| StoreError::Backend("success record was not inserted".into()))?;
    c.execute(
        "UPDATE runs SET started_at = $2 WHERE id = $1",
        &[&id, &us(now)],
    )
    .await?;
    // The job's own progress towards its parents starts over, as after a run.
    c.execute("DELETE FROM dependency_progress WHERE child = $1", &[&job])
        .await?;
    let e = Ended {
        id,
        job: job.to_owned(),
        origin: Trigger::Manual.as_str().to_owned(),
        scheduled_for: us(now),
        attempt: 1,
        overrides: None,
    };
    after_final(c, &e, RunState::Succeeded, now).await?;
    Ok(load_run(c, id).await?.ok_or(StoreError::RunNotFound(id))?)
}

/// Apply the follow-ups of runs just marked lost.
pub(super) async fn mark_lost(c: &Conn, rows: Vec<Row>, now: Timestamp) -> TxResult<Vec<i64>> {
    let ended = rows
        .iter()
        .map(ended_from_row)
        .collect::<TxResult<Vec<_>>>()?;
    let refs: Vec<(&Ended, RunState)> = ended.iter().map(|e| (e, RunState::Lost)).collect();
    after_finals(c, &refs, now).await?;
    Ok(ended.into_iter().map(|e| e.id).collect())
}

/// All running runs of `worker` become lost.
pub async fn recover_worker(
    c: &Conn,
    worker: &str,
    reason: &str,
    now: Timestamp,
) -> TxResult<Vec<i64>> {
    let rows = c
        .query(
            &format!(
                "UPDATE runs SET state = 'lost', finished_at = $2, error = $3, \
                 lease_expires_at = NULL \
                 WHERE state = 'running' AND worker = $1 AND NOT awaiting_completion \
                 RETURNING {ENDED_COLS}"
            ),
            &[&worker, &us(now), &reason],
        )
        .await?;
    mark_lost(c, rows, now).await
}

pub async fn reap_expired(c: &Conn, now: Timestamp) -> TxResult<Vec<i64>> {
    let rows = c
        .query(
            &format!(
                "UPDATE runs SET state = 'lost', finished_at = $1, \
                 error = 'lost: the worker stopped renewing its lease', lease_expires_at = NULL \
                 WHERE state = 'running' AND lease_expires_at < $1 RETURNING {ENDED_COLS}"
            ),
            &[&us(now)],
        )
        .await?;
    mark_lost(c, rows, now).await
}

/// Cancel a run.
pub async fn request_cancel(c: &Conn, id: i64, now: Timestamp) -> TxResult<Run> {
    let run = load_run(c, id).await?.ok_or(StoreError::RunNotFound(id))?;
    match run.state {
        RunState::Queued => {
            let ended = c
                .query_opt(
                    &format!(
                        "UPDATE runs SET state = 'cancelled', finished_at = $2, hold = false, \
                         error = 'cancelled before it started' \
                         WHERE id = $1 AND state = 'queued' RETURNING {ENDED_COLS}"
                    ),
                    &[&id, &us(now)],
                )
                .await?;
            if let Some(row) = ended {
                let e = ended_from_row(&row)?;
                after_final(c, &e, RunState::Cancelled, now).await?;
            }
        }
        RunState::Running => {
            // An async run waiting for its completion call has no process left: it ends now.
            let ended = c
                .query_opt(
                    &format!(
                        "UPDATE runs SET state = 'cancelled', finished_at = $2, \
                         awaiting_completion = false, \
                         error = 'cancelled while waiting for the completion call' \
                         WHERE id = $1 AND state = 'running' AND awaiting_completion \
                         RETURNING {ENDED_COLS}"
                    ),
                    &[&id, &us(now)],
                )
                .await?;
            match ended {
                Some(row) => {
                    let e = ended_from_row(&row)?;
                    after_final(c, &e, RunState::Cancelled, now).await?;
                }
                None => {
                    c.execute(
                        "UPDATE runs SET cancel_requested = true WHERE id = $1",
                        &[&id],
                    )
                    .await?;
                }
            }
        }
        s => {
            return Err(StoreError::Conflict(format!("run {id} has already ended ({s})")).into());
        }
    }
    Ok(load_run(c, id).await?.ok_or(StoreError::RunNotFound(id))?)
}
