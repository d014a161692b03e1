//! Transaction bodies of the write operations, ported statement by statement from the SQLite
//! store. Each function runs inside one transaction opened by the caller; any error rolls the
//! whole operation back.
//!
//! Concurrency between nodes: job definitions (and so the dependency graph) change under one
//! advisory lock; every change of a job's runs that depends on its other runs (overlap policy,
//! counters, retries, release of held runs, dependency progress) first locks the job's row;
//! claims skip rows locked by other claimers; a scheduled occurrence is unique per attempt.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use tempora_core::dag::{self, find_cycle};
use tempora_core::job::{JobSpec, ValidationError};
use tempora_core::policy::{self, Disposition, OverlapAction};
use tempora_core::run::{Run, RunOverrides, RunState, Trigger};
use tempora_store::{
    ClaimedRun, ClusterView, Fence, FireOutcome, FireRequest, JobChange, JobRecord, Lease,
    NodeInfo, PutMode, PutOutcome, Retention, RunResult, StoreError, WORKER_FORGET_AFTER,
    WORKER_STALE_AFTER, WorkerInfo, WorkerStatus, compute_cursor,
};
use tokio_postgres::Row;

use crate::pool::{Conn, TxResult};
use crate::rows::{
    RUN_COL_COUNT, RUN_COLS, load_job, load_run, lock_job, parse_spec, run_from_row, ts, us,
};

/// Advisory lock key serializing job definition changes (the dependency graph check).
const JOBS_LOCK: i64 = 0x7465_6d70_6f72_6102;

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(t)
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> TxResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()).into())
}

async fn lock_jobs(c: &Conn) -> TxResult<()> {
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&JOBS_LOCK])
        .await?;
    Ok(())
}

/// Create or replace a job.
pub async fn put_job(
    c: &Conn,
    spec: JobSpec,
    mode: PutMode,
    now: Timestamp,
) -> TxResult<PutOutcome> {
    lock_jobs(c).await?;
    let prev = lock_job(c, &spec.name).await?;
    if mode == PutMode::Create && prev.is_some() {
        return Err(StoreError::JobExists(spec.name).into());
    }
    let created_at = prev.as_ref().map_or(now, |p| p.created_at);
    let cursor = compute_cursor(&spec, created_at, now, prev.as_ref())?;
    write_parents(c, &spec).await?;
    write_job_row(c, &spec, now, cursor, prev.is_none()).await?;
    let record = load_job(c, &spec.name)
        .await?
        .ok_or_else(|| StoreError::Backend("job vanished after write".into()))?;
    Ok(PutOutcome {
        record,
        created: prev.is_none(),
    })
}

