//! Transaction bodies of the write operations, one file per topic with the same names as the
//! PostgreSQL store's (`jobs`, `fire`, `claim`, `results`, `cluster`, `workers`, `retention`);
//! the shared steps of creating a run (overlap policy, held runs, folded skips) are here. Each
//! function runs inside the writer's transaction (and its own savepoint); any error rolls the
//! operation back.

use std::collections::HashMap;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

use tempora_core::job::JobSpec;
use tempora_core::run::{Run, RunOverrides, RunState, Trigger};
use tempora_store::txn::{self, Counted, Ended, FireRow, NewRun};
use tempora_store::{
    ClaimedRun, ClusterView, Fence, FireOutcome, FireRequest, JobChange, JobRecord, Lease,
    NodeInfo, PutMode, PutOutcome, Retention, RunResult, StoreError, StoreResult,
    WORKER_FORGET_AFTER, WORKER_STALE_AFTER, WorkerInfo, WorkerStatus,
};

use crate::rows::{
    RUN_COL_COUNT, RUN_COLS, db, load_job, load_run, parse_spec, run_from_row, ts, us,
};

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

/// Run a shared transaction script ([`txn`]) on this connection. SQLite's steps never wait
/// (they are plain calls on the writer thread), so the script completes on its first poll; a
/// script that did not would be a bug, reported as an error rather than a hang.
pub(super) fn sync<T>(script: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let mut script = std::pin::pin!(script);
    match script
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(r) => r,
        Poll::Pending => Err(StoreError::Backend(
            "a SQLite transaction step waited; it never should".into(),
        )),
    }
}

/// The writer's connection inside a transaction, as the shared scripts' [`txn::Tx`].
pub(super) struct SqliteTx<'a>(pub &'a Connection);

