//! Results: the end of a run and what follows (counters, retry, a held run released, children), async completion, success marks, lost runs, cancels.

use super::*;

pub(super) const ENDED_COLS: &str = "id, job, origin, scheduled_for, attempt, overrides";

pub(super) fn ended_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Ended> {
    Ok(Ended {
        id: r.get(0)?,
        job: r.get(1)?,
        origin: r.get(2)?,
        scheduled_for: r.get(3)?,
        attempt: r.get(4)?,
        overrides: r.get(5)?,
    })
}

/// After a run reached a final state: the shared follow-up ([`txn::after_final`]).
pub(super) fn after_final(
    c: &Connection,
    e: &Ended,
    state: RunState,
    now: Timestamp,
) -> StoreResult<()> {
    sync(txn::after_final(&SqliteTx(c), e, state, now))
}

/// Record worker results.
pub fn finish_runs(
    c: &Connection,
    worker: &str,
    results: Vec<RunResult>,
    max_log: u64,
    now: Timestamp,
) -> StoreResult<()> {
    for r in results {
        if r.awaits_completion {
            finish_async(c, worker, &r, max_log, now)?;
            continue;
        }
        let ended: Option<Ended> = c
            .prepare_cached(&format!(
                "UPDATE runs SET state = ?3, finished_at = MAX(?4, queued_at), \
                 started_at = COALESCE(MAX(?5, queued_at), started_at), exit_code = ?6, \
                 signal = ?7, error = ?8, lease_expires_at = NULL \
                 WHERE id = ?1 AND state = 'running' AND worker = ?2 RETURNING {ENDED_COLS}"
            ))
            .map_err(db)?
            .query_row(
                params![
                    r.run_id,
                    worker,
                    r.state.as_str(),
                    us(r.finished_at),
                    r.started_at.map(us),
                    r.exit_code,
                    r.signal,
                    r.error
                ],
                ended_from_row,
            )
            .optional()
            .map_err(db)?;
        let Some(ended) = ended else {
            tracing::debug!(
                message = "result for a run no longer held by this worker",
                run_id = r.run_id,
                worker
            );
            continue;
        };
        append_log(c, r.run_id, &r.log_tail, max_log)?;
        after_final(c, &ended, r.state, now)?;
    }
    Ok(())
}

/// An async run's process exited 0: wait for the completion call, or apply the outcome it
/// already reported.
pub(super) fn finish_async(
    c: &Connection,
    worker: &str,
    r: &RunResult,
    max_log: u64,
    now: Timestamp,
) -> StoreResult<()> {
    let waiting = c
        .prepare_cached(
            "UPDATE runs SET awaiting_completion = 1, \
             started_at = COALESCE(MAX(?3, queued_at), started_at), exit_code = ?4, lease_expires_at = NULL, \
             error = 'waiting for the completion call PUT /scheduler/task/{taskId} (async job)' \
             WHERE id = ?1 AND state = 'running' AND worker = ?2 AND completion IS NULL",
        )
        .map_err(db)?
        .execute(params![r.run_id, worker, r.started_at.map(us), r.exit_code])
        .map_err(db)?;
    if waiting == 0 {
        let ended: Option<(Ended, String)> = c
            .prepare_cached(&format!(
                "UPDATE runs SET state = completion, finished_at = MAX(?3, queued_at), \
                 started_at = COALESCE(MAX(?4, queued_at), started_at), exit_code = ?5, \
                 lease_expires_at = NULL, \
                 error = CASE completion WHEN 'failed' THEN 'the job reported failure' END \
                 WHERE id = ?1 AND state = 'running' AND worker = ?2 AND completion IS NOT NULL \
                 RETURNING {ENDED_COLS}, state"
            ))
            .map_err(db)?
            .query_row(
                params![
                    r.run_id,
                    worker,
                    us(r.finished_at),
                    r.started_at.map(us),
                    r.exit_code
                ],
                |row| Ok((ended_from_row(row)?, row.get::<_, String>(6)?)),
            )
            .optional()
            .map_err(db)?;
        if let Some((e, state)) = ended {
            append_log(c, r.run_id, &r.log_tail, max_log)?;
            let state = state.parse::<RunState>().unwrap_or(RunState::Failed);
            after_final(c, &e, state, now)?;
        }
        return Ok(());
    }
    append_log(c, r.run_id, &r.log_tail, max_log)
}

/// Apply an async run's reported outcome.
pub fn complete_run(
    c: &Connection,
    id: i64,
    state: RunState,
    error: Option<&str>,
    now: Timestamp,
) -> StoreResult<Run> {
    let ended: Option<Ended> = c
        .prepare_cached(&format!(
            "UPDATE runs SET state = ?2, finished_at = ?3, awaiting_completion = 0, error = ?4 \
             WHERE id = ?1 AND state = 'running' AND awaiting_completion = 1 RETURNING {ENDED_COLS}"
        ))
        .map_err(db)?
        .query_row(params![id, state.as_str(), us(now), error], ended_from_row)
        .optional()
        .map_err(db)?;
    match ended {
        Some(e) => after_final(c, &e, state, now)?,
        None => {
            let n = c
                .prepare_cached(
                    "UPDATE runs SET completion = ?2 WHERE id = ?1 AND state = 'running'",
                )
                .map_err(db)?
                .execute(params![id, state.as_str()])
                .map_err(db)?;
            if n == 0 {
                let run = load_run(c, id)?.ok_or(StoreError::RunNotFound(id))?;
                return Err(StoreError::Conflict(format!(
                    "run {id} has already ended ({})",
                    run.state
                )));
            }
        }
    }
    load_run(c, id)?.ok_or(StoreError::RunNotFound(id))
}

