//! Mapping between SQLite rows and the store's records.

use rusqlite::{Connection, OptionalExtension, Row};
use tempora_core::run::{Run, RunOverrides, RunState, Trigger};
use tempora_store::{JobRecord, StoreError, StoreResult};

pub use tempora_store::micros::{ots, ts, us};

/// Map a SQLite error to a store error.
pub fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Columns of a job row, in the order [`job_from_row`] reads them.
pub const JOB_COLS: &str = "spec, created_at, updated_at, version, next_fire_at, success_count, \
     error_count, last_success_at, last_error_at, errors_since_success";

/// Read a job row selected with [`JOB_COLS`].
pub fn job_from_row(r: &Row<'_>) -> rusqlite::Result<(String, JobRecordParts)> {
    Ok((
        r.get(0)?,
        JobRecordParts {
            created_at: r.get(1)?,
            updated_at: r.get(2)?,
            version: r.get(3)?,
            next_fire_at: r.get(4)?,
            success_count: r.get(5)?,
            error_count: r.get(6)?,
            last_success_at: r.get(7)?,
            last_error_at: r.get(8)?,
            errors_since_success: r.get(9)?,
        },
    ))
}

/// The non-spec columns of a job row.
pub struct JobRecordParts {
    created_at: i64,
    updated_at: i64,
    version: i64,
    next_fire_at: Option<i64>,
    success_count: i64,
    error_count: i64,
    last_success_at: Option<i64>,
    last_error_at: Option<i64>,
    errors_since_success: i64,
}

/// Parse a stored spec.
pub fn parse_spec<T: serde::de::DeserializeOwned>(json: &str) -> StoreResult<T> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Backend(format!("stored job spec is unreadable: {e}")))
}

/// Assemble a job record.
pub fn job_record(spec_json: &str, p: JobRecordParts) -> StoreResult<JobRecord> {
    Ok(JobRecord {
        spec: parse_spec(spec_json)?,
        created_at: ts(p.created_at),
        updated_at: ts(p.updated_at),
        version: p.version,
        next_fire_at: ots(p.next_fire_at),
        success_count: u64::try_from(p.success_count).unwrap_or(0),
        error_count: u64::try_from(p.error_count).unwrap_or(0),
        last_success_at: ots(p.last_success_at),
        last_error_at: ots(p.last_error_at),
        errors_since_success: u64::try_from(p.errors_since_success).unwrap_or(0),
    })
}

/// Load one job.
pub fn load_job(c: &Connection, name: &str) -> StoreResult<Option<JobRecord>> {
    let row = c
        .prepare_cached(&format!("SELECT {JOB_COLS} FROM jobs WHERE name = ?1"))
        .map_err(db)?
        .query_row([name], job_from_row)
        .optional()
        .map_err(db)?;
    row.map(|(spec, parts)| job_record(&spec, parts))
        .transpose()
}

/// Columns of a run row, in the order [`run_from_row`] reads them.
pub const RUN_COLS: &str = "id, job, trigger, scheduled_for, attempt, state, queued_at, not_before, \
     started_at, finished_at, exit_code, signal, worker, error, log_size, log_dropped, \
     cancel_requested, overrides, triggered_by, occurrences, last_scheduled_for";

/// How many columns [`RUN_COLS`] names (a query selecting more reads them from here on).
pub const RUN_COL_COUNT: usize = 21;

/// Read a run row selected with [`RUN_COLS`].
pub fn run_from_row(r: &Row<'_>) -> rusqlite::Result<Run> {
    let trigger: String = r.get(2)?;
    let state: String = r.get(5)?;
    let overrides: Option<String> = r.get(17)?;
    let triggered_by: Option<String> = r.get(18)?;
    let bad = |i: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::new(std::io::Error::other(what)),
        )
    };
    Ok(Run {
        id: r.get(0)?,
        job: r.get(1)?,
        trigger: trigger
            .parse::<Trigger>()
            .map_err(|e| bad(2, e.to_string()))?,
        scheduled_for: ts(r.get(3)?),
        attempt: r.get(4)?,
        state: state
            .parse::<RunState>()
            .map_err(|e| bad(5, e.to_string()))?,
        queued_at: ts(r.get(6)?),
        not_before: ts(r.get(7)?),
        started_at: ots(r.get(8)?),
        finished_at: ots(r.get(9)?),
        exit_code: r.get(10)?,
        signal: r.get(11)?,
        worker: r.get(12)?,
        error: r.get(13)?,
        log_bytes: u64::try_from(r.get::<_, i64>(14)?).unwrap_or(0),
        log_dropped_bytes: u64::try_from(r.get::<_, i64>(15)?).unwrap_or(0),
        cancel_requested: r.get::<_, i64>(16)? != 0,
        overrides: match overrides {
            None => RunOverrides::default(),
            Some(s) => serde_json::from_str(&s).map_err(|e| bad(17, e.to_string()))?,
        },
        triggered_by: match triggered_by {
            None => Vec::new(),
            Some(s) => serde_json::from_str(&s).map_err(|e| bad(18, e.to_string()))?,
        },
        occurrences: u64::try_from(r.get::<_, i64>(19)?).unwrap_or(1).max(1),
        last_scheduled_for: ots(r.get(20)?),
    })
}

/// Load one run.
pub fn load_run(c: &Connection, id: i64) -> StoreResult<Option<Run>> {
    c.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"))
        .map_err(db)?
        .query_row([id], run_from_row)
        .optional()
        .map_err(db)
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_col_count_matches_run_cols() {
        assert_eq!(super::RUN_COLS.split(',').count(), super::RUN_COL_COUNT);
    }
}
