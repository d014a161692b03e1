//! History retention: which finished runs a pruning pass may delete. The choice is read-only
//! (each backend runs it on a reading connection or a read transaction); the deletion checks
//! again, in its own transaction, that each run is finished and not in dependency progress.

use std::collections::HashSet;

use jiff::Timestamp;

use crate::Retention;
use crate::StoreError;
use crate::micros::us;

/// Jobs read per query while looking for runs to prune.
pub const PRUNE_JOB_PAGE: u32 = 128;

/// Non-candidate rows read past per job besides the pinned ones (runs queued before the age
/// cutoff that finished after it).
pub const PRUNE_SLACK: usize = 64;

/// A finished run as the choice reads it: (id, queued_at, finished_at), microseconds.
pub type FinishedRow = (i64, i64, Option<i64>);

/// The reads of a pruning choice, in a backend.
#[allow(async_fn_in_trait)] // used generically within the workspace, with concrete backends
pub trait PruneRead {
    /// The backend's error type.
    type Error: From<StoreError>;

    /// Job names in order, from `from` (inclusive, or exclusive when `after`), below `until`
    /// when given, at most `limit`.
    async fn job_names(
        &self,
        from: &str,
        after: bool,
        until: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, Self::Error>;
    /// Runs recorded in dependency progress (never deleted).
    async fn pinned_runs(&self) -> Result<HashSet<i64>, Self::Error>;
    /// The id of the `k`-th newest (1-based) finished run of `job`.
    async fn nth_newest_finished(&self, job: &str, k: u32) -> Result<Option<i64>, Self::Error>;
    /// The finished runs of `job` with an id below `below`, oldest first, at most `limit`.
    async fn finished_below(
        &self,
        job: &str,
        below: i64,
        limit: usize,
    ) -> Result<Vec<FinishedRow>, Self::Error>;
    /// Called with the chosen ids before they are returned (SQLite reads the pages their
    /// deletion will change, so the writer finds them in memory).
    async fn chosen(&self, ids: &[i64]) -> Result<(), Self::Error>;
}

/// The runs one [`crate::Store::prune_runs`] call deletes: up to `max` ids, chosen job by job
/// in name order from `start` (inclusive, wrapping around once), and the job to start the next
/// call with (None when every job was visited).
pub async fn prune_candidates<R: PruneRead>(
    r: &R,
    policy: &Retention,
    now: Timestamp,
    max: u32,
    start: Option<&str>,
) -> Result<(Vec<i64>, Option<String>), R::Error> {
    let max = max as usize;
    let mut ids = Vec::new();
    if max == 0 || !policy.is_enabled() {
        return Ok((ids, start.map(str::to_owned)));
    }
    let pinned = r.pinned_runs().await?;
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
            let names = r
                .job_names(lo, after.is_some(), until, PRUNE_JOB_PAGE)
                .await?;
            let Some(last) = names.last().cloned() else {
                break;
            };
            for name in names {
                let budget = max - ids.len();
                job_candidates(r, &name, policy, now, &pinned, budget, &mut ids).await?;
                if ids.len() >= max {
                    // This job may have more: the next call starts with it.
                    r.chosen(&ids).await?;
                    return Ok((ids, Some(name)));
                }
            }
            after = Some(last);
        }
    }
    r.chosen(&ids).await?;
    Ok((ids, None))
}

/// Add to `out` up to `budget` runs of `job` that `policy` lets go, oldest first.
async fn job_candidates<R: PruneRead>(
    r: &R,
    job: &str,
    policy: &Retention,
    now: Timestamp,
    pinned: &HashSet<i64>,
    budget: usize,
    out: &mut Vec<i64>,
) -> Result<(), R::Error> {
    // The newest finished run is always kept.
    let Some(newest) = r.nth_newest_finished(job, 1).await? else {
        return Ok(());
    };
    // Runs with an id below `cut` are beyond the newest `keep_runs` finished ones.
    let cut = match policy.keep_runs {
        Some(_) => r
            .nth_newest_finished(job, policy.keep_newest())
            .await?
            .unwrap_or(0),
        None => 0,
    };
    let cutoff = policy.cutoff(now).map(us);
    if cut == 0 && cutoff.is_none() {
        return Ok(());
    }
    let limit = budget + pinned.len() + PRUNE_SLACK;
    let rows = r.finished_below(job, newest, limit).await?;
    out.extend(pick(&rows, cut, cutoff, pinned, budget));
    Ok(())
}

/// Of a job's finished runs (oldest first, the newest excluded), those to delete: every run
/// below `cut` (beyond the newest `keep_runs`) and every run that finished before `cutoff`, at
/// most `budget`, never a pinned one.
pub fn pick(
    rows: &[FinishedRow],
    cut: i64,
    cutoff: Option<i64>,
    pinned: &HashSet<i64>,
    budget: usize,
) -> Vec<i64> {
    let mut out = Vec::new();
    for &(id, queued_at, finished_at) in rows {
        if out.len() >= budget {
            break;
        }
        if pinned.contains(&id) {
            continue;
        }
        let take = if id < cut {
            true
        } else if let Some(cutoff) = cutoff {
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
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_takes_beyond_the_cut_and_before_the_cutoff() {
        let pinned: HashSet<i64> = [2].into();
        let rows = [
            (1, 10, Some(11)),
            (2, 12, Some(13)),
            (3, 14, Some(15)),
            (4, 16, Some(40)),
            (5, 17, Some(18)),
            (6, 50, Some(51)),
            (7, 52, Some(53)),
        ];
        // keep_runs cut at 4: 1 and 3 (2 is pinned); the age cutoff 30 adds 5 (finished at 18)
        // but not 4 (finished at 40); 6 was queued after the cutoff: the walk stops there.
        assert_eq!(pick(&rows, 4, Some(30), &pinned, 10), [1, 3, 5]);
        assert_eq!(pick(&rows, 4, Some(30), &pinned, 2), [1, 3]);
        assert_eq!(pick(&rows, 4, None, &pinned, 10), [1, 3]);
        assert_eq!(pick(&rows, 0, None, &pinned, 10), Vec::<i64>::new());
    }
}
