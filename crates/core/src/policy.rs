//! Policy decisions, as pure functions: retry/backoff (§3.3), misfire (§3.4) and overlap (§3.5).
//!
//! The store applies these inside its transactions, so both backends decide identically.

use std::time::Duration;

use jiff::Timestamp;

use crate::job::{Concurrency, JobSpec, Misfire};
use crate::run::RunState;

/// Most missed occurrences `misfire: run_all` runs in one catch-up.
pub const RUN_ALL_LIMIT: usize = 100;
/// An occurrence found later than this is "missed" for `misfire: skip`.
pub const SKIP_GRACE: Duration = Duration::from_secs(1);

/// Whether a final attempt should be retried: a failed, timed-out or lost attempt is retried
/// while `attempt <= retries` (so a job makes at most `retries + 1` attempts).
pub fn should_retry(spec: &JobSpec, state: RunState, attempt: u32) -> bool {
    state.is_retryable_failure() && attempt <= spec.retries
}

/// Delay before the retry that follows failed attempt `attempt` (1-based):
/// `retry_backoff · 2^(attempt-1)`, capped by `retry_backoff_max`.
pub fn retry_delay(spec: &JobSpec, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let factor = 1u64 << exp;
    let nanos = spec
        .retry_backoff
        .as_nanos()
        .saturating_mul(u128::from(factor));
    let capped = nanos.min(spec.retry_backoff_max.as_nanos());
    // `capped` is at most retry_backoff_max, which is a Duration, so it fits in u64 seconds.
    Duration::from_nanos(u64::try_from(capped).unwrap_or(u64::MAX))
}

/// What to do with one due occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Create a run for it (subject to the overlap policy).
    Run,
    /// Record it as a `skipped` run with this reason.
    Skip(String),
}

/// A due occurrence and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOccurrence {
    /// The occurrence instant.
    pub at: Timestamp,
    /// Run it or record it as skipped.
    pub disposition: Disposition,
}

fn lateness(now: Timestamp, at: Timestamp) -> Duration {
    let d = now.duration_since(at);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Decide the fate of the occurrences that are due at `now` (ascending, all `<= now`).
///
/// Occurrences later than `epsilon` are skipped. Of the rest: `run_once` runs only the latest
/// (the others are recorded as collapsed into it), `run_all` runs each (the latest
/// [`RUN_ALL_LIMIT`] of them), `skip` runs only those found within [`SKIP_GRACE`] of their time.
/// In normal operation exactly one occurrence is due, a few milliseconds late, and it runs under
/// every policy.
pub fn plan_misfire(
    misfire: Misfire,
    epsilon: Duration,
    due: &[Timestamp],
    now: Timestamp,
) -> Vec<PlannedOccurrence> {
    let eps = crate::duration::format_duration(epsilon);
    let fresh: Vec<usize> = (0..due.len())
        .filter(|&i| lateness(now, due[i]) <= epsilon)
        .collect();
    let latest_fresh = fresh.last().copied();
    let run_all_floor = fresh.len().saturating_sub(RUN_ALL_LIMIT);
    due.iter()
        .enumerate()
        .map(|(i, &at)| {
            let late = lateness(now, at);
            let disposition = if late > epsilon {
                Disposition::Skip(format!(
                    "missed: found {} late, more than epsilon ({eps})",
                    crate::duration::format_duration(Duration::from_millis(
                        u64::try_from(late.as_millis()).unwrap_or(u64::MAX)
                    ))
                ))
            } else {
                match misfire {
                    Misfire::RunOnce => {
                        if Some(i) == latest_fresh {
                            Disposition::Run
                        } else {
                            let latest = latest_fresh.map(|j| due[j]).unwrap_or(at);
                            Disposition::Skip(format!(
                                "missed: collapsed into the run for {latest} (misfire: run_once)"
                            ))
                        }
                    }
                    Misfire::RunAll => {
                        let rank = fresh.iter().position(|&j| j == i).unwrap_or(0);
                        if rank >= run_all_floor {
                            Disposition::Run
                        } else {
                            Disposition::Skip(format!(
                                "missed: more than {RUN_ALL_LIMIT} occurrences to catch up (misfire: run_all)"
                            ))
                        }
                    }
                    Misfire::Skip => {
                        if late <= SKIP_GRACE {
                            Disposition::Run
                        } else {
                            Disposition::Skip("missed (misfire: skip)".to_owned())
                        }
                    }
                }
            };
            PlannedOccurrence { at, disposition }
        })
        .collect()
}

/// What to do with a new run given the job's other runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlapAction {
    /// Queue it for a worker now.
    Start,
    /// Record it as `skipped` with this reason.
    Skip(String),
    /// Queue it, held until the active run ends (`concurrency: queue`).
    Hold,
    /// Ask the active runs to cancel, and queue it now (`concurrency: replace`).
    ReplaceThenStart,
}

/// Apply the overlap policy. `active` counts the job's runs that are running or queued (not held),
/// `held` those waiting under `concurrency: queue`. `force` (manual triggers) bypasses the policy.
pub fn overlap(concurrency: Concurrency, active: u64, held: u64, force: bool) -> OverlapAction {
    if active == 0 || force {
        return OverlapAction::Start;
    }
    match concurrency {
        Concurrency::Allow => OverlapAction::Start,
        Concurrency::Forbid => {
            OverlapAction::Skip("previous run still active (concurrency: forbid)".to_owned())
        }
        Concurrency::Replace => OverlapAction::ReplaceThenStart,
        Concurrency::Queue => {
            if held == 0 {
                OverlapAction::Hold
            } else {
                OverlapAction::Skip(
                    "a run is already waiting for the active one (concurrency: queue)".to_owned(),
                )
            }
        }
    }
}

