//! A run's output: the shared scripts (`tempora_store::txn::logs`) on this backend's steps.

use super::*;
use tempora_store::LogSlice;
use tempora_store::txn::logs::{self, Chunk, LogSteps};

/// Append output to a run, keeping at most `max` bytes (the oldest go first).
pub async fn append_log(c: &Conn, run_id: i64, data: &[u8], max: u64) -> TxResult<()> {
    logs::append_log(&PgTx(c), run_id, data, max).await
}

/// Up to `max` bytes of a run's output from `offset`.
pub async fn read_log(
    c: &Conn,
    run_id: i64,
    offset: u64,
    max: usize,
) -> TxResult<Option<LogSlice>> {
    logs::read_log(&PgTx(c), run_id, offset, max).await
}

impl LogSteps for PgTx<'_> {
    type Error = crate::pool::TxError;

    async fn log_bounds(&self, run_id: i64) -> TxResult<Option<(i64, i64)>> {
        let row = self
            .0
            .query_opt(
                "SELECT log_size, log_dropped FROM runs WHERE id = $1 FOR UPDATE",
                &[&run_id],
            )
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    async fn log_state(&self, run_id: i64) -> TxResult<Option<(String, i64, i64)>> {
        let row = self
            .0
            .query_opt(
                "SELECT state, log_size, log_dropped FROM runs WHERE id = $1",
                &[&run_id],
            )
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
            None => None,
        })
    }

    async fn insert_chunk(&self, run_id: i64, offset: i64, data: &[u8]) -> TxResult<()> {
        self.0
            .execute(
                "INSERT INTO run_logs (run_id, pos, data) VALUES ($1, $2, $3)",
                &[&run_id, &offset, &data],
            )
            .await?;
        Ok(())
    }

    async fn first_chunk(&self, run_id: i64) -> TxResult<Option<Chunk>> {
        let row = self
            .0
            .query_opt(
                "SELECT pos, data FROM run_logs WHERE run_id = $1 ORDER BY pos LIMIT 1",
                &[&run_id],
            )
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    async fn delete_chunk(&self, run_id: i64, offset: i64) -> TxResult<()> {
        self.0
            .execute(
                "DELETE FROM run_logs WHERE run_id = $1 AND pos = $2",
                &[&run_id, &offset],
            )
            .await?;
        Ok(())
    }

    async fn set_log_bounds(&self, run_id: i64, size: i64, dropped: i64) -> TxResult<()> {
        self.0
            .execute(
                "UPDATE runs SET log_size = $2, log_dropped = $3 WHERE id = $1",
                &[&run_id, &size, &dropped],
            )
            .await?;
        Ok(())
    }

    async fn chunks(&self, run_id: i64, start: i64, end: i64) -> TxResult<Vec<Chunk>> {
        let rows = self
            .0
            .query(
                "SELECT pos, data FROM run_logs WHERE run_id = $1 AND pos >= \
                 COALESCE((SELECT MAX(pos) FROM run_logs WHERE run_id = $1 AND pos <= $2), 0) \
                 AND pos < $3 ORDER BY pos",
                &[&run_id, &start, &end],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push((r.try_get(0)?, r.try_get(1)?));
        }
        Ok(out)
    }
}
