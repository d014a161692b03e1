//! Transaction bodies of the write operations. Each function runs inside the writer's
//! transaction (and its own savepoint); any error rolls the operation back.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

use tempora_core::dag::{self, find_cycle};
use tempora_core::job::{JobSpec, ValidationError};
use tempora_core::policy::{self, Disposition, OverlapAction};
use tempora_core::run::{Run, RunOverrides, RunState, Trigger};
use tempora_store::{
    ClaimedRun, ClusterView, Fence, FireOutcome, FireRequest, JobChange, JobRecord, Lease,
    NodeInfo, PutMode, PutOutcome, Retention, RunResult, StoreError, StoreResult,
    WORKER_FORGET_AFTER, WORKER_STALE_AFTER, WorkerInfo, WorkerStatus, compute_cursor,
};

use crate::rows::{
    RUN_COL_COUNT, RUN_COLS, db, load_job, load_run, parse_spec, run_from_row, ts, us,
};

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(t)
}

/// Create or replace a job.
pub fn put_job(
    c: &Connection,
    spec: JobSpec,
    mode: PutMode,
    now: Timestamp,
) -> StoreResult<PutOutcome> {
    let prev = load_job(c, &spec.name)?;
    if mode == PutMode::Create && prev.is_some() {
        return Err(StoreError::JobExists(spec.name));
    }
    let created_at = prev.as_ref().map_or(now, |p| p.created_at);
    let cursor = compute_cursor(&spec, created_at, now, prev.as_ref())?;
    write_parents(c, &spec)?;
    write_job_row(c, &spec, now, cursor, prev.is_none())?;
    let record = load_job(c, &spec.name)?
        .ok_or_else(|| StoreError::Backend("job vanished after write".into()))?;
    Ok(PutOutcome {
        record,
        created: prev.is_none(),
    })
}

/// Check a job's parents (they exist, no cycle) and store its edges; progress towards parents it
/// no longer has is dropped.
fn write_parents(c: &Connection, spec: &JobSpec) -> StoreResult<()> {
    let mut missing = Vec::new();
    for p in &spec.parents {
        let exists: Option<i64> = c
            .prepare_cached("SELECT 1 FROM jobs WHERE name = ?1")
            .map_err(db)?
            .query_row([p], |r| r.get(0))
            .optional()
            .map_err(db)?;
        if exists.is_none() {
            missing.push(format!("`{p}`"));
        }
    }
    if !missing.is_empty() {
        return Err(ValidationError::new(
            "parents",
            "unknown_parent",
            format!("unknown parent job(s): {}", missing.join(", ")),
        )
        .into());
    }
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    {
        let mut stmt = c
            .prepare_cached("SELECT child, parent FROM job_parents")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db)?;
        for row in rows {
            let (child, parent) = row.map_err(db)?;
            graph.entry(child).or_default().push(parent);
        }
    }
    graph.insert(spec.name.clone(), spec.parents.clone());
    if let Some(cycle) = find_cycle(&graph) {
        return Err(ValidationError::new(
            "parents",
            "cycle",
            format!("dependency cycle: {}", cycle.join(" → ")),
        )
        .into());
    }
    c.prepare_cached("DELETE FROM job_parents WHERE child = ?1")
        .map_err(db)?
        .execute([&spec.name])
        .map_err(db)?;
    for p in &spec.parents {
        c.prepare_cached("INSERT INTO job_parents (child, parent) VALUES (?1, ?2)")
            .map_err(db)?
            .execute(params![spec.name, p])
            .map_err(db)?;
    }
    c.prepare_cached(
        "DELETE FROM dependency_progress WHERE child = ?1 AND parent NOT IN \
         (SELECT parent FROM job_parents WHERE child = ?1)",
    )
    .map_err(db)?
    .execute([&spec.name])
    .map_err(db)?;
    Ok(())
}

fn children_of(c: &Connection, parent: &str) -> StoreResult<Vec<String>> {
    c.prepare_cached("SELECT child FROM job_parents WHERE parent = ?1 ORDER BY child")
        .map_err(db)?
        .query_map([parent], |r| r.get(0))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)
}

