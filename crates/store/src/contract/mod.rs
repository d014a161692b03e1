//! The store contract suite: behaviour every [`Store`] backend must have. A backend crate runs
//! it with [`store_contract_tests!`](crate::store_contract_tests), giving a factory that returns a
//! fresh, empty store. One file per topic: `jobs`, `fire` (occurrences, misfire, overlap,
//! catch-up), `runs` (claim, finish, retry, cancel, leases, logs), `dependencies`, `cluster`
//! (leadership), `workers` (selectors, registry), `retention`, `faults` (exactly-once through
//! failure points on the write path); access control in `contract_auth`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tempora_core::job::JobSpec;
use tempora_core::kind::Kind;
use tempora_core::policy::{Disposition, PlannedOccurrence};
use tempora_core::run::{RunOverrides, RunState, Trigger};

use crate::{Fence, FireOutcome, FireRequest, PutMode, Retention, RunResult, Store, StoreError};

mod artifacts;
mod cluster;
mod dependencies;
mod faults;
mod fire;
mod jobs;
mod notify;
mod retention;
mod runs;
mod workers;

pub use artifacts::*;
pub use cluster::*;
pub use dependencies::*;
pub use faults::*;
pub use fire::*;
pub use jobs::*;
pub use notify::*;
pub use retention::*;
pub use runs::*;
pub use workers::*;

/// Generate one `#[tokio::test]` per contract case. `$factory` is an async expression returning
/// `(Arc<dyn Store>, guard)`; the guard (e.g. a temp dir) lives for the test.
#[macro_export]
macro_rules! store_contract_tests {
    ($factory:path) => {
        $crate::store_contract_tests!(@cases $factory;
            jobs_crud, invalid_job_stores_nothing, fire_is_exactly_once, stale_fire_writes_nothing,
            misfire_skips_are_recorded, claim_finish_counters_and_retry, manual_retry_keeps_origin,
            overlap_forbid_skips, overlap_queue_holds_then_releases, overlap_replace_cancels,
            cancel_queued_running_and_finished, heartbeat_renews_and_reports_stops,
            expired_leases_become_lost_and_retry, recover_worker_marks_lost, logs_append_read_and_bound,
            pause_resume_moves_cursor, list_runs_newest_first_paginated, delete_removes_runs,
            finish_only_by_holder, finish_times_are_held_to_the_queue_time,
            claim_respects_not_before_and_limit,
            dependencies_trigger_children_once_all_parents_report,
            dependency_checks_refuse_unknown_parents_and_cycles, delete_parent_needs_force,
            async_runs_wait_for_completion, completion_before_exit_is_applied_at_exit,
            mark_success_counts_and_triggers_children, leadership_lease_and_fencing,
            changed_jobs_lists_definition_writes, reference_clock_is_now
        );
        $crate::store_contract_tests!(@cases $factory;
            claim_respects_selectors, claim_respects_capabilities, worker_registry_lists_and_counts,
            worker_runs_hands_out_held_runs_again, consecutive_skips_fold_into_one_row,
            search_runs_filters_across_jobs, catch_up_runs_one_after_another_under_every_policy,
            queued_by_selector_counts_due_runs, job_metrics_lists_labelled_jobs,
            apply_jobs_is_all_or_nothing
        );
        $crate::store_contract_tests!(@cases $factory;
            prune_keep_runs_keeps_active_runs_and_counters, prune_keep_days_keeps_newest_and_active,
            prune_max_rows_bounds_each_call, prune_keeps_runs_in_dependency_progress,
            prune_leaves_no_output_rows, backfill_runs_each_occurrence_once_one_after_another,
            a_second_backfill_waits_behind_the_first, backfill_does_not_rerun_pruned_occurrences,
            notifications_follow_the_end_of_runs, artifacts_round_trip_and_are_kept_while_used
        );
        $crate::store_contract_tests!(@cases $factory;
            fire_is_exactly_once_through_failures,
            claim_and_finish_are_exactly_once_through_failures,
            a_fire_stalled_past_the_lease_is_fenced
        );
        $crate::store_contract_tests!(@module contract_auth; $factory;
            tokens_create_find_revoke, token_bootstrap_and_ensure,
            worker_ids_are_bound_to_their_token, audit_log_appends_pages_filters_and_prunes
        );
    };
    (@module $module:ident; $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $factory().await;
                $crate::$module::$case(store).await;
            }
        )*
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $factory().await;
                $crate::contract::$case(store).await;
            }
        )*
    };
}

pub(super) fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_699_999_200 + s).unwrap()
}

pub(super) fn job(name: &str, extra: &str) -> JobSpec {
    let sep = if extra.is_empty() { "" } else { "," };
    serde_json::from_str(&format!(
        r#"{{"name":"{name}","command":"true"{sep}{extra}}}"#
    ))
    .unwrap()
}

pub(super) const LEASE: Duration = Duration::from_secs(30);

pub(super) fn result(id: i64, state: RunState, at: Timestamp) -> RunResult {
    RunResult {
        run_id: id,
        state,
        started_at: Some(at),
        finished_at: at,
        exit_code: Some(if state == RunState::Succeeded { 0 } else { 1 }),
        signal: None,
        error: None,
        log_tail: Vec::new(),
        awaits_completion: false,
    }
}

/// Trigger, claim and finish one run of `job` at `at` (ending 1 s later, with some output);
/// returns its id.
pub(super) async fn run_once(s: &Arc<dyn Store>, job: &str, at: Timestamp, state: RunState) -> i64 {
    let run = s
        .trigger_run(job, RunOverrides::default(), false, at)
        .await
        .unwrap();
    let claimed = s.claim_runs("w", 1, at, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run.id, run.id);
    let mut r = result(run.id, state, at + Duration::from_secs(1));
    r.log_tail = format!("output of {}", run.id).into_bytes();
    s.finish_runs("w", vec![r]).await.unwrap();
    run.id
}

pub(super) fn plan(at: &[Timestamp]) -> Vec<PlannedOccurrence> {
    at.iter()
        .map(|&at| PlannedOccurrence {
            at,
            disposition: Disposition::Run,
        })
        .collect()
}
