//! Transaction bodies of the write operations, one file per topic with the same names as the
//! SQLite store's (`jobs`, `fire`, `claim`, `results`, `cluster`, `workers`, `retention`); the
//! shared steps of creating a run (overlap policy, held runs, folded skips) are here. Each
//! function runs inside one transaction opened by the caller; any error rolls the whole
//! operation back.
//!
//! Concurrency between nodes: job definitions (and so the dependency graph) change under one
//! advisory lock; every change of a job's runs that depends on its other runs (overlap policy,
//! counters, retries, release of held runs, dependency progress) first locks the job's row;
//! claims skip rows locked by other claimers; a scheduled occurrence is unique per attempt.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tempora_core::job::JobSpec;
use tempora_core::run::{Run, RunOverrides, RunState, Trigger};
use tempora_store::txn::{self, Counted, Ended, FireRow, NewRun};
use tempora_store::{
    ClaimedRun, ClusterView, Fence, FireOutcome, FireRequest, JobChange, JobRecord, Lease,
    NodeInfo, PutMode, PutOutcome, Retention, RunResult, StoreError, WORKER_FORGET_AFTER,
    WORKER_STALE_AFTER, WorkerInfo, WorkerStatus,
};
use tokio_postgres::Row;

use crate::pool::{Conn, TxResult};
use crate::rows::{RUN_COL_COUNT, RUN_COLS, load_run, lock_job, parse_spec, run_from_row, ts, us};

mod claim;
mod cluster;
mod fire;
mod jobs;
mod logs;
mod results;
mod retention;
mod workers;

pub use claim::*;
pub use cluster::*;
pub use fire::*;
pub use jobs::*;
pub use logs::*;
pub use results::*;
pub use retention::*;
pub use workers::*;

/// Advisory lock key serializing job definition changes (the dependency graph check).
pub(super) const JOBS_LOCK: i64 = 0x7465_6d70_6f72_6102;

/// The transaction's connection, as the shared scripts' [`txn::Tx`].
pub(super) struct PgTx<'a>(pub &'a Conn);

impl txn::Tx for PgTx<'_> {
    type Error = crate::pool::TxError;

    async fn fire_row(&self, job: &str) -> TxResult<Option<FireRow>> {
        let row = self
            .0
            .query_opt(
                "SELECT version, next_fire_at, paused, spec FROM jobs WHERE name = $1 FOR UPDATE",
                &[&job],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(FireRow {
            version: row.try_get(0)?,
            cursor_us: row.try_get(1)?,
            paused: row.try_get(2)?,
            spec: row.try_get(3)?,
        }))
    }

    async fn job_for_update(&self, job: &str) -> TxResult<Option<JobRecord>> {
        lock_job(self.0, job).await
    }

    async fn run(&self, id: i64) -> TxResult<Option<Run>> {
        load_run(self.0, id).await
    }

    async fn pruned_through(&self, job: &str) -> TxResult<Option<Timestamp>> {
        let row = self
            .0
            .query_opt("SELECT pruned_through FROM jobs WHERE name = $1", &[&job])
            .await?;
        let us: Option<i64> = match row {
            Some(r) => r.try_get(0)?,
            None => None,
        };
        Ok(us.and_then(|u| Timestamp::from_microsecond(u).ok()))
    }

    async fn active_counts(&self, job: &str) -> TxResult<(u64, u64)> {
        active_counts(self.0, job).await
    }

    async fn insert_run(&self, run: &NewRun<'_>) -> TxResult<Option<i64>> {
        insert_run(self.0, run).await
    }

    async fn replace_active(&self, job: &str, now: Timestamp) -> TxResult<()> {
        replace_active(self.0, job, now).await
    }

    async fn set_cursor(&self, job: &str, next: Option<Timestamp>) -> TxResult<()> {
        self.0
            .execute(
                "UPDATE jobs SET next_fire_at = $2 WHERE name = $1",
                &[&job, &next.map(us)],
            )
            .await?;
        Ok(())
    }

    async fn add_counters(&self, job: &str, n: Counted, now: Timestamp) -> TxResult<()> {
        self.0
            .execute(
                "UPDATE jobs SET success_count = success_count + $2, \
                 error_count = error_count + $3, \
                 last_success_at = CASE WHEN $2 > 0 THEN $4 ELSE last_success_at END, \
                 last_error_at = CASE WHEN $3 > 0 THEN $4 ELSE last_error_at END, \
                 errors_since_success = CASE WHEN $2 > 0 THEN $5 \
                                        ELSE errors_since_success + $3 END \
                 WHERE name = $1",
                &[&job, &n.ok, &n.errors, &us(now), &n.errors_after_ok],
            )
            .await?;
        Ok(())
    }

    async fn release_held(&self, job: &str, now: Timestamp) -> TxResult<()> {
        self.0
            .execute(
                "UPDATE runs SET hold = false, not_before = $2 WHERE id = \
                 (SELECT id FROM runs WHERE job = $1 AND state = 'queued' AND hold \
                  ORDER BY id LIMIT 1)",
                &[&job, &us(now)],
            )
            .await?;
        Ok(())
    }

    async fn children_of(&self, parent: &str) -> TxResult<Vec<String>> {
        children_of(self.0, parent).await
    }

    async fn insert_notification(
        &self,
        run_id: i64,
        job: &str,
        target: &str,
        events: &str,
        now: Timestamp,
    ) -> TxResult<()> {
        crate::notify::insert(self.0, run_id, job, target, events, now).await
    }

    async fn record_progress(&self, child: &str, parent: &str, run_id: i64) -> TxResult<()> {
        self.0
            .execute(
                "INSERT INTO dependency_progress (child, parent, run_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (child, parent) DO UPDATE SET run_id = EXCLUDED.run_id",
                &[&child, &parent, &run_id],
            )
            .await?;
        Ok(())
    }

    async fn progress(&self, child: &str) -> TxResult<BTreeMap<String, i64>> {
        let mut reported = BTreeMap::new();
        for r in self
            .0
            .query(
                "SELECT parent, run_id FROM dependency_progress WHERE child = $1",
                &[&child],
            )
            .await?
        {
            reported.insert(r.try_get(0)?, r.try_get(1)?);
        }
        Ok(reported)
    }

    async fn clear_progress(&self, child: &str) -> TxResult<()> {
        self.0
            .execute(
                "DELETE FROM dependency_progress WHERE child = $1",
                &[&child],
            )
            .await?;
        Ok(())
    }
}

pub(super) fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(t)
}

pub(super) fn json<T: serde::Serialize + ?Sized>(v: &T) -> TxResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()).into())
}

pub(super) async fn lock_jobs(c: &Conn) -> TxResult<()> {
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&JOBS_LOCK])
        .await?;
    Ok(())
}

/// Insert a run; None when the occurrence already exists (exactly once).
pub(super) async fn insert_run(c: &Conn, r: &NewRun<'_>) -> TxResult<Option<i64>> {
    if let Some(id) = fold_skipped(c, r).await? {
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
             ON CONFLICT (job, scheduled_for, attempt) WHERE origin IN ('schedule', 'backfill') DO NOTHING \
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
pub(super) async fn fold_skipped(c: &Conn, r: &NewRun<'_>) -> TxResult<Option<i64>> {
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
pub(super) async fn active_counts(c: &Conn, job: &str) -> TxResult<(u64, u64)> {
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
pub(super) async fn replace_active(c: &Conn, job: &str, now: Timestamp) -> TxResult<()> {
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
