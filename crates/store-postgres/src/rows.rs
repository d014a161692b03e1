//! Mapping between PostgreSQL rows and the store's records.

use tempora_core::run::{Run, RunOverrides, RunState, Trigger};
use tempora_store::{JobRecord, StoreError};
use tokio_postgres::Row;

use crate::pool::{Conn, TxResult};

pub use tempora_store::micros::{ots, ts, us};

/// A non-negative count.
pub fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A backend error about stored data.
pub fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(what.to_string())
}

/// Columns of a job row, in the order [`job_from_row`] reads them.
pub const JOB_COLS: &str = "spec, created_at, updated_at, version, next_fire_at, success_count, \
     error_count, last_success_at, last_error_at, errors_since_success";

/// Parse a stored spec.
pub fn parse_spec<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Backend(format!("stored job spec is unreadable: {e}")))
}

/// Read a job row selected with [`JOB_COLS`].
pub fn job_from_row(r: &Row) -> TxResult<JobRecord> {
    let spec: String = r.try_get(0)?;
    Ok(JobRecord {
        spec: parse_spec(&spec)?,
        created_at: ts(r.try_get(1)?),
        updated_at: ts(r.try_get(2)?),
        version: r.try_get(3)?,
        next_fire_at: ots(r.try_get(4)?),
        success_count: count(r.try_get(5)?),
        error_count: count(r.try_get(6)?),
        last_success_at: ots(r.try_get(7)?),
        last_error_at: ots(r.try_get(8)?),
        errors_since_success: count(r.try_get(9)?),
    })
}

/// Load one job.
pub async fn load_job(c: &Conn, name: &str) -> TxResult<Option<JobRecord>> {
    c.query_opt(
        &format!("SELECT {JOB_COLS} FROM jobs WHERE name = $1"),
        &[&name],
    )
    .await?
    .as_ref()
    .map(job_from_row)
    .transpose()
}

/// Load one job and lock its row until the transaction ends (serializes the writers of a job's
/// runs and counters across nodes).
pub async fn lock_job(c: &Conn, name: &str) -> TxResult<Option<JobRecord>> {
    c.query_opt(
        &format!("SELECT {JOB_COLS} FROM jobs WHERE name = $1 FOR UPDATE"),
        &[&name],
    )
    .await?
    .as_ref()
    .map(job_from_row)
    .transpose()
}

/// Columns of a run row, in the order [`run_from_row`] reads them.
pub const RUN_COLS: &str = "id, job, trigger, scheduled_for, attempt, state, queued_at, not_before, \
     started_at, finished_at, exit_code, signal, worker, error, log_size, log_dropped, \
     cancel_requested, overrides, triggered_by, occurrences, last_scheduled_for";

/// How many columns [`RUN_COLS`] names (a query selecting more reads them from here on).
pub const RUN_COL_COUNT: usize = 21;

/// Read a run row selected with [`RUN_COLS`].
pub fn run_from_row(r: &Row) -> TxResult<Run> {
    let trigger: String = r.try_get(2)?;
    let state: String = r.try_get(5)?;
    let attempt: i64 = r.try_get(4)?;
    let overrides: Option<String> = r.try_get(17)?;
    let triggered_by: Option<String> = r.try_get(18)?;
    Ok(Run {
        id: r.try_get(0)?,
        job: r.try_get(1)?,
        trigger: trigger.parse::<Trigger>().map_err(corrupt)?,
        scheduled_for: ts(r.try_get(3)?),
        attempt: u32::try_from(attempt).map_err(corrupt)?,
        state: state.parse::<RunState>().map_err(corrupt)?,
        queued_at: ts(r.try_get(6)?),
        not_before: ts(r.try_get(7)?),
        started_at: ots(r.try_get(8)?),
        finished_at: ots(r.try_get(9)?),
        exit_code: r.try_get(10)?,
        signal: r.try_get(11)?,
        worker: r.try_get(12)?,
        error: r.try_get(13)?,
        log_bytes: count(r.try_get(14)?),
        log_dropped_bytes: count(r.try_get(15)?),
        cancel_requested: r.try_get(16)?,
        overrides: match overrides {
            None => RunOverrides::default(),
            Some(s) => serde_json::from_str(&s).map_err(corrupt)?,
        },
        triggered_by: match triggered_by {
            None => Vec::new(),
            Some(s) => serde_json::from_str(&s).map_err(corrupt)?,
        },
        occurrences: count(r.try_get(19)?).max(1),
        last_scheduled_for: ots(r.try_get(20)?),
    })
}

/// Load one run.
pub async fn load_run(c: &Conn, id: i64) -> TxResult<Option<Run>> {
    c.query_opt(
        &format!("SELECT {RUN_COLS} FROM runs WHERE id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(run_from_row)
    .transpose()
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_col_count_matches_run_cols() {
        assert_eq!(super::RUN_COLS.split(',').count(), super::RUN_COL_COUNT);
    }
}