/// A parent's run ended in a way that counts for its children (succeeded, or failed with
/// `soft_error` and no retry left): record it, and trigger every child whose parents have all
/// reported since its last dependency run.
fn report_to_children(
    c: &Connection,
    parent: &str,
    run_id: i64,
    now: Timestamp,
) -> StoreResult<()> {
    for child in children_of(c, parent)? {
        c.prepare_cached(
            "INSERT OR REPLACE INTO dependency_progress (child, parent, run_id) VALUES (?1, ?2, ?3)",
        )
        .map_err(db)?
        .execute(params![child, parent, run_id])
        .map_err(db)?;
        let Some(rec) = load_job(c, &child)? else {
            continue;
        };
        let reported: BTreeMap<String, i64> = c
            .prepare_cached("SELECT parent, run_id FROM dependency_progress WHERE child = ?1")
            .map_err(db)?
            .query_map([&child], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let names = reported.keys().cloned().collect();
        if !dag::ready(&rec.spec.parents, &names) {
            continue;
        }
        c.prepare_cached("DELETE FROM dependency_progress WHERE child = ?1")
            .map_err(db)?
            .execute([&child])
            .map_err(db)?;
        if rec.spec.paused {
            tracing::info!(message = "dependency trigger ignored: the job is paused", job = %child);
            continue;
        }
        let by: Vec<i64> = rec
            .spec
            .parents
            .iter()
            .filter_map(|p| reported.get(p).copied())
            .collect();
        let mut counts = active_counts(c, &child)?;
        admit_run(
            c,
            &rec.spec,
            Trigger::Dependency,
            now,
            &RunOverrides::default(),
            &by,
            policy::Admission::Policy,
            now,
            &mut counts,
        )?;
    }
    Ok(())
}

/// Insert (`new`) or update a job's row: spec, pause state and cursor; an update bumps `version`.
fn write_job_row(
    c: &Connection,
    spec: &JobSpec,
    now: Timestamp,
    cursor: Option<Timestamp>,
    new: bool,
) -> StoreResult<()> {
    let json = serde_json::to_string(spec).map_err(|e| StoreError::Backend(e.to_string()))?;
    let sql = if new {
        "INSERT INTO jobs (name, spec, created_at, updated_at, version, paused, next_fire_at) \
         VALUES (?1, ?2, ?3, ?3, 1, ?4, ?5)"
    } else {
        "UPDATE jobs SET spec = ?2, updated_at = ?3, version = version + 1, paused = ?4, \
         next_fire_at = ?5 WHERE name = ?1"
    };
    c.prepare_cached(sql)
        .map_err(db)?
        .execute(params![
            spec.name,
            json,
            us(now),
            spec.paused,
            cursor.map(us)
        ])
        .map_err(db)?;
    Ok(())
}

/// Delete a job, its runs and their output (refused while other jobs depend on it, unless `force`).
pub fn delete_job(c: &Connection, name: &str, force: bool, now: Timestamp) -> StoreResult<bool> {
    let children = children_of(c, name)?;
    if !children.is_empty() && load_job(c, name)?.is_some() {
        if !force {
            return Err(StoreError::Conflict(format!(
                "job `{name}` has dependent jobs: {}; delete them first, or delete with force=true to remove `{name}` from their parents",
                children.join(", ")
            )));
        }
        for child in &children {
            if let Some(mut rec) = load_job(c, child)? {
                rec.spec.parents.retain(|p| p != name);
                write_job_row(c, &rec.spec, now, rec.next_fire_at, false)?;
            }
        }
    }
    c.prepare_cached("DELETE FROM job_parents WHERE parent = ?1 OR child = ?1")
        .map_err(db)?
        .execute([name])
        .map_err(db)?;
    c.prepare_cached("DELETE FROM dependency_progress WHERE parent = ?1 OR child = ?1")
        .map_err(db)?
        .execute([name])
        .map_err(db)?;
    c.prepare_cached("DELETE FROM run_logs WHERE run_id IN (SELECT id FROM runs WHERE job = ?1)")
        .map_err(db)?
        .execute([name])
        .map_err(db)?;
    c.prepare_cached("DELETE FROM runs WHERE job = ?1")
        .map_err(db)?
        .execute([name])
        .map_err(db)?;
    let n = c
        .prepare_cached("DELETE FROM jobs WHERE name = ?1")
        .map_err(db)?
        .execute([name])
        .map_err(db)?;
    Ok(n > 0)
}

/// Pause or resume a job.
pub fn set_paused(
    c: &Connection,
    name: &str,
    paused: bool,
    now: Timestamp,
) -> StoreResult<JobRecord> {
    let prev = load_job(c, name)?.ok_or_else(|| StoreError::JobNotFound(name.to_owned()))?;
    if prev.spec.paused == paused {
        return Ok(prev);
    }
    let mut spec = prev.spec.clone();
    spec.paused = paused;
    // Resuming starts from now: the paused period is not backfilled.
    let cursor = compute_cursor(&spec, prev.created_at, now, None)?;
    write_job_row(c, &spec, now, cursor, false)?;
    load_job(c, name)?.ok_or_else(|| StoreError::JobNotFound(name.to_owned()))
}

/// A run row to insert.
struct NewRun<'a> {
    job: &'a str,
    trigger: Trigger,
    origin: Trigger,
    scheduled_for: Timestamp,
    attempt: u32,
    state: RunState,
    hold: bool,
    now: Timestamp,
    not_before: Timestamp,
    error: Option<&'a str>,
    overrides: &'a RunOverrides,
    triggered_by: &'a [i64],
}

/// Insert a run; None when the occurrence already exists (exactly once).
fn insert_run(c: &Connection, r: NewRun<'_>) -> StoreResult<Option<i64>> {
    if let Some(id) = fold_skipped(c, &r)? {
        return Ok(Some(id));
    }
    let overrides = if r.overrides.is_empty() {
        None
    } else {
        Some(serde_json::to_string(r.overrides).map_err(|e| StoreError::Backend(e.to_string()))?)
    };
    let finished = r.state.is_final().then_some(us(r.now));
    let triggered_by = if r.triggered_by.is_empty() {
        None
    } else {
        Some(
            serde_json::to_string(r.triggered_by)
                .map_err(|e| StoreError::Backend(e.to_string()))?,
        )
    };
    c.prepare_cached(
        "INSERT OR IGNORE INTO runs (job, trigger, origin, scheduled_for, attempt, state, hold, \
         queued_at, not_before, finished_at, error, overrides, triggered_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING id",
    )
    .map_err(db)?
    .query_row(
        params![
            r.job,
            r.trigger.as_str(),
            r.origin.as_str(),
            us(r.scheduled_for),
            r.attempt,
            r.state.as_str(),
            r.hold,
            us(r.now),
            us(r.not_before),
            finished,
            r.error,
            overrides,
            triggered_by
        ],
        |row| row.get(0),
    )
    .optional()
    .map_err(db)
}