/// Record a success without running the job.
pub fn mark_success(c: &Connection, job: &str, now: Timestamp) -> StoreResult<Run> {
    if load_job(c, job)?.is_none() {
        return Err(StoreError::JobNotFound(job.to_owned()));
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
    )?
    .ok_or_else(|| StoreError::Backend("success record was not inserted".into()))?;
    c.prepare_cached("UPDATE runs SET started_at = ?2 WHERE id = ?1")
        .map_err(db)?
        .execute(params![id, us(now)])
        .map_err(db)?;
    // The job's own progress towards its parents starts over, as after a run.
    c.prepare_cached("DELETE FROM dependency_progress WHERE child = ?1")
        .map_err(db)?
        .execute([job])
        .map_err(db)?;
    let e = Ended {
        id,
        job: job.to_owned(),
        origin: Trigger::Manual.as_str().to_owned(),
        scheduled_for: us(now),
        attempt: 1,
        overrides: None,
    };
    after_final(c, &e, RunState::Succeeded, now)?;
    load_run(c, id)?.ok_or(StoreError::RunNotFound(id))
}

/// Mark runs lost by a condition, then apply the follow-ups.
pub(super) fn mark_lost(
    c: &Connection,
    sql: &str,
    p: &[&dyn rusqlite::ToSql],
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    let ended: Vec<Ended> = c
        .prepare_cached(sql)
        .map_err(db)?
        .query_map(p, ended_from_row)
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    for e in &ended {
        after_final(c, e, RunState::Lost, now)?;
    }
    Ok(ended.into_iter().map(|e| e.id).collect())
}

/// All running runs of `worker` become lost.
pub fn recover_worker(
    c: &Connection,
    worker: &str,
    reason: &str,
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    let sql = format!(
        "UPDATE runs SET state = 'lost', finished_at = ?2, error = ?3, lease_expires_at = NULL \
         WHERE state = 'running' AND worker = ?1 AND awaiting_completion = 0 RETURNING {ENDED_COLS}"
    );
    mark_lost(c, &sql, params![worker, us(now), reason], now)
}

/// Runs whose lease expired become lost.
pub fn reap_expired(c: &Connection, now: Timestamp) -> StoreResult<Vec<i64>> {
    let sql = format!(
        "UPDATE runs SET state = 'lost', finished_at = ?1, \
         error = 'lost: the worker stopped renewing its lease', lease_expires_at = NULL \
         WHERE state = 'running' AND lease_expires_at < ?1 RETURNING {ENDED_COLS}"
    );
    mark_lost(c, &sql, params![us(now)], now)
}

/// Cancel a run.
pub fn request_cancel(c: &Connection, id: i64, now: Timestamp) -> StoreResult<Run> {
    let run = load_run(c, id)?.ok_or(StoreError::RunNotFound(id))?;
    match run.state {
        RunState::Queued => {
            let ended: Option<Ended> = c
                .prepare_cached(&format!(
                    "UPDATE runs SET state = 'cancelled', finished_at = ?2, hold = 0, \
                     error = 'cancelled before it started' WHERE id = ?1 AND state = 'queued' \
                     RETURNING {ENDED_COLS}"
                ))
                .map_err(db)?
                .query_row(params![id, us(now)], ended_from_row)
                .optional()
                .map_err(db)?;
            if let Some(e) = ended {
                after_final(c, &e, RunState::Cancelled, now)?;
            }
        }
        RunState::Running => {
            // An async run waiting for its completion call has no process left: it ends now.
            let ended: Option<Ended> = c
                .prepare_cached(&format!(
                    "UPDATE runs SET state = 'cancelled', finished_at = ?2, awaiting_completion = 0, \
                     error = 'cancelled while waiting for the completion call' \
                     WHERE id = ?1 AND state = 'running' AND awaiting_completion = 1 \
                     RETURNING {ENDED_COLS}"
                ))
                .map_err(db)?
                .query_row(params![id, us(now)], ended_from_row)
                .optional()
                .map_err(db)?;
            match ended {
                Some(e) => after_final(c, &e, RunState::Cancelled, now)?,
                None => {
                    c.prepare_cached("UPDATE runs SET cancel_requested = 1 WHERE id = ?1")
                        .map_err(db)?
                        .execute([id])
                        .map_err(db)?;
                }
            }
        }
        s => {
            return Err(StoreError::Conflict(format!(
                "run {id} has already ended ({s})"
            )));
        }
    }
    load_run(c, id)?.ok_or(StoreError::RunNotFound(id))
}