/// How a new run meets the job's other runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Under the job's overlap policy.
    Policy,
    /// Regardless of it (a manual trigger with `force`).
    Force,
    /// Behind an earlier occurrence of the same catch-up (several missed occurrences run after
    /// downtime, `misfire: run_all`), which was `admitted` (queued or held) or skipped.
    Behind {
        /// Whether the occurrence before this one was queued or held.
        admitted: bool,
    },
}

/// The overlap decision for a new run. The occurrences of a catch-up run one after another,
/// oldest first, whatever the overlap policy: the oldest meets the job's other runs under the
/// policy, each later one waits, held, behind it (released when the job has nothing active) —
/// or is skipped with it. The policy is about a new occurrence meeting a running one, not about
/// a backlog.
pub fn admit(concurrency: Concurrency, active: u64, held: u64, how: Admission) -> OverlapAction {
    match how {
        Admission::Policy => overlap(concurrency, active, held, false),
        Admission::Force => overlap(concurrency, active, held, true),
        Admission::Behind { admitted: true } => OverlapAction::Hold,
        Admission::Behind { admitted: false } => OverlapAction::Skip(
            "missed: the catch-up occurrence before it was skipped (misfire: run_all)".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(retries: u32, backoff: u64, max: u64) -> JobSpec {
        let mut s: JobSpec = serde_json::from_str(r#"{"name":"a","command":"x"}"#).unwrap();
        s.retries = retries;
        s.retry_backoff = Duration::from_secs(backoff);
        s.retry_backoff_max = Duration::from_secs(max);
        s
    }

    #[test]
    fn retry_counts_and_backoff() {
        let s = spec(2, 10, 35);
        assert!(should_retry(&s, RunState::Failed, 1));
        assert!(should_retry(&s, RunState::Lost, 2));
        assert!(!should_retry(&s, RunState::TimedOut, 3));
        assert!(!should_retry(&s, RunState::Cancelled, 1));
        assert!(!should_retry(&s, RunState::Succeeded, 1));
        assert_eq!(retry_delay(&s, 1), Duration::from_secs(10));
        assert_eq!(retry_delay(&s, 2), Duration::from_secs(20));
        assert_eq!(retry_delay(&s, 3), Duration::from_secs(35));
        assert_eq!(retry_delay(&s, 400), Duration::from_secs(35));
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn runs(p: &[PlannedOccurrence]) -> Vec<i64> {
        p.iter()
            .filter(|o| o.disposition == Disposition::Run)
            .map(|o| o.at.as_second())
            .collect()
    }

    #[test]
    fn misfire_policies() {
        let now = ts(1000);
        let due: Vec<_> = [800, 950, 970, 990, 1000].into_iter().map(ts).collect();
        let eps = Duration::from_secs(60);
        let once = plan_misfire(Misfire::RunOnce, eps, &due, now);
        assert_eq!(runs(&once), vec![1000]);
        assert!(matches!(&once[0].disposition, Disposition::Skip(r) if r.contains("epsilon")));
        assert!(matches!(&once[1].disposition, Disposition::Skip(r) if r.contains("collapsed")));
        assert_eq!(
            runs(&plan_misfire(Misfire::RunAll, eps, &due, now)),
            vec![950, 970, 990, 1000]
        );
        assert_eq!(
            runs(&plan_misfire(Misfire::Skip, eps, &due, now)),
            vec![1000]
        );
        // Normal operation: one occurrence a little late runs under every policy.
        for m in [Misfire::RunOnce, Misfire::RunAll, Misfire::Skip] {
            let p = plan_misfire(m, eps, &[ts(999)], ts(999) + Duration::from_millis(3));
            assert_eq!(runs(&p), vec![999]);
        }
    }

    #[test]
    fn run_all_is_capped() {
        let due: Vec<_> = (0..150).map(|i| ts(1000 + i)).collect();
        let p = plan_misfire(Misfire::RunAll, Duration::from_secs(3600), &due, ts(1200));
        let r = runs(&p);
        assert_eq!(r.len(), RUN_ALL_LIMIT);
        assert_eq!(r[0], 1050);
        assert_eq!(p.len(), 150);
    }

    #[test]
    fn overlap_policies() {
        use Concurrency::*;
        assert_eq!(overlap(Forbid, 0, 0, false), OverlapAction::Start);
        assert!(matches!(
            overlap(Forbid, 1, 0, false),
            OverlapAction::Skip(_)
        ));
        assert_eq!(overlap(Forbid, 1, 0, true), OverlapAction::Start);
        assert_eq!(overlap(Allow, 5, 0, false), OverlapAction::Start);
        assert_eq!(
            overlap(Replace, 1, 0, false),
            OverlapAction::ReplaceThenStart
        );
        assert_eq!(overlap(Queue, 1, 0, false), OverlapAction::Hold);
        assert!(matches!(
            overlap(Queue, 1, 1, false),
            OverlapAction::Skip(_)
        ));
    }
}