/// A skipped scheduled occurrence right after another one of the same job (no run of the job
/// in between) folds into that row: its count goes up and `last_scheduled_for` moves on (the
/// row keeps the first occurrence's reason). Returns the row's id when folded.
fn fold_skipped(c: &Connection, r: &NewRun<'_>) -> StoreResult<Option<i64>> {
    if !(r.state == RunState::Skipped && r.origin == Trigger::Schedule && r.attempt == 1) {
        return Ok(None);
    }
    let newest: Option<(i64, String, String, i64, i64)> = c
        .prepare_cached(
            "SELECT id, state, origin, attempt, COALESCE(last_scheduled_for, scheduled_for) \
             FROM runs WHERE job = ?1 ORDER BY id DESC LIMIT 1",
        )
        .map_err(db)?
        .query_row([r.job], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()
        .map_err(db)?;
    let Some((id, state, origin, attempt, last)) = newest else {
        return Ok(None);
    };
    if !tempora_store::folds_into(
        (r.state, r.origin, r.attempt, r.scheduled_for),
        (&state, &origin, attempt, ts(last)),
    ) {
        return Ok(None);
    }
    c.prepare_cached(
        "UPDATE runs SET occurrences = occurrences + 1, last_scheduled_for = ?2, finished_at = ?3 \
         WHERE id = ?1",
    )
    .map_err(db)?
    .execute(params![id, us(r.scheduled_for), us(r.now)])
    .map_err(db)?;
    Ok(Some(id))
}

/// (active, held) run counts of a job: active = running or claimable queued.
///
/// Each is 0 or 1 (whether there is one), not a count: the overlap policies only compare them
/// with zero, and counting would read every queued run of the job — quadratic when thousands
/// are queued. Both lookups stop at the first index entry.
fn active_counts(c: &Connection, job: &str) -> StoreResult<(u64, u64)> {
    c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE job = ?1 AND state IN ('queued', 'running') \
                        AND hold = 0), \
                EXISTS (SELECT 1 FROM runs WHERE job = ?1 AND state = 'queued' AND hold = 1)",
    )
    .map_err(db)?
    .query_row([job], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
    .map(|(a, h)| (a.max(0) as u64, h.max(0) as u64))
    .map_err(db)
}

/// Ask the job's running runs to stop and cancel its queued ones (`concurrency: replace`).
fn replace_active(c: &Connection, job: &str, now: Timestamp) -> StoreResult<()> {
    c.prepare_cached("UPDATE runs SET cancel_requested = 1 WHERE job = ?1 AND state = 'running'")
        .map_err(db)?
        .execute([job])
        .map_err(db)?;
    c.prepare_cached(
        "UPDATE runs SET state = 'cancelled', finished_at = ?2, \
         error = 'replaced by a newer run (concurrency: replace)' \
         WHERE job = ?1 AND state = 'queued'",
    )
    .map_err(db)?
    .execute(params![job, us(now)])
    .map_err(db)?;
    Ok(())
}

/// Create the run of a new occurrence or trigger under the job's overlap policy.
/// Returns the id and whether it was queued (false: skipped).
#[allow(clippy::too_many_arguments)]
fn admit_run(
    c: &Connection,
    spec: &JobSpec,
    trigger: Trigger,
    scheduled_for: Timestamp,
    overrides: &RunOverrides,
    triggered_by: &[i64],
    how: policy::Admission,
    now: Timestamp,
    counts: &mut (u64, u64),
) -> StoreResult<Option<(i64, bool)>> {
    let base = |state, hold, error| NewRun {
        job: &spec.name,
        trigger,
        origin: trigger,
        scheduled_for,
        attempt: 1,
        state,
        hold,
        now,
        not_before: now,
        error,
        overrides,
        triggered_by,
    };
    let action = policy::admit(spec.concurrency, counts.0, counts.1, how);
    let id = match &action {
        OverlapAction::Start => insert_run(c, base(RunState::Queued, false, None))?,
        OverlapAction::Hold => insert_run(c, base(RunState::Queued, true, None))?,
        OverlapAction::ReplaceThenStart => {
            replace_active(c, &spec.name, now)?;
            insert_run(c, base(RunState::Queued, false, None))?
        }
        OverlapAction::Skip(reason) => {
            insert_run(c, base(RunState::Skipped, false, Some(reason.as_str())))?
        }
    };
    let Some(id) = id else {
        return Ok(None);
    };
    let queued = match action {
        OverlapAction::Start | OverlapAction::ReplaceThenStart => {
            counts.0 += 1;
            true
        }
        OverlapAction::Hold => {
            counts.1 += 1;
            true
        }
        OverlapAction::Skip(_) => false,
    };
    Ok(Some((id, queued)))
}

