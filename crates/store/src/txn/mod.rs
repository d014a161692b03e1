//! Transaction scripts written once for every backend: what happens when occurrences fire, when
//! a run is triggered, how a new run meets the job's overlap policy, and what follows the end of
//! a run (counters, retry, children's progress, release of a held run), and which finished runs
//! retention may delete ([`retention`]); a run's output under its bound ([`logs`]). Each script makes its
//! decisions (with the pure rules of `tempora_core::policy`) and reads and writes rows only
//! through [`Tx`], the row-level steps a backend provides inside one of its transactions; the
//! backends keep only their SQL.
//!
//! SQLite's steps are synchronous (its writer thread runs a script to completion in one poll,
//! see `tempora_store_sqlite::ops::sync`); PostgreSQL's are async queries on the transaction's
//! connection.

use std::collections::BTreeMap;

use jiff::Timestamp;
use tempora_core::job::JobSpec;
use tempora_core::policy::{self, OverlapAction};
use tempora_core::run::{Run, RunOverrides, RunState, Trigger};

use crate::{JobRecord, StoreError};

mod fire;
pub mod jobs;
pub mod logs;
mod results;
pub mod retention;

pub use fire::{backfill, fire, trigger_run};
pub use results::{Counted, Ended, after_final, after_finals, report_to_children};

/// A job's row as a fire reads it (locked where the backend locks rows).
#[derive(Debug, Clone)]
pub struct FireRow {
    /// The job's version.
    pub version: i64,
    /// Its cursor (next occurrence) as stored, in microseconds (compared at the stores'
    /// precision).
    pub cursor_us: Option<i64>,
    /// Whether it is paused.
    pub paused: bool,
    /// Its spec as stored (JSON).
    pub spec: String,
}

/// A run row to insert.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// The job.
    pub job: &'a str,
    /// What made this attempt.
    pub trigger: Trigger,
    /// What made the first attempt (a retry keeps it).
    pub origin: Trigger,
    /// The occurrence (the trigger time for manual runs).
    pub scheduled_for: Timestamp,
    /// 1 for a first attempt.
    pub attempt: u32,
    /// `queued`, or final (`skipped`, …) when recorded without running.
    pub state: RunState,
    /// Held back by `concurrency: queue` until the job's active run ends.
    pub hold: bool,
    /// When it is recorded.
    pub now: Timestamp,
    /// Not claimable before this instant (retry backoff).
    pub not_before: Timestamp,
    /// Why it is skipped or failed, for a final state.
    pub error: Option<&'a str>,
    /// The overrides of a manual run.
    pub overrides: &'a RunOverrides,
    /// The parents' runs whose successes triggered it (dependent jobs).
    pub triggered_by: &'a [i64],
}

/// The row-level steps of one transaction of a backend, for the scripts of this module.
#[allow(async_fn_in_trait)] // used generically within the workspace, with concrete backends
pub trait Tx {
    /// The backend's error type (it carries store-level outcomes too).
    type Error: From<StoreError>;

    /// The job's row for a fire; `None` when the job does not exist.
    async fn fire_row(&self, job: &str) -> Result<Option<FireRow>, Self::Error>;
    /// The job's record for a trigger (locked where the backend locks rows).
    async fn job_for_update(&self, job: &str) -> Result<Option<JobRecord>, Self::Error>;
    /// One run.
    async fn run(&self, id: i64) -> Result<Option<Run>, Self::Error>;
    /// The newest occurrence of the job whose run retention deleted.
    async fn pruned_through(&self, job: &str) -> Result<Option<Timestamp>, Self::Error>;
    /// (active, held) of the job, each 0 or 1: whether a running or claimable queued run
    /// exists, and whether a held one does (the overlap policies only compare them with zero).
    async fn active_counts(&self, job: &str) -> Result<(u64, u64), Self::Error>;
    /// Insert a run, or fold a skipped occurrence into the job's newest row
    /// ([`crate::folds_into`]); `None` when the occurrence exists already (exactly once).
    async fn insert_run(&self, run: &NewRun<'_>) -> Result<Option<i64>, Self::Error>;
    /// Ask the job's running runs to stop and cancel its queued ones (`concurrency: replace`).
    async fn replace_active(&self, job: &str, now: Timestamp) -> Result<(), Self::Error>;
    /// Move the job's cursor.
    async fn set_cursor(&self, job: &str, next: Option<Timestamp>) -> Result<(), Self::Error>;
    /// Add a batch's successes and errors to the job's counters, stamped `now`.
    async fn add_counters(
        &self,
        job: &str,
        counted: Counted,
        now: Timestamp,
    ) -> Result<(), Self::Error>;
    /// Release the oldest run of the job held under `concurrency: queue` (claimable from `now`).
    async fn release_held(&self, job: &str, now: Timestamp) -> Result<(), Self::Error>;
    /// The jobs that name `parent` among their parents, by name.
    async fn children_of(&self, parent: &str) -> Result<Vec<String>, Self::Error>;
    /// Record that `parent`'s run `run_id` counts for `child`'s next dependency run.
    async fn record_progress(
        &self,
        child: &str,
        parent: &str,
        run_id: i64,
    ) -> Result<(), Self::Error>;
    /// The parents that reported for `child` since its last dependency run, with their runs.
    async fn progress(&self, child: &str) -> Result<BTreeMap<String, i64>, Self::Error>;
    /// Forget `child`'s reported parents (its dependency run is being made).
    async fn clear_progress(&self, child: &str) -> Result<(), Self::Error>;
    /// Record a notification to deliver (state `pending`, due at `now`): `target` and `events`
    /// as JSON.
    async fn insert_notification(
        &self,
        run_id: i64,
        job: &str,
        target: &str,
        events: &str,
        now: Timestamp,
    ) -> Result<(), Self::Error>;
}

/// Create the run of a new occurrence or trigger under the job's overlap policy (`counts` as
/// [`Tx::active_counts`] gave them, kept current here). Returns the id and whether it was
/// queued (false: skipped); `None` when the occurrence existed already.
#[allow(clippy::too_many_arguments)]
pub async fn admit_run<T: Tx>(
    tx: &T,
    spec: &JobSpec,
    trigger: Trigger,
    scheduled_for: Timestamp,
    overrides: &RunOverrides,
    triggered_by: &[i64],
    how: policy::Admission,
    now: Timestamp,
    counts: &mut (u64, u64),
) -> Result<Option<(i64, bool)>, T::Error> {
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
        OverlapAction::Start => tx.insert_run(&base(RunState::Queued, false, None)).await?,
        OverlapAction::Hold => tx.insert_run(&base(RunState::Queued, true, None)).await?,
        OverlapAction::ReplaceThenStart => {
            tx.replace_active(&spec.name, now).await?;
            tx.insert_run(&base(RunState::Queued, false, None)).await?
        }
        OverlapAction::Skip(reason) => {
            tx.insert_run(&base(RunState::Skipped, false, Some(reason.as_str())))
                .await?
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
