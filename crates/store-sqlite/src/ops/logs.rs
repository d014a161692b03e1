//! A run's output: the shared scripts (`tempora_store::txn::logs`) on this backend's steps.

use super::*;
use tempora_store::LogSlice;
use tempora_store::txn::logs::{self, Chunk, LogSteps};

/// Append output to a run, keeping at most `max` bytes (the oldest go first).
pub fn append_log(c: &Connection, run_id: i64, data: &[u8], max: u64) -> StoreResult<()> {
    sync(logs::append_log(&SqliteTx(c), run_id, data, max))
}

/// Up to `max` bytes of a run's output from `offset`.
pub fn read_log(
    c: &Connection,
    run_id: i64,
    offset: u64,
    max: usize,
) -> StoreResult<Option<LogSlice>> {
    sync(logs::read_log(&SqliteTx(c), run_id, offset, max))
}

impl LogSteps for SqliteTx<'_> {
    type Error = StoreError;

    async fn log_bounds(&self, run_id: i64) -> StoreResult<Option<(i64, i64)>> {
        self.0
            .prepare_cached("SELECT log_size, log_dropped FROM runs WHERE id = ?1")
            .map_err(db)?
            .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db)
    }

    async fn log_state(&self, run_id: i64) -> StoreResult<Option<(String, i64, i64)>> {
        self.0
            .prepare_cached("SELECT state, log_size, log_dropped FROM runs WHERE id = ?1")
            .map_err(db)?
            .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(db)
    }

    async fn insert_chunk(&self, run_id: i64, offset: i64, data: &[u8]) -> StoreResult<()> {
        self.0
            .prepare_cached("INSERT INTO run_logs (run_id, offset, data) VALUES (?1, ?2, ?3)")
            .map_err(db)?
            .execute(params![run_id, offset, data])
            .map_err(db)?;
        Ok(())
    }

    async fn first_chunk(&self, run_id: i64) -> StoreResult<Option<Chunk>> {
        self.0
            .prepare_cached(
                "SELECT offset, data FROM run_logs WHERE run_id = ?1 ORDER BY offset LIMIT 1",
            )
            .map_err(db)?
            .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db)
    }

    async fn delete_chunk(&self, run_id: i64, offset: i64) -> StoreResult<()> {
        self.0
            .prepare_cached("DELETE FROM run_logs WHERE run_id = ?1 AND offset = ?2")
            .map_err(db)?
            .execute(params![run_id, offset])
            .map_err(db)?;
        Ok(())
    }

    async fn set_log_bounds(&self, run_id: i64, size: i64, dropped: i64) -> StoreResult<()> {
        self.0
            .prepare_cached("UPDATE runs SET log_size = ?2, log_dropped = ?3 WHERE id = ?1")
            .map_err(db)?
            .execute(params![run_id, size, dropped])
            .map_err(db)?;
        Ok(())
    }

    async fn chunks(&self, run_id: i64, start: i64, end: i64) -> StoreResult<Vec<Chunk>> {
        self.0
            .prepare_cached(
                "SELECT offset, data FROM run_logs WHERE run_id = ?1 AND offset >= \
                 COALESCE((SELECT MAX(offset) FROM run_logs WHERE run_id = ?1 AND offset <= ?2), 0) \
                 AND offset < ?3 ORDER BY offset",
            )
            .map_err(db)?
            .query_map(params![run_id, start, end], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }
}