/// Record a batch of due occurrences and advance the cursors.
pub fn fire(
    c: &Connection,
    requests: Vec<FireRequest>,
    now: Timestamp,
) -> StoreResult<Vec<FireOutcome>> {
    let mut out = Vec::with_capacity(requests.len());
    let no_overrides = RunOverrides::default();
    for req in requests {
        let row: Option<(i64, Option<i64>, bool, String)> = c
            .prepare_cached("SELECT version, next_fire_at, paused, spec FROM jobs WHERE name = ?1")
            .map_err(db)?
            .query_row([&req.job], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(db)?;
        let Some((version, cursor, paused, spec_json)) = row else {
            out.push(FireOutcome::Stale { job: req.job });
            continue;
        };
        if version != req.version || cursor != Some(us(req.expected_cursor)) || paused {
            out.push(FireOutcome::Stale { job: req.job });
            continue;
        }
        let spec = parse_spec(&spec_json)?;
        let mut counts = active_counts(c, &req.job)?;
        let mut queued = Vec::new();
        let mut skipped = 0usize;
        let mut note = req.skipped_note.as_deref();
        // The oldest occurrence to run meets the job's runs under its policy; the others of a
        // catch-up wait behind it (policy::admit).
        let mut how = policy::Admission::Policy;
        for occ in &req.occurrences {
            match &occ.disposition {
                Disposition::Skip(reason) => {
                    let reason = match note.take() {
                        Some(n) => format!("{reason}; {n}"),
                        None => reason.clone(),
                    };
                    let r = NewRun {
                        job: &req.job,
                        trigger: Trigger::Schedule,
                        origin: Trigger::Schedule,
                        scheduled_for: occ.at,
                        attempt: 1,
                        state: RunState::Skipped,
                        hold: false,
                        now,
                        not_before: occ.at,
                        error: Some(&reason),
                        overrides: &no_overrides,
                        triggered_by: &[],
                    };
                    if insert_run(c, r)?.is_some() {
                        skipped += 1;
                    }
                }
                Disposition::Run => {
                    match admit_run(
                        c,
                        &spec,
                        Trigger::Schedule,
                        occ.at,
                        &no_overrides,
                        &[],
                        how,
                        now,
                        &mut counts,
                    )? {
                        Some((id, true)) => {
                            queued.push(id);
                            how = policy::Admission::Behind { admitted: true };
                        }
                        Some((_, false)) => {
                            skipped += 1;
                            how = policy::Admission::Behind { admitted: false };
                        }
                        None => {}
                    }
                }
            }
        }
        // Scheduled runs become claimable at their occurrence time (they are due now).
        c.prepare_cached("UPDATE jobs SET next_fire_at = ?2 WHERE name = ?1")
            .map_err(db)?
            .execute(params![req.job, req.next_cursor.map(us)])
            .map_err(db)?;
        out.push(FireOutcome::Fired {
            job: req.job,
            queued,
            skipped,
        });
    }
    Ok(out)
}

/// Trigger a run now.
pub fn trigger_run(
    c: &Connection,
    job: &str,
    overrides: RunOverrides,
    force: bool,
    now: Timestamp,
) -> StoreResult<Run> {
    let rec = load_job(c, job)?.ok_or_else(|| StoreError::JobNotFound(job.to_owned()))?;
    let mut counts = active_counts(c, job)?;
    let (id, _) = admit_run(
        c,
        &rec.spec,
        Trigger::Manual,
        now,
        &overrides,
        &[],
        if force {
            policy::Admission::Force
        } else {
            policy::Admission::Policy
        },
        now,
        &mut counts,
    )?
    .ok_or_else(|| StoreError::Backend("manual run was not inserted".into()))?;
    load_run(c, id)?.ok_or(StoreError::RunNotFound(id))
}

/// Claim runnable queued runs for a worker with `labels` (a job's `selector` must be contained
/// in them).
pub fn claim_runs(
    c: &Connection,
    worker: &str,
    labels: &BTreeMap<String, String>,
    max: usize,
    now: Timestamp,
    lease: Duration,
) -> StoreResult<Vec<ClaimedRun>> {
    let lease_until = add(now, lease);
    let labels_json =
        serde_json::to_string(labels).map_err(|e| StoreError::Backend(e.to_string()))?;
    let runs: Vec<Run> = c
        .prepare_cached(&format!(
            "UPDATE runs SET state = 'running', worker = ?1, started_at = ?2, lease_expires_at = ?3 \
             WHERE id IN (SELECT r.id FROM runs r JOIN jobs j ON j.name = r.job \
                          WHERE r.state = 'queued' AND r.hold = 0 AND r.not_before <= ?2 \
                          AND {SELECTOR_MATCHES} \
                          ORDER BY r.not_before, r.id LIMIT ?4) \
             RETURNING {RUN_COLS}"
        ))
        .map_err(db)?
        .query_map(
            params![worker, us(now), us(lease_until), max as i64, labels_json],
            run_from_row,
        )
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    let mut specs: HashMap<String, JobSpec> = HashMap::new();
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        let spec = match specs.get(&run.job) {
            Some(s) => s.clone(),
            None => {
                let json: String = c
                    .prepare_cached("SELECT spec FROM jobs WHERE name = ?1")
                    .map_err(db)?
                    .query_row([&run.job], |r| r.get(0))
                    .map_err(db)?;
                let s: JobSpec = parse_spec(&json)?;
                specs.insert(run.job.clone(), s.clone());
                s
            }
        };
        out.push(ClaimedRun {
            run,
            spec,
            lease_expires_at: lease_until,
        });
    }
    // RETURNING order is unspecified; hand runs out oldest first.
    out.sort_by_key(|c| (c.run.not_before, c.run.id));
    Ok(out)
}

/// Whether [`claim_runs`] would find a run for `labels` now (read-only).
pub fn any_claimable(
    c: &Connection,
    labels: &BTreeMap<String, String>,
    now: Timestamp,
) -> StoreResult<bool> {
    let labels_json =
        serde_json::to_string(labels).map_err(|e| StoreError::Backend(e.to_string()))?;
    c.prepare_cached(&format!(
        "SELECT 1 FROM runs r JOIN jobs j ON j.name = r.job \
         WHERE r.state = 'queued' AND r.hold = 0 AND r.not_before <= ?1 \
         AND {} LIMIT 1",
        SELECTOR_MATCHES.replace("?5", "?2")
    ))
    .map_err(db)?
    .query_row(params![us(now), labels_json], |_| Ok(()))
    .optional()
    .map_err(db)
    .map(|r| r.is_some())
}