impl txn::Tx for SqliteTx<'_> {
    type Error = StoreError;

    async fn fire_row(&self, job: &str) -> StoreResult<Option<FireRow>> {
        self.0
            .prepare_cached("SELECT version, next_fire_at, paused, spec FROM jobs WHERE name = ?1")
            .map_err(db)?
            .query_row([job], |r| {
                Ok(FireRow {
                    version: r.get(0)?,
                    cursor_us: r.get(1)?,
                    paused: r.get(2)?,
                    spec: r.get(3)?,
                })
            })
            .optional()
            .map_err(db)
    }

    async fn job_for_update(&self, job: &str) -> StoreResult<Option<JobRecord>> {
        load_job(self.0, job)
    }

    async fn run(&self, id: i64) -> StoreResult<Option<Run>> {
        load_run(self.0, id)
    }

    async fn pruned_through(&self, job: &str) -> StoreResult<Option<Timestamp>> {
        let us: Option<i64> = self
            .0
            .prepare_cached("SELECT pruned_through FROM jobs WHERE name = ?1")
            .map_err(db)?
            .query_row([job], |r| r.get(0))
            .optional()
            .map_err(db)?
            .flatten();
        Ok(us.and_then(|u| Timestamp::from_microsecond(u).ok()))
    }

    async fn active_counts(&self, job: &str) -> StoreResult<(u64, u64)> {
        active_counts(self.0, job)
    }

    async fn insert_run(&self, run: &NewRun<'_>) -> StoreResult<Option<i64>> {
        insert_run(self.0, run)
    }

    async fn replace_active(&self, job: &str, now: Timestamp) -> StoreResult<()> {
        replace_active(self.0, job, now)
    }

    async fn set_cursor(&self, job: &str, next: Option<Timestamp>) -> StoreResult<()> {
        // Scheduled runs become claimable at their occurrence time (they are due now).
        self.0
            .prepare_cached("UPDATE jobs SET next_fire_at = ?2 WHERE name = ?1")
            .map_err(db)?
            .execute(params![job, next.map(us)])
            .map_err(db)?;
        Ok(())
    }

    async fn add_counters(&self, job: &str, n: Counted, now: Timestamp) -> StoreResult<()> {
        self.0
            .prepare_cached(
                "UPDATE jobs SET success_count = success_count + ?2, \
                 error_count = error_count + ?3, \
                 last_success_at = CASE WHEN ?2 > 0 THEN ?4 ELSE last_success_at END, \
                 last_error_at = CASE WHEN ?3 > 0 THEN ?4 ELSE last_error_at END, \
                 errors_since_success = CASE WHEN ?2 > 0 THEN ?5 \
                                        ELSE errors_since_success + ?3 END \
                 WHERE name = ?1",
            )
            .map_err(db)?
            .execute(params![job, n.ok, n.errors, us(now), n.errors_after_ok])
            .map_err(db)?;
        Ok(())
    }

    async fn release_held(&self, job: &str, now: Timestamp) -> StoreResult<()> {
        self.0
            .prepare_cached(
                "UPDATE runs SET hold = 0, not_before = ?2 WHERE id = \
                 (SELECT id FROM runs WHERE job = ?1 AND state = 'queued' AND hold = 1 \
                  ORDER BY id LIMIT 1)",
            )
            .map_err(db)?
            .execute(params![job, us(now)])
            .map_err(db)?;
        Ok(())
    }

    async fn children_of(&self, parent: &str) -> StoreResult<Vec<String>> {
        children_of(self.0, parent)
    }

    async fn record_progress(&self, child: &str, parent: &str, run_id: i64) -> StoreResult<()> {
        self.0
            .prepare_cached(
                "INSERT OR REPLACE INTO dependency_progress (child, parent, run_id) \
                 VALUES (?1, ?2, ?3)",
            )
            .map_err(db)?
            .execute(params![child, parent, run_id])
            .map_err(db)?;
        Ok(())
    }

    async fn progress(&self, child: &str) -> StoreResult<BTreeMap<String, i64>> {
        self.0
            .prepare_cached("SELECT parent, run_id FROM dependency_progress WHERE child = ?1")
            .map_err(db)?
            .query_map([child], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    async fn clear_progress(&self, child: &str) -> StoreResult<()> {
        self.0
            .prepare_cached("DELETE FROM dependency_progress WHERE child = ?1")
            .map_err(db)?
            .execute([child])
            .map_err(db)?;
        Ok(())
    }

    async fn insert_notification(
        &self,
        run_id: i64,
        job: &str,
        target: &str,
        events: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        crate::notify::insert(self.0, run_id, job, target, events, now)
    }
}

pub(super) fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(t)
}

/// Insert a run; None when the occurrence already exists (exactly once).
pub(super) fn insert_run(c: &Connection, r: &NewRun<'_>) -> StoreResult<Option<i64>> {
    if let Some(id) = fold_skipped(c, r)? {
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
pub(super) fn fold_skipped(c: &Connection, r: &NewRun<'_>) -> StoreResult<Option<i64>> {
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
pub(super) fn active_counts(c: &Connection, job: &str) -> StoreResult<(u64, u64)> {
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
pub(super) fn replace_active(c: &Connection, job: &str, now: Timestamp) -> StoreResult<()> {
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

/// SQL: the reserved label of job `j`'s kind (`tempora.io/command|http|container`, see
/// `tempora_core::kind`).
macro_rules! kind_label {
    () => {
        "('tempora.io/' || CASE \
         WHEN json_type(j.spec, '$.container') IS NOT NULL THEN 'container' \
         WHEN json_type(j.spec, '$.http') IS NOT NULL THEN 'http' ELSE 'command' END)"
    };
}

/// See [`kind_label!`].
pub(super) const KIND_LABEL: &str = kind_label!();

/// SQL condition: the effective selector of job `j` (its `selector` plus its kind's label) is
/// contained in the labels given as JSON in `?5`.
pub(super) const SELECTOR_MATCHES: &str = concat!(
    "NOT EXISTS (SELECT 1 FROM json_each(j.spec, '$.selector') s \
     WHERE NOT EXISTS (SELECT 1 FROM json_each(?5) l WHERE l.key = s.key AND l.value = s.value)) \
     AND EXISTS (SELECT 1 FROM json_each(?5) l WHERE l.value = 'yes' AND l.key = ",
    kind_label!(),
    ")"
);