/// Check a job's parents (they exist, no cycle) and store its edges; progress towards parents it
/// no longer has is dropped.
async fn write_parents(c: &Conn, spec: &JobSpec) -> TxResult<()> {
    let mut missing = Vec::new();
    for p in &spec.parents {
        if c.query_opt("SELECT 1 FROM jobs WHERE name = $1", &[p])
            .await?
            .is_none()
        {
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
    for row in c
        .query("SELECT child, parent FROM job_parents", &[])
        .await?
    {
        let child: String = row.try_get(0)?;
        let parent: String = row.try_get(1)?;
        graph.entry(child).or_default().push(parent);
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
    c.execute("DELETE FROM job_parents WHERE child = $1", &[&spec.name])
        .await?;
    for p in &spec.parents {
        c.execute(
            "INSERT INTO job_parents (child, parent) VALUES ($1, $2)",
            &[&spec.name, p],
        )
        .await?;
    }
    c.execute(
        "DELETE FROM dependency_progress WHERE child = $1 AND parent NOT IN \
         (SELECT parent FROM job_parents WHERE child = $1)",
        &[&spec.name],
    )
    .await?;
    Ok(())
}

async fn children_of(c: &Conn, parent: &str) -> TxResult<Vec<String>> {
    c.query(
        "SELECT child FROM job_parents WHERE parent = $1 ORDER BY child",
        &[&parent],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0).map_err(Into::into))
    .collect()
}

/// A parent's run ended in a way that counts for its children (succeeded, or failed with
/// `soft_error` and no retry left): record it, and trigger every child whose parents have all
/// reported since its last dependency run.
async fn report_to_children(c: &Conn, parent: &str, run_id: i64, now: Timestamp) -> TxResult<()> {
    for child in children_of(c, parent).await? {
        // Lock the child first: two parents reporting at once must see each other's progress.
        let Some(rec) = lock_job(c, &child).await? else {
            continue;
        };
        c.execute(
            "INSERT INTO dependency_progress (child, parent, run_id) VALUES ($1, $2, $3) \
             ON CONFLICT (child, parent) DO UPDATE SET run_id = EXCLUDED.run_id",
            &[&child, &parent, &run_id],
        )
        .await?;
        let mut reported: BTreeMap<String, i64> = BTreeMap::new();
        for r in c
            .query(
                "SELECT parent, run_id FROM dependency_progress WHERE child = $1",
                &[&child],
            )
            .await?
        {
            reported.insert(r.try_get(0)?, r.try_get(1)?);
        }
        let names = reported.keys().cloned().collect();
        if !dag::ready(&rec.spec.parents, &names) {
            continue;
        }
        c.execute(
            "DELETE FROM dependency_progress WHERE child = $1",
            &[&child],
        )
        .await?;
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
        let mut counts = active_counts(c, &child).await?;
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
        )
        .await?;
    }
    Ok(())
}

/// Insert (`new`) or update a job's row: spec, pause state and cursor; an update bumps `version`.
async fn write_job_row(
    c: &Conn,
    spec: &JobSpec,
    now: Timestamp,
    cursor: Option<Timestamp>,
    new: bool,
) -> TxResult<()> {
    let spec_json = json(spec)?;
    let sql = if new {
        "INSERT INTO jobs (name, spec, created_at, updated_at, version, paused, next_fire_at) \
         VALUES ($1, $2, $3, $3, 1, $4, $5)"
    } else {
        "UPDATE jobs SET spec = $2, updated_at = $3, version = version + 1, paused = $4, \
         next_fire_at = $5 WHERE name = $1"
    };
    c.execute(
        sql,
        &[
            &spec.name,
            &spec_json,
            &us(now),
            &spec.paused,
            &cursor.map(us),
        ],
    )
    .await?;
    Ok(())
}

/// Delete a job, its runs and their output (refused while other jobs depend on it, unless `force`).
pub async fn delete_job(c: &Conn, name: &str, force: bool, now: Timestamp) -> TxResult<bool> {
    lock_jobs(c).await?;
    let children = children_of(c, name).await?;
    if !children.is_empty() && lock_job(c, name).await?.is_some() {
        if !force {
            return Err(StoreError::Conflict(format!(
                "job `{name}` has dependent jobs: {}; delete them first, or delete with force=true to remove `{name}` from their parents",
                children.join(", ")
            ))
            .into());
        }
        for child in &children {
            if let Some(mut rec) = lock_job(c, child).await? {
                rec.spec.parents.retain(|p| p != name);
                write_job_row(c, &rec.spec, now, rec.next_fire_at, false).await?;
            }
        }
    }
    c.execute(
        "DELETE FROM job_parents WHERE parent = $1 OR child = $1",
        &[&name],
    )
    .await?;
    c.execute(
        "DELETE FROM dependency_progress WHERE parent = $1 OR child = $1",
        &[&name],
    )
    .await?;
    c.execute(
        "DELETE FROM run_logs WHERE run_id IN (SELECT id FROM runs WHERE job = $1)",
        &[&name],
    )
    .await?;
    c.execute("DELETE FROM runs WHERE job = $1", &[&name])
        .await?;
    let n = c
        .execute("DELETE FROM jobs WHERE name = $1", &[&name])
        .await?;
    Ok(n > 0)
}

/// Pause or resume a job.
pub async fn set_paused(c: &Conn, name: &str, paused: bool, now: Timestamp) -> TxResult<JobRecord> {
    lock_jobs(c).await?;
    let prev = lock_job(c, name)
        .await?
        .ok_or_else(|| StoreError::JobNotFound(name.to_owned()))?;
    if prev.spec.paused == paused {
        return Ok(prev);
    }
    let mut spec = prev.spec.clone();
    spec.paused = paused;
    // Resuming starts from now: the paused period is not backfilled.
    let cursor = compute_cursor(&spec, prev.created_at, now, None)?;
    write_job_row(c, &spec, now, cursor, false).await?;
    Ok(load_job(c, name)
        .await?
        .ok_or_else(|| StoreError::JobNotFound(name.to_owned()))?)
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
async fn insert_run(c: &Conn, r: NewRun<'_>) -> TxResult<Option<i64>> {
    if let Some(id) = fold_skipped(c, &r).await? {
        return Ok(Some(id));
    }
    let overrides = if r.overrides.is_empty() {
        None
    } else {
        Some(json(r.overrides)?)
    };
    let finished = r.state.is_final().then_some(us(r.now));
    let triggered_by = if r.triggered_by.is_empty() {
        None
    } else {
        Some(json(r.triggered_by)?)
    };
    let row = c
        .query_opt(
            "INSERT INTO runs (job, trigger, origin, scheduled_for, attempt, state, hold, \
             queued_at, not_before, finished_at, error, overrides, triggered_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (job, scheduled_for, attempt) WHERE origin = 'schedule' DO NOTHING \
             RETURNING id",
            &[
                &r.job,
                &r.trigger.as_str(),
                &r.origin.as_str(),
                &us(r.scheduled_for),
                &i64::from(r.attempt),
                &r.state.as_str(),
                &r.hold,
                &us(r.now),
                &us(r.not_before),
                &finished,
                &r.error,
                &overrides,
                &triggered_by,
            ],
        )
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// A skipped scheduled occurrence right after another one of the same job (no run of the job
/// in between) folds into that row: its count goes up and `last_scheduled_for` moves on (the
/// row keeps the first occurrence's reason). Returns the row's id when folded.
async fn fold_skipped(c: &Conn, r: &NewRun<'_>) -> TxResult<Option<i64>> {
    if !(r.state == RunState::Skipped && r.origin == Trigger::Schedule && r.attempt == 1) {
        return Ok(None);
    }
    let newest = c
        .query_opt(
            "SELECT id, state, origin, attempt, COALESCE(last_scheduled_for, scheduled_for) \
             FROM runs WHERE job = $1 ORDER BY id DESC LIMIT 1",
            &[&r.job],
        )
        .await?;
    let Some(row) = newest else {
        return Ok(None);
    };
    let (id, state, origin, attempt, last): (i64, String, String, i64, i64) = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    );
    if !tempora_store::folds_into(
        (r.state, r.origin, r.attempt, r.scheduled_for),
        (&state, &origin, attempt, ts(last)),
    ) {
        return Ok(None);
    }
    c.execute(
        "UPDATE runs SET occurrences = occurrences + 1, last_scheduled_for = $2, finished_at = $3 \
         WHERE id = $1",
        &[&id, &us(r.scheduled_for), &us(r.now)],
    )
    .await?;
    Ok(Some(id))
}

/// (active, held) run counts of a job: active = running or claimable queued.
///
/// Each is 0 or 1 (whether there is one), not a count: the overlap policies only compare them
/// with zero, and counting would read every queued run of the job — quadratic when thousands
/// are queued.
async fn active_counts(c: &Conn, job: &str) -> TxResult<(u64, u64)> {
    let row = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE job = $1 AND state IN ('queued', 'running') \
                            AND NOT hold), \
                    EXISTS (SELECT 1 FROM runs WHERE job = $1 AND state = 'queued' AND hold)",
            &[&job],
        )
        .await?;
    let active: bool = row.try_get(0)?;
    let held: bool = row.try_get(1)?;
    Ok((u64::from(active), u64::from(held)))
}