/// Renew leases; return the ids that must stop.
pub fn heartbeat(
    c: &Connection,
    worker: &str,
    ids: &[i64],
    now: Timestamp,
    lease: Duration,
) -> StoreResult<Vec<i64>> {
    let until = us(add(now, lease));
    let mut stop = Vec::new();
    let mut stmt = c
        .prepare_cached(
            "UPDATE runs SET lease_expires_at = ?3 WHERE id = ?1 AND state = 'running' \
             AND worker = ?2 RETURNING cancel_requested",
        )
        .map_err(db)?;
    for &id in ids {
        let flag: Option<i64> = stmt
            .query_row(params![id, worker, until], |r| r.get(0))
            .optional()
            .map_err(db)?;
        if flag != Some(0) {
            stop.push(id);
        }
    }
    Ok(stop)
}

/// Append output to a run, keeping at most `max` bytes (the tail).
pub fn append_log(c: &Connection, run_id: i64, data: &[u8], max: u64) -> StoreResult<()> {
    if data.is_empty() {
        return Ok(());
    }
    let row: Option<(i64, i64)> = c
        .prepare_cached("SELECT log_size, log_dropped FROM runs WHERE id = ?1")
        .map_err(db)?
        .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db)?;
    let Some((size, mut dropped)) = row else {
        return Ok(()); // the run was deleted with its job
    };
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    c.prepare_cached("INSERT INTO run_logs (run_id, offset, data) VALUES (?1, ?2, ?3)")
        .map_err(db)?
        .execute(params![run_id, size, data])
        .map_err(db)?;
    let new_size = size + data.len() as i64;
    // Drop whole chunks from the front until the kept bytes fit, trimming the last one.
    while new_size - dropped > max {
        let first: Option<(i64, Vec<u8>)> = c
            .prepare_cached(
                "SELECT offset, data FROM run_logs WHERE run_id = ?1 ORDER BY offset LIMIT 1",
            )
            .map_err(db)?
            .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db)?;
        let Some((off, bytes)) = first else { break };
        let excess = new_size - dropped - max;
        c.prepare_cached("DELETE FROM run_logs WHERE run_id = ?1 AND offset = ?2")
            .map_err(db)?
            .execute(params![run_id, off])
            .map_err(db)?;
        if (bytes.len() as i64) <= excess {
            dropped = off + bytes.len() as i64;
        } else {
            let keep = &bytes[excess as usize..];
            c.prepare_cached("INSERT INTO run_logs (run_id, offset, data) VALUES (?1, ?2, ?3)")
                .map_err(db)?
                .execute(params![run_id, off + excess, keep])
                .map_err(db)?;
            dropped = off + excess;
        }
    }
    c.prepare_cached("UPDATE runs SET log_size = ?2, log_dropped = ?3 WHERE id = ?1")
        .map_err(db)?
        .execute(params![run_id, new_size, dropped])
        .map_err(db)?;
    Ok(())
}

/// What a run that just ended needs for its follow-up.
struct Ended {
    id: i64,
    job: String,
    origin: String,
    scheduled_for: i64,
    attempt: u32,
    overrides: Option<String>,
}

const ENDED_COLS: &str = "id, job, origin, scheduled_for, attempt, overrides";

fn ended_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Ended> {
    Ok(Ended {
        id: r.get(0)?,
        job: r.get(1)?,
        origin: r.get(2)?,
        scheduled_for: r.get(3)?,
        attempt: r.get(4)?,
        overrides: r.get(5)?,
    })
}

