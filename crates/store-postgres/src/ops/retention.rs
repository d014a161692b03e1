//! History retention: which finished runs may go, and deleting them.

use super::*;

/// Jobs read per query while looking for runs to prune.
pub(super) const PRUNE_JOB_PAGE: i64 = 128;

/// Non-candidate rows read past per job besides the pinned ones (runs queued before the age
/// cutoff that finished after it).
pub(super) const PRUNE_SLACK: usize = 64;

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
pub(super) async fn pinned_runs(c: &Conn) -> TxResult<std::collections::HashSet<i64>> {
    Ok(c.query("SELECT run_id FROM dependency_progress", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Add to `out` up to `budget` runs of `job` that `policy` lets go, oldest first.
pub(super) async fn job_prune_candidates(
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
