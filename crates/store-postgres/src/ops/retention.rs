//! History retention: which finished runs may go, and deleting them.

use super::*;
use tempora_store::txn::retention as prune;

/// The condition of a finished run (the only runs pruning deletes).
pub(super) const FINISHED: &str = "state NOT IN ('queued', 'running')";

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
    prune::prune_candidates(&PgTx(c), policy, now, max, start).await
}

impl prune::PruneRead for PgTx<'_> {
    type Error = crate::pool::TxError;

    async fn job_names(
        &self,
        from: &str,
        after: bool,
        until: Option<&str>,
        limit: u32,
    ) -> TxResult<Vec<String>> {
        let op = if after { ">" } else { ">=" };
        Ok(self
            .0
            .query(
                &format!(
                    "SELECT name FROM jobs WHERE name {op} $1 AND ($2::text IS NULL OR name < $2) \
                     ORDER BY name LIMIT $3"
                ),
                &[&from, &until, &i64::from(limit)],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    async fn pinned_runs(&self) -> TxResult<std::collections::HashSet<i64>> {
        pinned_runs(self.0).await
    }

    async fn nth_newest_finished(&self, job: &str, k: u32) -> TxResult<Option<i64>> {
        let offset = i64::from(k.saturating_sub(1));
        Ok(self
            .0
            .query_opt(
                &format!(
                    "SELECT id FROM runs WHERE job = $1 AND {FINISHED} ORDER BY id DESC LIMIT 1 OFFSET $2"
                ),
                &[&job, &offset],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    async fn finished_below(
        &self,
        job: &str,
        below: i64,
        limit: usize,
    ) -> TxResult<Vec<prune::FinishedRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .0
            .query(
                &format!(
                    "SELECT id, queued_at, finished_at FROM runs \
                     WHERE job = $1 AND id < $2 AND {FINISHED} ORDER BY id LIMIT $3"
                ),
                &[&job, &below, &limit],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
        }
        Ok(out)
    }

    async fn chosen(&self, _ids: &[i64]) -> TxResult<()> {
        Ok(())
    }
}

/// Parent runs recorded in dependency progress (a child's next dependency run names them).
pub(super) async fn pinned_runs(c: &Conn) -> TxResult<std::collections::HashSet<i64>> {
    Ok(c.query("SELECT run_id FROM dependency_progress", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Delete the runs `ids` (chosen by [`prune_candidates`]) and their output, checking again that
/// each is finished and not recorded in dependency progress. Returns how many were deleted.
pub async fn delete_finished_runs(c: &Conn, ids: &[i64]) -> TxResult<u64> {
    let rows = c
        .query(
            &format!(
                "DELETE FROM runs WHERE id = ANY($1) AND {FINISHED} AND NOT EXISTS \
                 (SELECT 1 FROM dependency_progress d WHERE d.run_id = runs.id) \
                 RETURNING id, job, scheduled_for, origin"
            ),
            &[&ids],
        )
        .await?;
    let mut gone: Vec<i64> = Vec::with_capacity(rows.len());
    // An occurrence's run is gone: remember how far per job, so a backfill does not run it again.
    let mut through: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for r in &rows {
        gone.push(r.try_get(0)?);
        let origin: String = r.try_get(3)?;
        if origin == "schedule" || origin == "backfill" {
            let at: i64 = r.try_get(2)?;
            let e = through.entry(r.try_get(1)?).or_insert(at);
            *e = (*e).max(at);
        }
    }
    for (job, at) in &through {
        c.execute(
            "UPDATE jobs SET pruned_through = GREATEST(COALESCE(pruned_through, $2), $2) \
             WHERE name = $1",
            &[job, at],
        )
        .await?;
    }
    if !gone.is_empty() {
        c.execute("DELETE FROM run_logs WHERE run_id = ANY($1)", &[&gone])
            .await?;
        c.execute("DELETE FROM notifications WHERE run_id = ANY($1)", &[&gone])
            .await?;
    }
    Ok(gone.len() as u64)
}
