//! Property tests of the misfire, overlap and retry policies.

use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;
use tempora_core::job::{Concurrency, JobSpec, Misfire};
use tempora_core::policy::{
    Disposition, OverlapAction, RUN_ALL_LIMIT, SKIP_GRACE, overlap, plan_misfire, retry_delay,
    should_retry,
};
use tempora_core::run::RunState;

fn misfire() -> impl Strategy<Value = Misfire> {
    prop_oneof![
        Just(Misfire::RunOnce),
        Just(Misfire::RunAll),
        Just(Misfire::Skip)
    ]
}

proptest! {
    /// Every due occurrence gets exactly one disposition, in order; nothing later than epsilon runs;
    /// run_once runs at most one (the latest fresh one); run_all runs every fresh one up to the cap;
    /// skip runs only those within the grace.
    #[test]
    fn misfire_plan_is_total_and_consistent(
        mut offsets in proptest::collection::vec(0u64..600_000, 1..300),
        eps_ms in 0u64..120_000,
        m in misfire(),
    ) {
        offsets.sort_unstable();
        offsets.dedup();
        let now = Timestamp::from_second(2_000_000_000).unwrap();
        // offsets are how late each occurrence is, in ms; due must be ascending in time.
        let due: Vec<Timestamp> = offsets.iter().rev().map(|&ms| now - Duration::from_millis(ms)).collect();
        let eps = Duration::from_millis(eps_ms);
        let plan = plan_misfire(m, eps, &due, now);
        prop_assert_eq!(plan.len(), due.len());
        for (p, &d) in plan.iter().zip(&due) {
            prop_assert_eq!(p.at, d);
        }
        let fresh: Vec<usize> = (0..due.len()).filter(|&i| now.duration_since(due[i]).as_millis() as u64 <= eps_ms).collect();
        let runs: Vec<usize> = (0..plan.len()).filter(|&i| plan[i].disposition == Disposition::Run).collect();
        for &i in &runs {
            prop_assert!(fresh.contains(&i), "an occurrence later than epsilon ran");
        }
        for p in &plan {
            if let Disposition::Skip(reason) = &p.disposition {
                prop_assert!(!reason.is_empty());
            }
        }
        match m {
            Misfire::RunOnce => prop_assert_eq!(runs, fresh.last().copied().into_iter().collect::<Vec<_>>()),
            Misfire::RunAll => {
                let expect: Vec<usize> = fresh.iter().copied().skip(fresh.len().saturating_sub(RUN_ALL_LIMIT)).collect();
                prop_assert_eq!(runs, expect);
            }
            Misfire::Skip => {
                for &i in &runs {
                    prop_assert!(now.duration_since(due[i]).as_millis() as u128 <= SKIP_GRACE.as_millis());
                }
            }
        }
    }

    /// Backoff doubles and never exceeds the cap; retries stop after `retries` attempts.
    #[test]
    fn retry_policy(retries in 0u32..20, backoff in 0u64..100, cap in 100u64..10_000, attempt in 1u32..40) {
        let mut spec: JobSpec = serde_json::from_str(r#"{"name":"a","command":"x"}"#).unwrap();
        spec.retries = retries;
        spec.retry_backoff = Duration::from_secs(backoff);
        spec.retry_backoff_max = Duration::from_secs(cap);
        let d = retry_delay(&spec, attempt);
        prop_assert!(d <= Duration::from_secs(cap));
        prop_assert!(d >= Duration::from_secs(backoff).min(Duration::from_secs(cap)));
        prop_assert!(retry_delay(&spec, attempt + 1) >= d);
        prop_assert_eq!(should_retry(&spec, RunState::Failed, attempt), attempt <= retries);
        prop_assert!(!should_retry(&spec, RunState::Cancelled, attempt));
    }

    /// Nothing active → start; force → start; otherwise the policy decides.
    #[test]
    fn overlap_policy(active in 0u64..5, held in 0u64..2, force: bool) {
        for c in [Concurrency::Forbid, Concurrency::Allow, Concurrency::Replace, Concurrency::Queue] {
            let a = overlap(c, active, held, force);
            if active == 0 || force {
                prop_assert_eq!(a, OverlapAction::Start);
            } else {
                match c {
                    Concurrency::Allow => prop_assert_eq!(a, OverlapAction::Start),
                    Concurrency::Forbid => prop_assert!(matches!(a, OverlapAction::Skip(_))),
                    Concurrency::Replace => prop_assert_eq!(a, OverlapAction::ReplaceThenStart),
                    Concurrency::Queue => prop_assert_eq!(held == 0, a == OverlapAction::Hold),
                }
            }
        }
    }
}