/// After a run reached a final state: counters, retry, release of a held run.
fn after_final(c: &Connection, e: &Ended, state: RunState, now: Timestamp) -> StoreResult<()> {
    let Some(rec) = load_job(c, &e.job)? else {
        return Ok(());
    };
    let retrying = policy::should_retry(&rec.spec, state, e.attempt);
    match state {
        RunState::Succeeded => {
            c.prepare_cached(
                "UPDATE jobs SET success_count = success_count + 1, last_success_at = ?2, \
                 errors_since_success = 0 WHERE name = ?1",
            )
            .map_err(db)?
            .execute(params![e.job, us(now)])
            .map_err(db)?;
        }
        // A failure that will be retried is not an error of the job yet (as in Chronos): only
        // the last attempt's is.
        RunState::Failed | RunState::TimedOut | RunState::Lost if !retrying => {
            c.prepare_cached(
                "UPDATE jobs SET error_count = error_count + 1, last_error_at = ?2, \
                 errors_since_success = errors_since_success + 1 WHERE name = ?1",
            )
            .map_err(db)?
            .execute(params![e.job, us(now)])
            .map_err(db)?;
        }
        _ => {}
    }
    let counts_for_children = state == RunState::Succeeded
        || (rec.spec.soft_error && state.is_retryable_failure() && !retrying);
    if counts_for_children {
        report_to_children(c, &e.job, e.id, now)?;
    }
    if retrying {
        let delay = policy::retry_delay(&rec.spec, e.attempt);
        let overrides: RunOverrides = match &e.overrides {
            Some(s) => serde_json::from_str(s).unwrap_or_default(),
            None => RunOverrides::default(),
        };
        let origin = e.origin.parse::<Trigger>().unwrap_or(Trigger::Schedule);
        insert_run(
            c,
            NewRun {
                job: &e.job,
                trigger: Trigger::Retry,
                origin,
                scheduled_for: ts(e.scheduled_for),
                attempt: e.attempt + 1,
                state: RunState::Queued,
                hold: false,
                now,
                not_before: add(now, delay),
                error: None,
                overrides: &overrides,
                triggered_by: &[],
            },
        )?;
    }
    // Release a run waiting under `concurrency: queue` once nothing else is active.
    let (active, held) = active_counts(c, &e.job)?;
    if active == 0 && held > 0 {
        c.prepare_cached(
            "UPDATE runs SET hold = 0, not_before = ?2 WHERE id = \
             (SELECT id FROM runs WHERE job = ?1 AND state = 'queued' AND hold = 1 ORDER BY id LIMIT 1)",
        )
        .map_err(db)?
        .execute(params![e.job, us(now)])
        .map_err(db)?;
    }
    Ok(())
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
                "UPDATE runs SET state = ?3, finished_at = ?4, started_at = COALESCE(?5, started_at), \
                 exit_code = ?6, signal = ?7, error = ?8, lease_expires_at = NULL \
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
fn finish_async(
    c: &Connection,
    worker: &str,
    r: &RunResult,
    max_log: u64,
    now: Timestamp,
) -> StoreResult<()> {
    let waiting = c
        .prepare_cached(
            "UPDATE runs SET awaiting_completion = 1, started_at = COALESCE(?3, started_at), \
             exit_code = ?4, lease_expires_at = NULL, \
             error = 'waiting for the completion call PUT /scheduler/task/{taskId} (async job)' \
             WHERE id = ?1 AND state = 'running' AND worker = ?2 AND completion IS NULL",
        )
        .map_err(db)?
        .execute(params![r.run_id, worker, r.started_at.map(us), r.exit_code])
        .map_err(db)?;
    if waiting == 0 {
        let ended: Option<(Ended, String)> = c
            .prepare_cached(&format!(
                "UPDATE runs SET state = completion, finished_at = ?3, \
                 started_at = COALESCE(?4, started_at), exit_code = ?5, lease_expires_at = NULL, \
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
        NewRun {
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
fn mark_lost(
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

/// Refuse a scheduling write unless `fence` still holds the lease.
pub fn check_fence(c: &Connection, fence: Option<&Fence>) -> StoreResult<()> {
    let Some(f) = fence else {
        return Ok(());
    };
    let held: Option<(String, i64)> = c
        .prepare_cached("SELECT node, epoch FROM leader_lease WHERE id = 1")
        .map_err(db)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db)?;
    match held {
        Some((node, epoch)) if node == f.node && epoch as u64 == f.epoch => Ok(()),
        Some((node, epoch)) => Err(StoreError::Fenced(format!(
            "node {} with epoch {} is not the leader (the lease is {node}'s, epoch {epoch})",
            f.node, f.epoch
        ))),
        None => Err(StoreError::Fenced(format!(
            "node {} holds no lease",
            f.node
        ))),
    }
}

fn lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        node: r.get(0)?,
        address: r.get(1)?,
        epoch: r.get::<_, i64>(2)? as u64,
        expires_at: ts(r.get(3)?),
    })
}

/// Take or renew the leader lease.
pub fn acquire_leadership(
    c: &Connection,
    node: &str,
    address: &str,
    ttl: Duration,
    now: Timestamp,
) -> StoreResult<Lease> {
    let until = us(now).saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
    // Insert the first lease; renew ours; take a lapsed one with the next epoch.
    c.prepare_cached(
        "INSERT INTO leader_lease (id, node, address, epoch, expires_at) VALUES (1, ?1, ?2, 1, ?3) \
         ON CONFLICT (id) DO UPDATE SET \
           epoch = CASE WHEN leader_lease.node = ?1 AND leader_lease.expires_at >= ?4 \
                        THEN leader_lease.epoch ELSE leader_lease.epoch + 1 END, \
           node = ?1, address = ?2, expires_at = ?3 \
         WHERE leader_lease.node = ?1 OR leader_lease.expires_at < ?4",
    )
    .map_err(db)?
    .execute(params![node, address, until, us(now)])
    .map_err(db)?;
    c.prepare_cached("SELECT node, address, epoch, expires_at FROM leader_lease WHERE id = 1")
        .map_err(db)?
        .query_row([], lease_row)
        .map_err(db)
}

/// Give the lease up.
pub fn release_leadership(c: &Connection, node: &str, epoch: u64) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE leader_lease SET expires_at = 0 WHERE id = 1 AND node = ?1 AND epoch = ?2",
    )
    .map_err(db)?
    .execute(params![node, epoch as i64])
    .map_err(db)?;
    Ok(())
}

/// Record a node's heartbeat.
pub fn node_heartbeat(
    c: &Connection,
    node: &str,
    address: &str,
    now: Timestamp,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO nodes (id, address, last_seen) VALUES (?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET address = ?2, last_seen = ?3",
    )
    .map_err(db)?
    .execute(params![node, address, us(now)])
    .map_err(db)?;
    Ok(())
}

/// The lease and the nodes.
pub fn cluster_view(c: &Connection, now: Timestamp) -> StoreResult<ClusterView> {
    let lease = c
        .prepare_cached("SELECT node, address, epoch, expires_at FROM leader_lease WHERE id = 1")
        .map_err(db)?
        .query_row([], lease_row)
        .optional()
        .map_err(db)?;
    let nodes = c
        .prepare_cached("SELECT id, address, last_seen FROM nodes ORDER BY id")
        .map_err(db)?
        .query_map([], |r| {
            Ok(NodeInfo {
                id: r.get(0)?,
                address: r.get(1)?,
                last_seen: ts(r.get(2)?),
            })
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    Ok(ClusterView { lease, nodes, now })
}

/// Jobs written after `since`.
pub fn changed_jobs(c: &Connection, since: Timestamp) -> StoreResult<Vec<JobChange>> {
    c.prepare_cached("SELECT name, version, updated_at FROM jobs WHERE updated_at > ?1")
        .map_err(db)?
        .query_map([us(since)], |r| {
            Ok(JobChange {
                name: r.get(0)?,
                version: r.get(1)?,
                updated_at: ts(r.get(2)?),
            })
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)
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

// ---- remote workers and selectors ----

/// SQL condition: the selector of job `j` is contained in the labels given as JSON in `?5`.
const SELECTOR_MATCHES: &str = "NOT EXISTS (SELECT 1 FROM json_each(j.spec, '$.selector') s \
     WHERE NOT EXISTS (SELECT 1 FROM json_each(?5) l WHERE l.key = s.key AND l.value = s.value))";

/// Register or refresh a worker; forget workers long unseen that run nothing.
pub fn upsert_worker(c: &Connection, info: &WorkerInfo, now: Timestamp) -> StoreResult<()> {
    let labels =
        serde_json::to_string(&info.labels).map_err(|e| StoreError::Backend(e.to_string()))?;
    c.prepare_cached(
        "INSERT INTO workers (id, labels, slots, version, address, registered_at, last_seen) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
         ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, slots = excluded.slots, \
         version = excluded.version, address = excluded.address, \
         last_seen = MAX(last_seen, excluded.last_seen)",
    )
    .map_err(db)?
    .execute(params![
        info.id,
        labels,
        i64::from(info.slots),
        info.version,
        info.address,
        us(now)
    ])
    .map_err(db)?;
    let forget_before = us(now
        .checked_sub(WORKER_FORGET_AFTER)
        .unwrap_or(Timestamp::UNIX_EPOCH));
    c.prepare_cached(
        "DELETE FROM workers WHERE last_seen < ?1 AND NOT EXISTS \
         (SELECT 1 FROM runs WHERE runs.state = 'running' AND runs.worker = workers.id)",
    )
    .map_err(db)?
    .execute([forget_before])
    .map_err(db)?;
    Ok(())
}

/// Registered workers by id, with their running counts.
pub fn list_workers(c: &Connection, now: Timestamp) -> StoreResult<Vec<WorkerStatus>> {
    let stale_before = now
        .checked_sub(WORKER_STALE_AFTER)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let mut stmt = c
        .prepare_cached(
            "SELECT id, labels, slots, version, address, registered_at, last_seen, \
             (SELECT COUNT(*) FROM runs WHERE runs.state = 'running' AND runs.worker = workers.id) \
             FROM workers ORDER BY id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, labels, slots, version, address, registered_at, last_seen, running) in rows {
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&labels).map_err(|e| StoreError::Backend(e.to_string()))?;
        let last_seen = ts(last_seen);
        out.push(WorkerStatus {
            info: WorkerInfo {
                id,
                labels,
                slots: u32::try_from(slots).unwrap_or(0),
                version,
                address,
            },
            registered_at: ts(registered_at),
            last_seen,
            running: u64::try_from(running).unwrap_or(0),
            stale: last_seen < stale_before,
        });
    }
    Ok(out)
}

/// Runs `running` on a worker with a lease, with their specs.
pub fn worker_runs(c: &Connection, worker: &str) -> StoreResult<Vec<ClaimedRun>> {
    let rows: Vec<(Run, Option<i64>, String)> = c
        .prepare_cached(&format!(
            "SELECT {cols}, runs.lease_expires_at, jobs.spec FROM runs JOIN jobs ON jobs.name = runs.job \
             WHERE runs.state = 'running' AND runs.worker = ?1 AND runs.awaiting_completion = 0 \
             AND runs.lease_expires_at IS NOT NULL ORDER BY runs.id",
            cols = RUN_COLS
                .split(',')
                .map(|col| format!("runs.{}", col.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .map_err(db)?
        .query_map([worker], |r| Ok((run_from_row(r)?, r.get(RUN_COL_COUNT)?, r.get(RUN_COL_COUNT + 1)?)))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    rows.into_iter()
        .map(|(run, lease, spec)| {
            Ok(ClaimedRun {
                run,
                spec: parse_spec(&spec)?,
                lease_expires_at: ts(lease.unwrap_or(0)),
            })
        })
        .collect()
}

/// Jobs read per query while looking for runs to prune.
const PRUNE_JOB_PAGE: u32 = 128;

/// The condition of a finished run (the only runs pruning deletes). Every pruning query walks
/// `runs_by_job (job, id)` and reads the state from the row.
const FINISHED: &str = "state NOT IN ('queued', 'running')";

/// The runs one [`tempora_store::Store::prune_runs`] call deletes: up to `max` ids, chosen job
/// by job in name order from `start` (inclusive, wrapping around once), and the job to start
/// the next call with (None when every job was visited). Read-only: runs on a reader
/// connection, so choosing never holds up the writer.
pub fn prune_candidates(
    c: &Connection,
    policy: &Retention,
    now: Timestamp,
    max: u32,
    start: Option<&str>,
) -> StoreResult<(Vec<i64>, Option<String>)> {
    let max = max as usize;
    let mut ids = Vec::new();
    if max == 0 || !policy.is_enabled() {
        return Ok((ids, start.map(str::to_owned)));
    }
    let pinned = pinned_runs(c)?;
    let start = start.unwrap_or("");
    // First the jobs from `start` on, then (wrapping) those before it.
    let passes: [(&str, Option<&str>); 2] = [(start, None), ("", Some(start))];
    for (from, until) in passes {
        if until == Some("") {
            break;
        }
        let mut after: Option<String> = None;
        loop {
            let names: Vec<String> = {
                let lo = after.as_deref().unwrap_or(from);
                let op = if after.is_some() { ">" } else { ">=" };
                let sql = format!(
                    "SELECT name FROM jobs WHERE name {op} ?1 AND (?2 IS NULL OR name < ?2) \
                     ORDER BY name LIMIT ?3"
                );
                c.prepare_cached(&sql)
                    .map_err(db)?
                    .query_map(params![lo, until, PRUNE_JOB_PAGE], |r| r.get(0))
                    .map_err(db)?
                    .collect::<Result<_, _>>()
                    .map_err(db)?
            };
            let Some(last) = names.last().cloned() else {
                break;
            };
            for name in names {
                let budget = max - ids.len();
                job_prune_candidates(c, &name, policy, now, &pinned, budget, &mut ids)?;
                if ids.len() >= max {
                    // This job may have more: the next call starts with it.
                    warm_pages(c, &ids)?;
                    return Ok((ids, Some(name)));
                }
            }
            after = Some(last);
        }
    }
    warm_pages(c, &ids)?;
    Ok((ids, None))
}

/// Read the pages the deletion of `ids` will change (each run's row, its entry in the
/// occurrence index, its output rows), so the writer finds them in memory. A large history does
/// not fit in the page cache, and the runs of one job are scattered over the file: without this
/// the writer thread — and every fire and result queued behind it — would wait for those random
/// reads from disk.
fn warm_pages(c: &Connection, ids: &[i64]) -> StoreResult<()> {
    for &id in ids {
        let row: Option<(String, i64, i64, String)> = c
            .prepare_cached("SELECT job, scheduled_for, attempt, origin FROM runs WHERE id = ?1")
            .map_err(db)?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()
            .map_err(db)?;
        let Some((job, scheduled_for, attempt, origin)) = row else {
            continue;
        };
        if origin == "schedule" {
            c.prepare_cached(
                "SELECT id FROM runs INDEXED BY runs_occurrence \
                 WHERE job = ?1 AND scheduled_for = ?2 AND attempt = ?3 AND origin = 'schedule'",
            )
            .map_err(db)?
            .query_row(params![job, scheduled_for, attempt], |_| Ok(()))
            .optional()
            .map_err(db)?;
        }
        c.prepare_cached("SELECT COUNT(*) FROM run_logs WHERE run_id = ?1")
            .map_err(db)?
            .query_row([id], |r| r.get::<_, i64>(0))
            .map_err(db)?;
    }
    Ok(())
}

/// Parent runs recorded in dependency progress (a child's next dependency run names them).
fn pinned_runs(c: &Connection) -> StoreResult<std::collections::HashSet<i64>> {
    c.prepare_cached("SELECT run_id FROM dependency_progress")
        .map_err(db)?
        .query_map([], |r| r.get(0))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)
}

/// Add to `out` up to `budget` runs of `job` that `policy` lets go, oldest first.
fn job_prune_candidates(
    c: &Connection,
    job: &str,
    policy: &Retention,
    now: Timestamp,
    pinned: &std::collections::HashSet<i64>,
    budget: usize,
    out: &mut Vec<i64>,
) -> StoreResult<()> {
    // The k-th newest finished run (OFFSET k-1), walking `runs_by_job` backwards.
    let nth_newest = |k: u32| -> StoreResult<Option<i64>> {
        c.prepare_cached(&format!(
            "SELECT id FROM runs WHERE job = ?1 AND {FINISHED} ORDER BY id DESC LIMIT 1 OFFSET ?2"
        ))
        .map_err(db)?
        .query_row(params![job, k.saturating_sub(1)], |r| r.get(0))
        .optional()
        .map_err(db)
    };
    // The newest finished run is always kept.
    let Some(newest) = nth_newest(1)? else {
        return Ok(());
    };
    // Runs with an id below `cut` are beyond the newest `keep_runs` finished ones.
    let cut = match policy.keep_runs {
        Some(_) => nth_newest(policy.keep_newest())?.unwrap_or(0),
        None => 0,
    };
    let cutoff = policy.cutoff(now).map(us);
    if cut == 0 && cutoff.is_none() {
        return Ok(());
    }
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT id, queued_at, finished_at FROM runs \
             WHERE job = ?1 AND id < ?2 AND {FINISHED} ORDER BY id"
        ))
        .map_err(db)?;
    let mut rows = stmt.query(params![job, newest]).map_err(db)?;
    let mut taken = 0;
    while taken < budget {
        let Some(r) = rows.next().map_err(db)? else {
            break;
        };
        let id: i64 = r.get(0).map_err(db)?;
        if pinned.contains(&id) {
            continue;
        }
        let take = if id < cut {
            true
        } else if let Some(cutoff) = cutoff {
            let queued_at: i64 = r.get(1).map_err(db)?;
            let finished_at: Option<i64> = r.get(2).map_err(db)?;
            if finished_at.is_some_and(|f| f < cutoff) {
                true
            } else if queued_at >= cutoff {
                // Queued after the cutoff, so finished after it too; so are the later runs.
                break;
            } else {
                false
            }
        } else {
            // Within the newest `keep_runs`, and no age limit: nothing further to delete.
            break;
        };
        if take {
            out.push(id);
            taken += 1;
        }
    }
    Ok(())
}

/// Delete the runs `ids` (chosen by [`prune_candidates`]) and their output, checking again that
/// each is finished and not recorded in dependency progress. Returns how many were deleted.
pub fn delete_finished_runs(c: &Connection, ids: &[i64]) -> StoreResult<u64> {
    let pinned = pinned_runs(c)?;
    let mut deleted = 0u64;
    for &id in ids {
        if pinned.contains(&id) {
            continue;
        }
        let n = c
            .prepare_cached(&format!("DELETE FROM runs WHERE id = ?1 AND {FINISHED}"))
            .map_err(db)?
            .execute([id])
            .map_err(db)?;
        if n > 0 {
            c.prepare_cached("DELETE FROM run_logs WHERE run_id = ?1")
                .map_err(db)?
                .execute([id])
                .map_err(db)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