/// Ask the job's running runs to stop and cancel its queued ones (`concurrency: replace`).
async fn replace_active(c: &Conn, job: &str, now: Timestamp) -> TxResult<()> {
    c.execute(
        "UPDATE runs SET cancel_requested = true WHERE job = $1 AND state = 'running'",
        &[&job],
    )
    .await?;
    c.execute(
        "UPDATE runs SET state = 'cancelled', finished_at = $2, \
         error = 'replaced by a newer run (concurrency: replace)' \
         WHERE job = $1 AND state = 'queued'",
        &[&job, &us(now)],
    )
    .await?;
    Ok(())
}

/// Create the run of a new occurrence or trigger under the job's overlap policy (the caller
/// holds the job's row lock). Returns the id and whether it was queued (false: skipped).
#[allow(clippy::too_many_arguments)]
async fn admit_run(
    c: &Conn,
    spec: &JobSpec,
    trigger: Trigger,
    scheduled_for: Timestamp,
    overrides: &RunOverrides,
    triggered_by: &[i64],
    how: policy::Admission,
    now: Timestamp,
    counts: &mut (u64, u64),
) -> TxResult<Option<(i64, bool)>> {
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
        OverlapAction::Start => insert_run(c, base(RunState::Queued, false, None)).await?,
        OverlapAction::Hold => insert_run(c, base(RunState::Queued, true, None)).await?,
        OverlapAction::ReplaceThenStart => {
            replace_active(c, &spec.name, now).await?;
            insert_run(c, base(RunState::Queued, false, None)).await?
        }
        OverlapAction::Skip(reason) => {
            insert_run(c, base(RunState::Skipped, false, Some(reason.as_str()))).await?
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
pub async fn fire(
    c: &Conn,
    requests: Vec<FireRequest>,
    now: Timestamp,
) -> TxResult<Vec<FireOutcome>> {
    let mut out = Vec::with_capacity(requests.len());
    let no_overrides = RunOverrides::default();
    for req in requests {
        let row = c
            .query_opt(
                "SELECT version, next_fire_at, paused, spec FROM jobs WHERE name = $1 FOR UPDATE",
                &[&req.job],
            )
            .await?;
        let Some(row) = row else {
            out.push(FireOutcome::Stale { job: req.job });
            continue;
        };
        let version: i64 = row.try_get(0)?;
        let cursor: Option<i64> = row.try_get(1)?;
        let paused: bool = row.try_get(2)?;
        let spec_json: String = row.try_get(3)?;
        if version != req.version || cursor != Some(us(req.expected_cursor)) || paused {
            out.push(FireOutcome::Stale { job: req.job });
            continue;
        }
        let spec = parse_spec(&spec_json)?;
        let mut counts = active_counts(c, &req.job).await?;
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
                    if insert_run(c, r).await?.is_some() {
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
                    )
                    .await?
                    {
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
        c.execute(
            "UPDATE jobs SET next_fire_at = $2 WHERE name = $1",
            &[&req.job, &req.next_cursor.map(us)],
        )
        .await?;
        out.push(FireOutcome::Fired {
            job: req.job,
            queued,
            skipped,
        });
    }
    Ok(out)
}

/// Trigger a run now.
pub async fn trigger_run(
    c: &Conn,
    job: &str,
    overrides: RunOverrides,
    force: bool,
    now: Timestamp,
) -> TxResult<Run> {
    let rec = lock_job(c, job)
        .await?
        .ok_or_else(|| StoreError::JobNotFound(job.to_owned()))?;
    let mut counts = active_counts(c, job).await?;
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
    )
    .await?
    .ok_or_else(|| StoreError::Backend("manual run was not inserted".into()))?;
    Ok(load_run(c, id).await?.ok_or(StoreError::RunNotFound(id))?)
}

/// Whether [`claim_runs`] would find a run for `labels` now (read-only; rows being claimed by
/// another node count, so the answer may be a false "yes", never a false "no").
pub async fn any_claimable(
    c: &Conn,
    labels: &BTreeMap<String, String>,
    now: Timestamp,
) -> TxResult<bool> {
    let labels = json(labels)?;
    let row = c
        .query_opt(
            "SELECT 1 FROM runs r JOIN jobs j ON j.name = r.job \
             WHERE r.state = 'queued' AND NOT r.hold AND r.not_before <= $1 \
             AND j.selector <@ CAST($2::text AS jsonb) LIMIT 1",
            &[&us(now), &labels],
        )
        .await?;
    Ok(row.is_some())
}

/// Claim runnable queued runs for a worker with `labels` (a job's `selector` must be contained
/// in them); rows another node is claiming are skipped.
pub async fn claim_runs(
    c: &Conn,
    worker: &str,
    labels: &BTreeMap<String, String>,
    max: usize,
    now: Timestamp,
    lease: Duration,
) -> TxResult<Vec<ClaimedRun>> {
    let lease_until = add(now, lease);
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let labels = json(labels)?;
    let rows = c
        .query(
            &format!(
                "WITH picked AS MATERIALIZED ( \
                     SELECT r.id AS picked_id FROM runs r JOIN jobs j ON j.name = r.job \
                     WHERE r.state = 'queued' AND NOT r.hold \
                     AND r.not_before <= $2 AND j.selector <@ CAST($5::text AS jsonb) \
                     ORDER BY r.not_before, r.id LIMIT $4 \
                     FOR UPDATE OF r SKIP LOCKED) \
                 UPDATE runs SET state = 'running', worker = $1, started_at = $2, \
                 lease_expires_at = $3 \
                 FROM picked WHERE runs.id = picked.picked_id \
                 RETURNING {RUN_COLS}"
            ),
            &[&worker, &us(now), &us(lease_until), &limit, &labels],
        )
        .await?;
    let mut specs: HashMap<String, JobSpec> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let run = run_from_row(row)?;
        let spec = match specs.get(&run.job) {
            Some(s) => s.clone(),
            None => {
                let json: String = c
                    .query_one("SELECT spec FROM jobs WHERE name = $1", &[&run.job])
                    .await?
                    .try_get(0)?;
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

/// Renew leases; return the ids that must stop.
pub async fn heartbeat(
    c: &Conn,
    worker: &str,
    ids: &[i64],
    now: Timestamp,
    lease: Duration,
) -> TxResult<Vec<i64>> {
    let until = us(add(now, lease));
    let mut stop = Vec::new();
    for &id in ids {
        // `coalesce(worker, '')` (here and in the result statements) is an expression, so the
        // planner finds the run by its primary key. With a bare `worker = $2` and statistics not
        // yet updated after a burst it chose the partial `runs_by_worker` index and scanned every
        // running run of the worker for each row: quadratic, 1,000 → 450 runs/s on a drain.
        let flag: Option<bool> = match c
            .query_opt(
                "UPDATE runs SET lease_expires_at = $3 WHERE id = $1 AND state = 'running' \
                 AND coalesce(worker, '') = $2 RETURNING cancel_requested",
                &[&id, &worker, &until],
            )
            .await?
        {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        };
        if flag != Some(false) {
            stop.push(id);
        }
    }
    Ok(stop)
}

/// Append output to a run, keeping at most `max` bytes (the tail).
pub async fn append_log(c: &Conn, run_id: i64, data: &[u8], max: u64) -> TxResult<()> {
    if data.is_empty() {
        return Ok(());
    }
    let row = c
        .query_opt(
            "SELECT log_size, log_dropped FROM runs WHERE id = $1 FOR UPDATE",
            &[&run_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(()); // the run was deleted with its job
    };
    let size: i64 = row.try_get(0)?;
    let mut dropped: i64 = row.try_get(1)?;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    c.execute(
        "INSERT INTO run_logs (run_id, pos, data) VALUES ($1, $2, $3)",
        &[&run_id, &size, &data],
    )
    .await?;
    let new_size = size + data.len() as i64;
    // Drop whole chunks from the front until the kept bytes fit, trimming the last one.
    while new_size - dropped > max {
        let first = c
            .query_opt(
                "SELECT pos, data FROM run_logs WHERE run_id = $1 ORDER BY pos LIMIT 1",
                &[&run_id],
            )
            .await?;
        let Some(first) = first else { break };
        let off: i64 = first.try_get(0)?;
        let bytes: &[u8] = first.try_get(1)?;
        let excess = new_size - dropped - max;
        c.execute(
            "DELETE FROM run_logs WHERE run_id = $1 AND pos = $2",
            &[&run_id, &off],
        )
        .await?;
        if (bytes.len() as i64) <= excess {
            dropped = off + bytes.len() as i64;
        } else {
            let keep = &bytes[excess as usize..];
            c.execute(
                "INSERT INTO run_logs (run_id, pos, data) VALUES ($1, $2, $3)",
                &[&run_id, &(off + excess), &keep],
            )
            .await?;
            dropped = off + excess;
        }
    }
    c.execute(
        "UPDATE runs SET log_size = $2, log_dropped = $3 WHERE id = $1",
        &[&run_id, &new_size, &dropped],
    )
    .await?;
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

fn ended_from_row(r: &Row) -> TxResult<Ended> {
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

/// After a run reached a final state: counters, retry, release of a held run.
async fn after_final(c: &Conn, e: &Ended, state: RunState, now: Timestamp) -> TxResult<()> {
    after_finals(c, &[(e, state)], now).await
}

/// The follow-ups of runs that reached a final state, job by job: each job is locked and its
/// counters updated once for all its runs (not once per run: a batch of results is then a few
/// round trips per job rather than five per run), then retries and dependency reports per run,
/// then the release of a run held under `concurrency: queue`.
async fn after_finals(c: &Conn, ended: &[(&Ended, RunState)], now: Timestamp) -> TxResult<()> {
    // Runs grouped by job, each group in the runs' order; the map's order (by name) is the one
    // lock order of every transaction, so two batches cannot deadlock.
    let mut by_job: BTreeMap<&str, Vec<(&Ended, RunState)>> = BTreeMap::new();
    for (e, state) in ended {
        by_job.entry(&e.job).or_default().push((*e, *state));
    }
    for (job, runs) in by_job {
        let Some(rec) = lock_job(c, job).await? else {
            continue;
        };
        // Counters, in the runs' order: errors since the last success of the batch. A failure
        // that will be retried is not an error of the job yet (as in Chronos): only the last
        // attempt's is.
        let (mut ok, mut errors, mut errors_after_ok) = (0i64, 0i64, 0i64);
        for (e, state) in &runs {
            match state {
                RunState::Succeeded => {
                    ok += 1;
                    errors_after_ok = 0;
                }
                RunState::Failed | RunState::TimedOut | RunState::Lost
                    if !policy::should_retry(&rec.spec, *state, e.attempt) =>
                {
                    errors += 1;
                    errors_after_ok += 1;
                }
                _ => {}
            }
        }
        if ok + errors > 0 {
            c.execute(
                "UPDATE jobs SET success_count = success_count + $2, \
                 error_count = error_count + $3, \
                 last_success_at = CASE WHEN $2 > 0 THEN $4 ELSE last_success_at END, \
                 last_error_at = CASE WHEN $3 > 0 THEN $4 ELSE last_error_at END, \
                 errors_since_success = CASE WHEN $2 > 0 THEN $5 \
                                        ELSE errors_since_success + $3 END \
                 WHERE name = $1",
                &[&job, &ok, &errors, &us(now), &errors_after_ok],
            )
            .await?;
        }
        let mut has_children: Option<bool> = None;
        for (e, state) in runs {
            let retrying = policy::should_retry(&rec.spec, state, e.attempt);
            let counts_for_children = state == RunState::Succeeded
                || (rec.spec.soft_error && state.is_retryable_failure() && !retrying);
            if counts_for_children {
                let any = match has_children {
                    Some(v) => v,
                    None => {
                        let v = !children_of(c, job).await?.is_empty();
                        has_children = Some(v);
                        v
                    }
                };
                if any {
                    report_to_children(c, job, e.id, now).await?;
                }
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
                        job,
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
                )
                .await?;
            }
        }
        // Release a run waiting under `concurrency: queue` once nothing else is active.
        let (active, held) = active_counts(c, job).await?;
        if active == 0 && held > 0 {
            c.execute(
                "UPDATE runs SET hold = false, not_before = $2 WHERE id = \
                 (SELECT id FROM runs WHERE job = $1 AND state = 'queued' AND hold ORDER BY id LIMIT 1)",
                &[&job, &us(now)],
            )
            .await?;
        }
    }
    Ok(())
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
                    "UPDATE runs SET state = $3, finished_at = $4, \
                     started_at = COALESCE($5, started_at), exit_code = $6, signal = $7, \
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
async fn finish_async(
    c: &Conn,
    worker: &str,
    r: &RunResult,
    max_log: u64,
    now: Timestamp,
) -> TxResult<()> {
    let waiting = c
        .execute(
            "UPDATE runs SET awaiting_completion = true, started_at = COALESCE($3, started_at), \
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
                    "UPDATE runs SET state = completion, finished_at = $3, \
                     started_at = COALESCE($4, started_at), exit_code = $5, \
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
async fn mark_lost(c: &Conn, rows: Vec<Row>, now: Timestamp) -> TxResult<Vec<i64>> {
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

/// Runs whose lease expired become lost.
/// The database clock in microseconds: leases use it so nodes' clocks need not agree.
const DB_NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// Refuse a scheduling write unless `fence` still holds the lease. The row is share-locked for
/// the rest of the transaction, so a takeover waits for this write to commit.
pub async fn check_fence(c: &Conn, fence: Option<&Fence>) -> TxResult<()> {
    let Some(f) = fence else {
        return Ok(());
    };
    let row = c
        .query_opt(
            "SELECT node, epoch FROM leader_lease WHERE id = 1 FOR SHARE",
            &[],
        )
        .await?;
    match row {
        Some(r) => {
            let (node, epoch): (String, i64) = (r.get(0), r.get(1));
            if node == f.node && epoch as u64 == f.epoch {
                Ok(())
            } else {
                Err(StoreError::Fenced(format!(
                    "node {} with epoch {} is not the leader (the lease is {node}'s, epoch {epoch})",
                    f.node, f.epoch
                ))
                .into())
            }
        }
        None => Err(StoreError::Fenced(format!("node {} holds no lease", f.node)).into()),
    }
}

fn lease_from(r: &Row) -> Lease {
    Lease {
        node: r.get(0),
        address: r.get(1),
        epoch: r.get::<_, i64>(2) as u64,
        expires_at: ts(r.get(3)),
    }
}

/// Take or renew the leader lease (database clock).
pub async fn acquire_leadership(
    c: &Conn,
    node: &str,
    address: &str,
    ttl: Duration,
) -> TxResult<Lease> {
    let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    c.execute(
        &format!(
            "INSERT INTO leader_lease AS l (id, node, address, epoch, expires_at) \
             VALUES (1, $1, $2, 1, {DB_NOW} + $3) \
             ON CONFLICT (id) DO UPDATE SET \
               epoch = CASE WHEN l.node = $1 AND l.expires_at >= {DB_NOW} THEN l.epoch ELSE l.epoch + 1 END, \
               node = $1, address = $2, expires_at = {DB_NOW} + $3 \
             WHERE l.node = $1 OR l.expires_at < {DB_NOW}"
        ),
        &[&node, &address, &ttl_us],
    )
    .await?;
    let r = c
        .query_one(
            "SELECT node, address, epoch, expires_at FROM leader_lease WHERE id = 1",
            &[],
        )
        .await?;
    Ok(lease_from(&r))
}

/// Give the lease up.
pub async fn release_leadership(c: &Conn, node: &str, epoch: u64) -> TxResult<()> {
    let epoch = epoch as i64;
    c.execute(
        "UPDATE leader_lease SET expires_at = 0 WHERE id = 1 AND node = $1 AND epoch = $2",
        &[&node, &epoch],
    )
    .await?;
    Ok(())
}

/// Record a node's heartbeat (database clock).
pub async fn node_heartbeat(c: &Conn, node: &str, address: &str) -> TxResult<()> {
    c.execute(
        &format!(
            "INSERT INTO nodes (id, address, last_seen) VALUES ($1, $2, {DB_NOW}) \
             ON CONFLICT (id) DO UPDATE SET address = $2, last_seen = {DB_NOW}"
        ),
        &[&node, &address],
    )
    .await?;
    Ok(())
}

/// The lease and the nodes.
pub async fn cluster_view(c: &Conn) -> TxResult<ClusterView> {
    let lease = c
        .query_opt(
            "SELECT node, address, epoch, expires_at FROM leader_lease WHERE id = 1",
            &[],
        )
        .await?
        .map(|r| lease_from(&r));
    let nodes = c
        .query("SELECT id, address, last_seen FROM nodes ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| NodeInfo {
            id: r.get(0),
            address: r.get(1),
            last_seen: ts(r.get(2)),
        })
        .collect();
    let now: i64 = c.query_one(&format!("SELECT {DB_NOW}"), &[]).await?.get(0);
    Ok(ClusterView {
        lease,
        nodes,
        now: ts(now),
    })
}

/// Jobs written after `since`.
pub async fn changed_jobs(c: &Conn, since: Timestamp) -> TxResult<Vec<JobChange>> {
    Ok(c.query(
        "SELECT name, version, updated_at FROM jobs WHERE updated_at > $1",
        &[&us(since)],
    )
    .await?
    .iter()
    .map(|r| JobChange {
        name: r.get(0),
        version: r.get(1),
        updated_at: ts(r.get(2)),
    })
    .collect())
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

// ---- remote workers and selectors ----

/// Register or refresh a worker; forget workers long unseen that run nothing.
pub async fn upsert_worker(c: &Conn, info: &WorkerInfo, now: Timestamp) -> TxResult<()> {
    let labels = json(&info.labels)?;
    c.execute(
        "INSERT INTO workers (id, labels, slots, version, address, registered_at, last_seen) \
         VALUES ($1, CAST($2::text AS jsonb), $3, $4, $5, $6, $6) \
         ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, slots = excluded.slots, \
         version = excluded.version, address = excluded.address, \
         last_seen = GREATEST(workers.last_seen, excluded.last_seen)",
        &[
            &info.id,
            &labels,
            &i64::from(info.slots),
            &info.version,
            &info.address,
            &us(now),
        ],
    )
    .await?;
    let forget_before = us(now
        .checked_sub(WORKER_FORGET_AFTER)
        .unwrap_or(Timestamp::UNIX_EPOCH));
    c.execute(
        "DELETE FROM workers WHERE last_seen < $1 AND NOT EXISTS \
         (SELECT 1 FROM runs WHERE runs.state = 'running' AND runs.worker = workers.id)",
        &[&forget_before],
    )
    .await?;
    Ok(())
}

/// Registered workers by id, with their running counts.
pub async fn list_workers(c: &Conn, now: Timestamp) -> TxResult<Vec<WorkerStatus>> {
    let stale_before = now
        .checked_sub(WORKER_STALE_AFTER)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let rows = c
        .query(
            "SELECT id, labels::text, slots, version, address, registered_at, last_seen, \
             (SELECT COUNT(*) FROM runs WHERE runs.state = 'running' AND runs.worker = workers.id) \
             FROM workers ORDER BY id",
            &[],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let labels: String = r.try_get(1)?;
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&labels).map_err(|e| StoreError::Backend(e.to_string()))?;
        let slots: i64 = r.try_get(2)?;
        let running: i64 = r.try_get(7)?;
        let last_seen = ts(r.try_get(6)?);
        out.push(WorkerStatus {
            info: WorkerInfo {
                id: r.try_get(0)?,
                labels,
                slots: u32::try_from(slots).unwrap_or(0),
                version: r.try_get(3)?,
                address: r.try_get(4)?,
            },
            registered_at: ts(r.try_get(5)?),
            last_seen,
            running: u64::try_from(running).unwrap_or(0),
            stale: last_seen < stale_before,
        });
    }
    Ok(out)
}

/// Runs `running` on a worker with a lease, with their specs.
pub async fn worker_runs(c: &Conn, worker: &str) -> TxResult<Vec<ClaimedRun>> {
    let cols = RUN_COLS
        .split(',')
        .map(|col| format!("runs.{}", col.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = c
        .query(
            &format!(
                "SELECT {cols}, runs.lease_expires_at, jobs.spec FROM runs \
                 JOIN jobs ON jobs.name = runs.job \
                 WHERE runs.state = 'running' AND runs.worker = $1 \
                 AND NOT runs.awaiting_completion AND runs.lease_expires_at IS NOT NULL \
                 ORDER BY runs.id"
            ),
            &[&worker],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let lease: Option<i64> = r.try_get(RUN_COL_COUNT)?;
        let spec: String = r.try_get(RUN_COL_COUNT + 1)?;
        out.push(ClaimedRun {
            run: run_from_row(r)?,
            spec: parse_spec(&spec)?,
            lease_expires_at: ts(lease.unwrap_or(0)),
        });
    }
    Ok(out)
}

/// Jobs read per query while looking for runs to prune.
const PRUNE_JOB_PAGE: i64 = 128;

/// Non-candidate rows read past per job besides the pinned ones (runs queued before the age
/// cutoff that finished after it).
const PRUNE_SLACK: usize = 64;

/// The condition of a finished run (the only runs pruning deletes).
const FINISHED: &str = "state NOT IN ('queued', 'running')";

/// The runs one [`tempora_store::Store::prune_runs`] call deletes: up to `max` ids, chosen job
/// by job in name order from `start` (inclusive, wrapping around once), and the job to start
/// the next call with (None when every job was visited). Read-only.
pub async fn prune_candidates(
    c: &Conn,
    policy: &Retention,
    now: Timestamp,
    max: u32,
    start: Option<&str>,
) -> TxResult<(Vec<i64>, Option<String>)> {
    let max = max as usize;
    let mut ids = Vec::new();
    if max == 0 || !policy.is_enabled() {
        return Ok((ids, start.map(str::to_owned)));
    }
    let pinned = pinned_runs(c).await?;
    let start = start.unwrap_or("");
    // First the jobs from `start` on, then (wrapping) those before it.
    let passes: [(&str, Option<&str>); 2] = [(start, None), ("", Some(start))];
    for (from, until) in passes {
        if until == Some("") {
            break;
        }
        let mut after: Option<String> = None;
        loop {
            let lo = after.as_deref().unwrap_or(from);
            let op = if after.is_some() { ">" } else { ">=" };
            let until = until.map(str::to_owned);
            let names: Vec<String> = c
                .query(
                    &format!(
                        "SELECT name FROM jobs WHERE name {op} $1 AND ($2::text IS NULL OR name < $2) \
                         ORDER BY name LIMIT $3"
                    ),
                    &[&lo, &until, &PRUNE_JOB_PAGE],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            let Some(last) = names.last().cloned() else {
                break;
            };
            for name in names {
                let budget = max - ids.len();
                job_prune_candidates(c, &name, policy, now, &pinned, budget, &mut ids).await?;
                if ids.len() >= max {
                    // This job may have more: the next call starts with it.
                    return Ok((ids, Some(name)));
                }
            }
            after = Some(last);
        }
    }
    Ok((ids, None))
}

/// Parent runs recorded in dependency progress (a child's next dependency run names them).
async fn pinned_runs(c: &Conn) -> TxResult<std::collections::HashSet<i64>> {
    Ok(c.query("SELECT run_id FROM dependency_progress", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Add to `out` up to `budget` runs of `job` that `policy` lets go, oldest first.
async fn job_prune_candidates(
    c: &Conn,
    job: &str,
    policy: &Retention,
    now: Timestamp,
    pinned: &std::collections::HashSet<i64>,
    budget: usize,
    out: &mut Vec<i64>,
) -> TxResult<()> {
    // The k-th newest finished run (OFFSET k-1), walking `runs_by_job` backwards.
    let nth_newest = async |k: u32| -> TxResult<Option<i64>> {
        let offset = i64::from(k.saturating_sub(1));
        Ok(c.query_opt(
            &format!(
                "SELECT id FROM runs WHERE job = $1 AND {FINISHED} ORDER BY id DESC LIMIT 1 OFFSET $2"
            ),
            &[&job, &offset],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
    };
    // The newest finished run is always kept.
    let Some(newest) = nth_newest(1).await? else {
        return Ok(());
    };
    // Runs with an id below `cut` are beyond the newest `keep_runs` finished ones.
    let cut = match policy.keep_runs {
        Some(_) => nth_newest(policy.keep_newest()).await?.unwrap_or(0),
        None => 0,
    };
    let cutoff = policy.cutoff(now).map(us);
    if cut == 0 && cutoff.is_none() {
        return Ok(());
    }
    let limit = i64::try_from(budget + pinned.len() + PRUNE_SLACK).unwrap_or(i64::MAX);
    let rows = c
        .query(
            &format!(
                "SELECT id, queued_at, finished_at FROM runs \
                 WHERE job = $1 AND id < $2 AND {FINISHED} ORDER BY id LIMIT $3"
            ),
            &[&job, &newest, &limit],
        )
        .await?;
    let mut taken = 0;
    for r in &rows {
        if taken >= budget {
            break;
        }
        let id: i64 = r.try_get(0)?;
        if pinned.contains(&id) {
            continue;
        }
        let take = if id < cut {
            true
        } else if let Some(cutoff) = cutoff {
            let queued_at: i64 = r.try_get(1)?;
            let finished_at: Option<i64> = r.try_get(2)?;
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
pub async fn delete_finished_runs(c: &Conn, ids: &[i64]) -> TxResult<u64> {
    let gone: Vec<i64> = c
        .query(
            &format!(
                "DELETE FROM runs WHERE id = ANY($1) AND {FINISHED} AND NOT EXISTS \
                 (SELECT 1 FROM dependency_progress d WHERE d.run_id = runs.id) RETURNING id"
            ),
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if !gone.is_empty() {
        c.execute("DELETE FROM run_logs WHERE run_id = ANY($1)", &[&gone])
            .await?;
    }
    Ok(gone.len() as u64)
}
