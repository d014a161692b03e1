//! History retention: which finished runs may go, and deleting them.

use super::*;

/// Jobs read per query while looking for runs to prune.
pub(super) const PRUNE_JOB_PAGE: u32 = 128;

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
    let max = max as usize;
    let mut ids = Vec::new();
    if max == 0 || !policy.is_enabled() {
        return Ok((ids, start.map(str::to_owned)));
    }
    let pinned = pinned_runs(c)?;
    let start = start.unwrap_or("");
    // First the jobs from `start` on, then (wrapping) those before it.
    let passes: [(&str, Option<&str>); 2] = [(start, None), ("", Some(start))];
    for (from, until) in passes {
        if until == Some("") {
            break;
        }
        let mut after: Option<String> = None;
        loop {
            let names: Vec<String> = {
                let lo = after.as_deref().unwrap_or(from);
                let op = if after.is_some() { ">" } else { ">=" };
                let sql = format!(
                    "SELECT name FROM jobs WHERE name {op} ?1 AND (?2 IS NULL OR name < ?2) \
                     ORDER BY name LIMIT ?3"
                );
                c.prepare_cached(&sql)
                    .map_err(db)?
                    .query_map(params![lo, until, PRUNE_JOB_PAGE], |r| r.get(0))
                    .map_err(db)?
                    .collect::<Result<_, _>>()
                    .map_err(db)?
            };
            let Some(last) = names.last().cloned() else {
                break;
            };
            for name in names {
                let budget = max - ids.len();
                job_prune_candidates(c, &name, policy, now, &pinned, budget, &mut ids)?;
                if ids.len() >= max {
                    // This job may have more: the next call starts with it.
                    warm_pages(c, &ids)?;
                    return Ok((ids, Some(name)));
                }
            }
            after = Some(last);
        }
    }
    warm_pages(c, &ids)?;
    Ok((ids, None))
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
        if origin == "schedule" {
            c.prepare_cached(
                "SELECT id FROM runs INDEXED BY runs_occurrence \
                 WHERE job = ?1 AND scheduled_for = ?2 AND attempt = ?3 AND origin = 'schedule'",
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

/// Add to `out` up to `budget` runs of `job` that `policy` lets go, oldest first.
pub(super) fn job_prune_candidates(
    c: &Connection,
    job: &str,
    policy: &Retention,
    now: Timestamp,
    pinned: &std::collections::HashSet<i64>,
    budget: usize,
    out: &mut Vec<i64>,
) -> StoreResult<()> {
    // The k-th newest finished run (OFFSET k-1), walking `runs_by_job` backwards.
    let nth_newest = |k: u32| -> StoreResult<Option<i64>> {
        c.prepare_cached(&format!(
            "SELECT id FROM runs WHERE job = ?1 AND {FINISHED} ORDER BY id DESC LIMIT 1 OFFSET ?2"
        ))
        .map_err(db)?
        .query_row(params![job, k.saturating_sub(1)], |r| r.get(0))
        .optional()
        .map_err(db)
    };
    // The newest finished run is always kept.
    let Some(newest) = nth_newest(1)? else {
        return Ok(());
    };
    // Runs with an id below `cut` are beyond the newest `keep_runs` finished ones.
    let cut = match policy.keep_runs {
        Some(_) => nth_newest(policy.keep_newest())?.unwrap_or(0),
        None => 0,
    };
    let cutoff = policy.cutoff(now).map(us);
    if cut == 0 && cutoff.is_none() {
        return Ok(());
    }
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT id, queued_at, finished_at FROM runs \
             WHERE job = ?1 AND id < ?2 AND {FINISHED} ORDER BY id"
        ))
        .map_err(db)?;
    let mut rows = stmt.query(params![job, newest]).map_err(db)?;
    let mut taken = 0;
    while taken < budget {
        let Some(r) = rows.next().map_err(db)? else {
            break;
        };
        let id: i64 = r.get(0).map_err(db)?;
        if pinned.contains(&id) {
            continue;
        }
        let take = if id < cut {
            true
        } else if let Some(cutoff) = cutoff {
            let queued_at: i64 = r.get(1).map_err(db)?;
            let finished_at: Option<i64> = r.get(2).map_err(db)?;
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
pub fn delete_finished_runs(c: &Connection, ids: &[i64]) -> StoreResult<u64> {
    let pinned = pinned_runs(c)?;
    let mut deleted = 0u64;
    for &id in ids {
        if pinned.contains(&id) {
            continue;
        }
        let n = c
            .prepare_cached(&format!("DELETE FROM runs WHERE id = ?1 AND {FINISHED}"))
            .map_err(db)?
            .execute([id])
            .map_err(db)?;
        if n > 0 {
            c.prepare_cached("DELETE FROM run_logs WHERE run_id = ?1")
                .map_err(db)?
                .execute([id])
                .map_err(db)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
