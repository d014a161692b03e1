//! History retention: which finished runs may go, and deleting them.

use super::*;
use tempora_store::txn::retention as prune;

/// The condition of a finished run (the only runs pruning deletes). Every pruning query walks
/// `runs_by_job (job, id)` and reads the state from the row.
pub(super) const FINISHED: &str = "state NOT IN ('queued', 'running')";

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
    sync(prune::prune_candidates(
        &SqliteTx(c),
        policy,
        now,
        max,
        start,
    ))
}

impl prune::PruneRead for SqliteTx<'_> {
    type Error = StoreError;

    async fn job_names(
        &self,
        from: &str,
        after: bool,
        until: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let op = if after { ">" } else { ">=" };
        self.0
            .prepare_cached(&format!(
                "SELECT name FROM jobs WHERE name {op} ?1 AND (?2 IS NULL OR name < ?2) \
                 ORDER BY name LIMIT ?3"
            ))
            .map_err(db)?
            .query_map(params![from, until, limit], |r| r.get(0))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    async fn pinned_runs(&self) -> StoreResult<std::collections::HashSet<i64>> {
        pinned_runs(self.0)
    }

    async fn nth_newest_finished(&self, job: &str, k: u32) -> StoreResult<Option<i64>> {
        // OFFSET k-1, walking `runs_by_job` backwards.
        self.0
            .prepare_cached(&format!(
                "SELECT id FROM runs WHERE job = ?1 AND {FINISHED} ORDER BY id DESC LIMIT 1 OFFSET ?2"
            ))
            .map_err(db)?
            .query_row(params![job, k.saturating_sub(1)], |r| r.get(0))
            .optional()
            .map_err(db)
    }

    async fn finished_below(
        &self,
        job: &str,
        below: i64,
        limit: usize,
    ) -> StoreResult<Vec<prune::FinishedRow>> {
        self.0
            .prepare_cached(&format!(
                "SELECT id, queued_at, finished_at FROM runs \
                 WHERE job = ?1 AND id < ?2 AND {FINISHED} ORDER BY id LIMIT ?3"
            ))
            .map_err(db)?
            .query_map(
                params![job, below, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    async fn chosen(&self, ids: &[i64]) -> StoreResult<()> {
        warm_pages(self.0, ids)
    }
}

/// Read the pages the deletion of `ids` will change (each run's row, its entry in the
/// occurrence index, its output rows), so the writer finds them in memory. A large history does
/// not fit in the page cache, and the runs of one job are scattered over the file: without this
/// the writer thread — and every fire and result queued behind it — would wait for those random
/// reads from disk.
pub(super) fn warm_pages(c: &Connection, ids: &[i64]) -> StoreResult<()> {
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
        if origin == "schedule" || origin == "backfill" {
            c.prepare_cached(
                "SELECT id FROM runs INDEXED BY runs_occurrence \
                 WHERE job = ?1 AND scheduled_for = ?2 AND attempt = ?3 \
                 AND origin IN ('schedule', 'backfill')",
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
pub(super) fn pinned_runs(c: &Connection) -> StoreResult<std::collections::HashSet<i64>> {
    c.prepare_cached("SELECT run_id FROM dependency_progress")
        .map_err(db)?
        .query_map([], |r| r.get(0))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)
}

/// Delete the runs `ids` (chosen by [`prune_candidates`]) and their output, checking again that
/// each is finished and not recorded in dependency progress. Returns how many were deleted.
pub fn delete_finished_runs(c: &Connection, ids: &[i64]) -> StoreResult<u64> {
    let pinned = pinned_runs(c)?;
    let mut deleted = 0u64;
    // An occurrence's run is gone: remember how far per job, so a backfill does not run it again.
    let mut through: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for &id in ids {
        if pinned.contains(&id) {
            continue;
        }
        let gone: Option<(String, i64, String)> = c
            .prepare_cached(&format!(
                "DELETE FROM runs WHERE id = ?1 AND {FINISHED} RETURNING job, scheduled_for, origin"
            ))
            .map_err(db)?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(db)?;
        if let Some((job, scheduled_for, origin)) = gone {
            if origin == "schedule" || origin == "backfill" {
                let e = through.entry(job).or_insert(scheduled_for);
                *e = (*e).max(scheduled_for);
            }
            for sql in [
                "DELETE FROM run_logs WHERE run_id = ?1",
                "DELETE FROM notifications WHERE run_id = ?1",
            ] {
                c.prepare_cached(sql)
                    .map_err(db)?
                    .execute([id])
                    .map_err(db)?;
            }
            deleted += 1;
        }
    }
    for (job, at) in &through {
        c.prepare_cached(
            "UPDATE jobs SET pruned_through = MAX(COALESCE(pruned_through, ?2), ?2) WHERE name = ?1",
        )
        .map_err(db)?
        .execute(params![job, at])
        .map_err(db)?;
    }
    Ok(deleted)
}
