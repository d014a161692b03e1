//! The store contract suite: behaviour every [`Store`] backend must have. A backend crate runs
//! it with [`store_contract_tests!`](crate::store_contract_tests), giving a factory that returns a
//! fresh, empty store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tempora_core::job::JobSpec;
use tempora_core::policy::{Disposition, PlannedOccurrence};
use tempora_core::run::{RunOverrides, RunState, Trigger};

use crate::{Fence, FireOutcome, FireRequest, PutMode, Retention, RunResult, Store, StoreError};

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
            finish_only_by_holder, claim_respects_not_before_and_limit,
            dependencies_trigger_children_once_all_parents_report,
            dependency_checks_refuse_unknown_parents_and_cycles, delete_parent_needs_force,
            async_runs_wait_for_completion, completion_before_exit_is_applied_at_exit,
            mark_success_counts_and_triggers_children, leadership_lease_and_fencing,
            changed_jobs_lists_definition_writes
        );
        $crate::store_contract_tests!(@cases $factory;
            claim_respects_selectors, worker_registry_lists_and_counts,
            worker_runs_hands_out_held_runs_again, consecutive_skips_fold_into_one_row,
            search_runs_filters_across_jobs, catch_up_runs_one_after_another_under_every_policy,
            queued_by_selector_counts_due_runs, job_metrics_lists_labelled_jobs,
            apply_jobs_is_all_or_nothing
        );
        $crate::store_contract_tests!(@cases $factory;
            prune_keep_runs_keeps_active_runs_and_counters, prune_keep_days_keeps_newest_and_active,
            prune_max_rows_bounds_each_call, prune_keeps_runs_in_dependency_progress
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

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_699_999_200 + s).unwrap()
}

fn job(name: &str, extra: &str) -> JobSpec {
    let sep = if extra.is_empty() { "" } else { "," };
    serde_json::from_str(&format!(
        r#"{{"name":"{name}","command":"true"{sep}{extra}}}"#
    ))
    .unwrap()
}

const LEASE: Duration = Duration::from_secs(30);

fn result(id: i64, state: RunState, at: Timestamp) -> RunResult {
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

/// Create, read, list (paginated), upsert, refuse duplicates, delete.
pub async fn jobs_crud(s: Arc<dyn Store>) {
    let a = s
        .put_job(job("b", r#""schedule":"0 * * * *""#), PutMode::Create, t(0))
        .await
        .unwrap();
    assert!(a.created);
    assert_eq!(a.record.version, 1);
    assert_eq!(a.record.next_fire_at, Some(t(3600)));
    assert!(matches!(
        s.put_job(job("b", ""), PutMode::Create, t(1)).await,
        Err(StoreError::JobExists(_))
    ));
    s.put_job(job("a", ""), PutMode::Create, t(1))
        .await
        .unwrap();
    s.put_job(job("c", ""), PutMode::Upsert, t(1))
        .await
        .unwrap();
    let up = s
        .put_job(
            job("b", r#""schedule":"0 * * * *","description":"x""#),
            PutMode::Upsert,
            t(5),
        )
        .await
        .unwrap();
    assert!(!up.created);
    assert_eq!(up.record.version, 2);
    assert_eq!(up.record.created_at, t(0));
    assert_eq!(
        up.record.next_fire_at, a.record.next_fire_at,
        "cursor kept when schedule unchanged"
    );
    let names = |v: Vec<crate::JobRecord>| v.into_iter().map(|j| j.spec.name).collect::<Vec<_>>();
    assert_eq!(names(s.list_jobs(None, 10).await.unwrap()), ["a", "b", "c"]);
    assert_eq!(names(s.list_jobs(None, 2).await.unwrap()), ["a", "b"]);
    assert_eq!(names(s.list_jobs(Some("b"), 2).await.unwrap()), ["c"]);
    assert_eq!(
        s.get_job("b")
            .await
            .unwrap()
            .unwrap()
            .spec
            .description
            .as_deref(),
        Some("x")
    );
    assert!(s.delete_job("b", false).await.unwrap());
    assert!(!s.delete_job("b", false).await.unwrap());
    assert!(s.get_job("b").await.unwrap().is_none());
    let counts = s.counts().await.unwrap();
    assert_eq!(counts.jobs, 2);
}

/// A refused write stores nothing.
pub async fn invalid_job_stores_nothing(s: Arc<dyn Store>) {
    let e = s
        .put_job(job("x", r#""schedule":"not cron""#), PutMode::Upsert, t(0))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(ref v) if v.field == "schedule"),
        "{e:?}"
    );
    s.put_job(job("y", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    let e = s
        .put_job(
            job("y", r#""timezone":"Nowhere/Land""#),
            PutMode::Upsert,
            t(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(ref v) if v.field == "timezone"));
    assert!(s.get_job("x").await.unwrap().is_none());
    assert_eq!(s.get_job("y").await.unwrap().unwrap().version, 1);
}

fn plan(at: &[Timestamp]) -> Vec<PlannedOccurrence> {
    at.iter()
        .map(|&at| PlannedOccurrence {
            at,
            disposition: Disposition::Run,
        })
        .collect()
}

/// Firing the same occurrence twice creates one run.
pub async fn fire_is_exactly_once(s: Arc<dyn Store>) {
    let rec = s
        .put_job(
            job("j", r#""schedule":"@every 10s","concurrency":"allow""#),
            PutMode::Create,
            t(0),
        )
        .await
        .unwrap()
        .record;
    let first = rec.next_fire_at.unwrap();
    let req = FireRequest {
        job: "j".into(),
        version: rec.version,
        expected_cursor: first,
        occurrences: plan(&[first]),
        skipped_note: None,
        next_cursor: Some(first + Duration::from_secs(10)),
    };
    let out = s.fire(vec![req.clone()], first, None).await.unwrap();
    assert!(matches!(&out[0], FireOutcome::Fired { queued, .. } if queued.len() == 1));
    // A replay with the moved cursor (e.g. a retried transaction) must not duplicate.
    let mut replay = req;
    replay.expected_cursor = first + Duration::from_secs(10);
    replay.next_cursor = Some(first + Duration::from_secs(20));
    let out = s.fire(vec![replay], first, None).await.unwrap();
    assert!(matches!(&out[0], FireOutcome::Fired { queued, .. } if queued.is_empty()));
    let runs = s.list_runs("j", None, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].scheduled_for, first);
    assert_eq!(runs[0].trigger, Trigger::Schedule);
    assert_eq!(runs[0].state, RunState::Queued);
    assert_eq!(
        s.get_job("j").await.unwrap().unwrap().next_fire_at,
        Some(first + Duration::from_secs(20))
    );
}

/// A plan made from an old version or cursor is refused without writing.
pub async fn stale_fire_writes_nothing(s: Arc<dyn Store>) {
    let rec = s
        .put_job(
            job("j", r#""schedule":"@every 10s""#),
            PutMode::Create,
            t(0),
        )
        .await
        .unwrap()
        .record;
    let first = rec.next_fire_at.unwrap();
    let stale = FireRequest {
        job: "j".into(),
        version: rec.version + 1,
        expected_cursor: first,
        occurrences: plan(&[first]),
        skipped_note: None,
        next_cursor: None,
    };
    let gone = FireRequest {
        job: "nope".into(),
        ..stale.clone()
    };
    let out = s.fire(vec![stale, gone], first, None).await.unwrap();
    assert!(out.iter().all(|o| matches!(o, FireOutcome::Stale { .. })));
    assert!(s.list_runs("j", None, 10).await.unwrap().is_empty());
    assert_eq!(
        s.get_job("j").await.unwrap().unwrap().next_fire_at,
        Some(first)
    );
}

/// Skipped occurrences are recorded with their reason.
pub async fn misfire_skips_are_recorded(s: Arc<dyn Store>) {
    let rec = s
        .put_job(
            job("j", r#""schedule":"@every 10s""#),
            PutMode::Create,
            t(0),
        )
        .await
        .unwrap()
        .record;
    let c = rec.next_fire_at.unwrap();
    let occ = vec![
        PlannedOccurrence {
            at: c,
            disposition: Disposition::Skip("missed: too late".into()),
        },
        PlannedOccurrence {
            at: c + Duration::from_secs(10),
            disposition: Disposition::Run,
        },
    ];
    s.fire(
        vec![FireRequest {
            job: "j".into(),
            version: rec.version,
            expected_cursor: c,
            occurrences: occ,
            skipped_note: Some("3 older occurrences not recorded".into()),
            next_cursor: Some(c + Duration::from_secs(20)),
        }],
        c + Duration::from_secs(100),
        None,
    )
    .await
    .unwrap();
    let runs = s.list_runs("j", None, 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].state, RunState::Skipped);
    assert!(runs[1].error.as_deref().unwrap().contains("too late"));
    assert!(runs[1].error.as_deref().unwrap().contains("3 older"));
    assert!(runs[1].finished_at.is_some());
    assert_eq!(runs[0].state, RunState::Queued);
}

/// `search_runs` lists every job's runs newest first, by job, state, trigger and window.
pub async fn search_runs_filters_across_jobs(s: Arc<dyn Store>) {
    for name in ["sa", "sb"] {
        s.put_job(job(name, r#""concurrency":"allow""#), PutMode::Create, t(0))
            .await
            .unwrap();
    }
    let a = s
        .trigger_run("sa", RunOverrides::default(), false, t(10))
        .await
        .unwrap();
    let b = s
        .trigger_run("sb", RunOverrides::default(), false, t(20))
        .await
        .unwrap();
    let claimed = s.claim_runs("w", 1, t(21), LEASE).await.unwrap();
    assert_eq!(claimed[0].run.id, a.id);
    let ids = |runs: Vec<tempora_core::run::Run>| runs.iter().map(|r| r.id).collect::<Vec<_>>();
    let search = |f: crate::RunFilter, before: Option<i64>, limit: u32| {
        let s = s.clone();
        async move { ids(s.search_runs(&f, before, limit).await.unwrap()) }
    };
    use crate::RunFilter;
    assert_eq!(
        search(RunFilter::default(), None, 10).await,
        vec![b.id, a.id]
    );
    assert_eq!(
        search(RunFilter::default(), Some(b.id), 10).await,
        vec![a.id]
    );
    assert_eq!(search(RunFilter::default(), None, 1).await, vec![b.id]);
    let f = RunFilter {
        state: Some(RunState::Running),
        ..RunFilter::default()
    };
    assert_eq!(search(f, None, 10).await, vec![a.id]);
    let f = RunFilter {
        job: Some("sb".into()),
        trigger: Some(Trigger::Manual),
        ..RunFilter::default()
    };
    assert_eq!(search(f, None, 10).await, vec![b.id]);
    let f = RunFilter {
        since: Some(t(15)),
        until: Some(t(25)),
        ..RunFilter::default()
    };
    assert_eq!(search(f, None, 10).await, vec![b.id]);
    let f = RunFilter {
        trigger: Some(Trigger::Schedule),
        ..RunFilter::default()
    };
    assert!(search(f, None, 10).await.is_empty());
}

/// Consecutive skipped occurrences of a job fold into one row with a count, across fires and
/// whatever skipped them (misfire or overlap); a run in between starts a new row.
pub async fn consecutive_skips_fold_into_one_row(s: Arc<dyn Store>) {
    let rec = s
        .put_job(
            job("f", r#""schedule":"@every 10s""#),
            PutMode::Create,
            t(0),
        )
        .await
        .unwrap()
        .record;
    let c = rec.next_fire_at.unwrap();
    let at = |k: u64| c + Duration::from_secs(10 * k);
    let fire = |cursor: Timestamp, occ: Vec<PlannedOccurrence>, next: Timestamp| FireRequest {
        job: "f".into(),
        version: rec.version,
        expected_cursor: cursor,
        occurrences: occ,
        skipped_note: None,
        next_cursor: Some(next),
    };
    let skip = |k: u64| PlannedOccurrence {
        at: at(k),
        disposition: Disposition::Skip(format!("missed: {k}")),
    };
    let run = |k: u64| PlannedOccurrence {
        at: at(k),
        disposition: Disposition::Run,
    };
    // Three skips in one fire, a run (queued: forbid then skips the next two, in two fires).
    s.fire(
        vec![fire(at(0), vec![skip(0), skip(1), skip(2), run(3)], at(4))],
        at(3),
        None,
    )
    .await
    .unwrap();
    for k in [4, 5] {
        s.fire(vec![fire(at(k), vec![run(k)], at(k + 1))], at(k), None)
            .await
            .unwrap();
    }
    let runs = s.list_runs("f", None, 10).await.unwrap();
    let shape: Vec<(RunState, u64, Timestamp, Option<Timestamp>)> = runs
        .iter()
        .rev()
        .map(|r| {
            (
                r.state,
                r.occurrences,
                r.scheduled_for,
                r.last_scheduled_for,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (RunState::Skipped, 3, at(0), Some(at(2))),
            (RunState::Queued, 1, at(3), None),
            (RunState::Skipped, 2, at(4), Some(at(5))),
        ]
    );
    // The folded row keeps the first occurrence's reason.
    assert_eq!(runs[2].error.as_deref(), Some("missed: 0"));
    assert!(runs[0].error.as_deref().unwrap().contains("forbid"));
}

/// Claim → finish updates counters; a failure is retried after the backoff as a new row.
pub async fn claim_finish_counters_and_retry(s: Arc<dyn Store>) {
    s.put_job(
        job("j", r#""retries":1,"retry_backoff":"5s""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let run = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    assert_eq!(
        (run.state, run.trigger, run.attempt),
        (RunState::Queued, Trigger::Manual, 1)
    );
    let claimed = s.claim_runs("w1", 10, t(1), LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run.state, RunState::Running);
    assert_eq!(claimed[0].run.worker.as_deref(), Some("w1"));
    assert_eq!(claimed[0].spec.name, "j");
    assert!(
        s.claim_runs("w2", 10, t(1), LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let mut r = result(run.id, RunState::Failed, t(2));
    r.error = Some("exit status 1".into());
    s.finish_runs("w1", vec![r]).await.unwrap();
    let runs = s.list_runs("j", None, 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    let retry = &runs[0];
    assert_eq!(
        (retry.trigger, retry.attempt, retry.state),
        (Trigger::Retry, 2, RunState::Queued)
    );
    assert_eq!(retry.scheduled_for, run.scheduled_for);
    assert!(retry.not_before > retry.queued_at);
    assert_eq!(runs[1].state, RunState::Failed);
    assert_eq!(runs[1].exit_code, Some(1));
    // A failure that is retried is not counted yet (as in Chronos): only the last attempt's.
    let job = s.get_job("j").await.unwrap().unwrap();
    assert_eq!((job.success_count, job.error_count), (0, 0));
    assert!(job.last_error_at.is_none());
    // Not claimable before the backoff.
    assert!(
        s.claim_runs("w1", 10, Timestamp::now(), LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let later = Timestamp::now() + Duration::from_secs(6);
    let c2 = s.claim_runs("w1", 10, later, LEASE).await.unwrap();
    assert_eq!(c2.len(), 1);
    s.finish_runs("w1", vec![result(c2[0].run.id, RunState::Failed, later)])
        .await
        .unwrap();
    // retries = 1: attempt 2 is the last.
    let runs = s.list_runs("j", None, 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    let job = s.get_job("j").await.unwrap().unwrap();
    assert_eq!((job.error_count, job.errors_since_success), (1, 1));
    assert!(job.last_error_at.is_some());
}

/// Retries of manual runs are retries too (and carry the overrides).
pub async fn manual_retry_keeps_origin(s: Arc<dyn Store>) {
    s.put_job(
        job("j", r#""retries":2,"retry_backoff":"0s""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let mut o = RunOverrides::default();
    o.env.insert("X".into(), "1".into());
    let run = s.trigger_run("j", o.clone(), false, t(1)).await.unwrap();
    assert_eq!(run.overrides, o);
    let c = s.claim_runs("w", 1, Timestamp::now(), LEASE).await.unwrap();
    s.finish_runs(
        "w",
        vec![result(c[0].run.id, RunState::TimedOut, Timestamp::now())],
    )
    .await
    .unwrap();
    let c = s.claim_runs("w", 1, Timestamp::now(), LEASE).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].run.attempt, 2);
    assert_eq!(c[0].run.overrides, o);
    s.finish_runs(
        "w",
        vec![result(c[0].run.id, RunState::Succeeded, Timestamp::now())],
    )
    .await
    .unwrap();
    let job = s.get_job("j").await.unwrap().unwrap();
    assert_eq!((job.success_count, job.error_count), (1, 0));
}

/// `concurrency: forbid` records an overlapping occurrence as skipped; `force` bypasses it.
pub async fn overlap_forbid_skips(s: Arc<dyn Store>) {
    s.put_job(job("j", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    let a = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    assert_eq!(a.state, RunState::Queued);
    let b = s
        .trigger_run("j", RunOverrides::default(), false, t(2))
        .await
        .unwrap();
    assert_eq!(b.state, RunState::Skipped);
    assert!(b.error.unwrap().contains("forbid"));
    let c = s
        .trigger_run("j", RunOverrides::default(), true, t(3))
        .await
        .unwrap();
    assert_eq!(c.state, RunState::Queued);
}

/// `concurrency: queue` holds one run until the active one ends.
pub async fn overlap_queue_holds_then_releases(s: Arc<dyn Store>) {
    s.put_job(job("j", r#""concurrency":"queue""#), PutMode::Create, t(0))
        .await
        .unwrap();
    let a = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let b = s
        .trigger_run("j", RunOverrides::default(), false, t(2))
        .await
        .unwrap();
    let c = s
        .trigger_run("j", RunOverrides::default(), false, t(3))
        .await
        .unwrap();
    assert_eq!(b.state, RunState::Queued);
    assert_eq!(c.state, RunState::Skipped);
    let now = Timestamp::now();
    let claimed = s.claim_runs("w", 10, now, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "the held run is not claimable");
    assert_eq!(claimed[0].run.id, a.id);
    s.finish_runs("w", vec![result(a.id, RunState::Succeeded, now)])
        .await
        .unwrap();
    let claimed = s
        .claim_runs("w", 10, Timestamp::now(), LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run.id, b.id);
}

/// `concurrency: replace` flags the running run for cancellation and queues the new one.
pub async fn overlap_replace_cancels(s: Arc<dyn Store>) {
    s.put_job(
        job("j", r#""concurrency":"replace""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let a = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let now = Timestamp::now();
    s.claim_runs("w", 10, now, LEASE).await.unwrap();
    let b = s
        .trigger_run("j", RunOverrides::default(), false, t(2))
        .await
        .unwrap();
    assert_eq!(b.state, RunState::Queued);
    assert!(s.get_run(a.id).await.unwrap().unwrap().cancel_requested);
    assert_eq!(
        s.heartbeat("w", &[a.id], now, LEASE).await.unwrap(),
        vec![a.id]
    );
}

/// Cancel: queued → cancelled at once; running → flagged; finished → conflict.
pub async fn cancel_queued_running_and_finished(s: Arc<dyn Store>) {
    s.put_job(job("j", r#""concurrency":"allow""#), PutMode::Create, t(0))
        .await
        .unwrap();
    let a = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let r = s.request_cancel(a.id, t(2)).await.unwrap();
    assert_eq!(r.state, RunState::Cancelled);
    assert!(matches!(
        s.request_cancel(a.id, t(3)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.request_cancel(999_999, t(3)).await,
        Err(StoreError::RunNotFound(_))
    ));
    let b = s
        .trigger_run("j", RunOverrides::default(), false, t(4))
        .await
        .unwrap();
    s.claim_runs("w", 10, Timestamp::now(), LEASE)
        .await
        .unwrap();
    let r = s.request_cancel(b.id, t(5)).await.unwrap();
    assert_eq!(r.state, RunState::Running);
    assert!(r.cancel_requested);
    let job = s.get_job("j").await.unwrap().unwrap();
    assert_eq!((job.success_count, job.error_count), (0, 0));
}

/// Heartbeats renew leases and report runs that must stop.
pub async fn heartbeat_renews_and_reports_stops(s: Arc<dyn Store>) {
    s.put_job(job("j", r#""concurrency":"allow""#), PutMode::Create, t(0))
        .await
        .unwrap();
    let a = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let now = Timestamp::now();
    s.claim_runs("w", 10, now, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        s.heartbeat("w", &[a.id], now, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    // Renewed: not reaped at now + 5 s.
    assert!(
        s.reap_expired(now + Duration::from_secs(5), None)
            .await
            .unwrap()
            .is_empty()
    );
    // Another worker's heartbeat for it, or an unknown id, is told to stop.
    assert_eq!(
        s.heartbeat("other", &[a.id], now, LEASE).await.unwrap(),
        vec![a.id]
    );
    assert_eq!(
        s.heartbeat("w", &[424_242], now, LEASE).await.unwrap(),
        vec![424_242]
    );
}

/// Expired leases → lost → retried per policy.
pub async fn expired_leases_become_lost_and_retry(s: Arc<dyn Store>) {
    s.put_job(
        job("j", r#""retries":1,"retry_backoff":"0s""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let a = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let now = Timestamp::now();
    s.claim_runs("w", 10, now, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        s.reap_expired(now + Duration::from_secs(1), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.reap_expired(now + Duration::from_secs(3), None)
            .await
            .unwrap(),
        vec![a.id]
    );
    let lost = s.get_run(a.id).await.unwrap().unwrap();
    assert_eq!(lost.state, RunState::Lost);
    assert!(lost.error.unwrap().contains("lease"));
    // The late result of the lost attempt is ignored.
    s.finish_runs("w", vec![result(a.id, RunState::Succeeded, now)])
        .await
        .unwrap();
    assert_eq!(
        s.get_run(a.id).await.unwrap().unwrap().state,
        RunState::Lost
    );
    let runs = s.list_runs("j", None, 10).await.unwrap();
    assert_eq!(runs[0].attempt, 2);
    assert_eq!(runs[0].state, RunState::Queued);
}

/// Startup recovery: the previous incarnation's running runs become lost.
pub async fn recover_worker_marks_lost(s: Arc<dyn Store>) {
    s.put_job(job("j", r#""concurrency":"allow""#), PutMode::Create, t(0))
        .await
        .unwrap();
    let a = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let b = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let now = Timestamp::now();
    s.claim_runs("node/local", 1, now, LEASE).await.unwrap();
    s.claim_runs("elsewhere", 1, now, LEASE).await.unwrap();
    let lost = s
        .recover_worker("node/local", "server restarted", now)
        .await
        .unwrap();
    assert_eq!(lost, vec![a.id]);
    assert_eq!(
        s.get_run(b.id).await.unwrap().unwrap().state,
        RunState::Running
    );
    let r = s.get_run(a.id).await.unwrap().unwrap();
    assert_eq!(r.error.as_deref(), Some("server restarted"));
}

/// Output: append, read from offsets, bounded keeping the tail.
pub async fn logs_append_read_and_bound(s: Arc<dyn Store>) {
    s.put_job(job("j", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    let a = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    s.claim_runs("w", 1, Timestamp::now(), LEASE).await.unwrap();
    s.append_log(a.id, b"hello ".to_vec()).await.unwrap();
    s.append_log(a.id, b"world\n".to_vec()).await.unwrap();
    let l = s.read_log(a.id, 0, 1 << 20).await.unwrap().unwrap();
    assert_eq!(l.data, b"hello world\n");
    assert_eq!((l.offset, l.next_offset, l.dropped_before), (0, 12, 0));
    assert_eq!(l.state, RunState::Running);
    let l = s.read_log(a.id, 3, 4).await.unwrap().unwrap();
    assert_eq!(l.data, b"lo w");
    let l = s.read_log(a.id, 12, 100).await.unwrap().unwrap();
    assert!(l.data.is_empty());
    // Beyond the bound (10 MiB by default, or what the factory set): the tail is kept.
    let big = vec![b'x'; 6 * 1024 * 1024];
    s.append_log(a.id, big.clone()).await.unwrap();
    s.append_log(a.id, big).await.unwrap();
    let mut r = result(a.id, RunState::Succeeded, Timestamp::now());
    r.log_tail = b"END".to_vec();
    s.finish_runs("w", vec![r]).await.unwrap();
    let run = s.get_run(a.id).await.unwrap().unwrap();
    assert_eq!(run.log_bytes, 12 + 12 * 1024 * 1024 + 3);
    assert!(run.log_dropped_bytes > 0);
    let l = s.read_log(a.id, 0, 64 << 20).await.unwrap().unwrap();
    assert_eq!(l.dropped_before, run.log_dropped_bytes);
    assert_eq!(l.offset, run.log_dropped_bytes);
    assert!(l.data.ends_with(b"xxEND"));
    assert_eq!(l.data.len() as u64, run.log_bytes - run.log_dropped_bytes);
    assert!(l.data.len() <= 10 * 1024 * 1024);
    assert_eq!(l.state, RunState::Succeeded);
    assert!(s.read_log(777_777, 0, 10).await.unwrap().is_none());
}

/// Pausing clears the cursor; resuming recomputes it from now.
pub async fn pause_resume_moves_cursor(s: Arc<dyn Store>) {
    let rec = s
        .put_job(
            job("j", r#""schedule":"*/5 * * * *""#),
            PutMode::Create,
            t(0),
        )
        .await
        .unwrap()
        .record;
    assert!(rec.next_fire_at.is_some());
    let p = s.set_paused("j", true, t(10)).await.unwrap();
    assert!(p.spec.paused);
    assert_eq!(p.next_fire_at, None);
    assert_eq!(p.version, rec.version + 1);
    assert!(s.schedule_entries(None, 100).await.unwrap().is_empty());
    let r = s.set_paused("j", false, t(3600)).await.unwrap();
    assert!(r.next_fire_at.unwrap() > t(3600));
    let entries = s.schedule_entries(None, 100).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].spec.schedule.as_deref(), Some("*/5 * * * *"));
    // Pages by name.
    for n in ["a", "b", "c"] {
        s.put_job(job(n, r#""schedule":"@hourly""#), PutMode::Create, t(3600))
            .await
            .unwrap();
    }
    let page1 = s.schedule_entries(None, 2).await.unwrap();
    let names1: Vec<&str> = page1.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names1, ["a", "b"]);
    let page2 = s.schedule_entries(Some("b"), 2).await.unwrap();
    let names2: Vec<&str> = page2.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names2, ["c", "j"]);
    assert!(s.schedule_entries(Some("j"), 2).await.unwrap().is_empty());
    assert!(matches!(
        s.set_paused("nope", true, t(0)).await,
        Err(StoreError::JobNotFound(_))
    ));
}

/// History is newest first with `before` pagination.
pub async fn list_runs_newest_first_paginated(s: Arc<dyn Store>) {
    s.put_job(job("j", r#""concurrency":"allow""#), PutMode::Create, t(0))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            s.trigger_run("j", RunOverrides::default(), false, t(i))
                .await
                .unwrap()
                .id,
        );
    }
    let page = s.list_runs("j", None, 10).await.unwrap();
    assert_eq!(page.len(), 10);
    assert_eq!(page[0].id, ids[24]);
    let next = s.list_runs("j", Some(page[9].id), 100).await.unwrap();
    assert_eq!(next.len(), 15);
    assert_eq!(next[14].id, ids[0]);
}

/// Deleting a job removes its runs; their workers are told to stop.
pub async fn delete_removes_runs(s: Arc<dyn Store>) {
    s.put_job(job("j", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    let a = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    s.claim_runs("w", 1, Timestamp::now(), LEASE).await.unwrap();
    s.append_log(a.id, b"x".to_vec()).await.unwrap();
    assert!(s.delete_job("j", false).await.unwrap());
    assert!(s.get_run(a.id).await.unwrap().is_none());
    assert_eq!(
        s.heartbeat("w", &[a.id], Timestamp::now(), LEASE)
            .await
            .unwrap(),
        vec![a.id]
    );
    // A late result for it is harmless.
    s.finish_runs(
        "w",
        vec![result(a.id, RunState::Succeeded, Timestamp::now())],
    )
    .await
    .unwrap();
}

/// Only the worker holding a run can finish it.
pub async fn finish_only_by_holder(s: Arc<dyn Store>) {
    s.put_job(job("j", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    let a = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    s.claim_runs("w1", 1, Timestamp::now(), LEASE)
        .await
        .unwrap();
    s.finish_runs(
        "w2",
        vec![result(a.id, RunState::Succeeded, Timestamp::now())],
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_run(a.id).await.unwrap().unwrap().state,
        RunState::Running
    );
}

/// Claims honour `not_before` and the requested maximum, oldest first.
pub async fn claim_respects_not_before_and_limit(s: Arc<dyn Store>) {
    s.put_job(job("j", r#""concurrency":"allow""#), PutMode::Create, t(0))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            s.trigger_run("j", RunOverrides::default(), false, t(i))
                .await
                .unwrap()
                .id,
        );
    }
    assert!(
        s.claim_runs("w", 10, t(-10), LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let c = s.claim_runs("w", 2, t(100), LEASE).await.unwrap();
    assert_eq!(c.iter().map(|c| c.run.id).collect::<Vec<_>>(), ids[..2]);
    let counts = s.counts().await.unwrap();
    assert_eq!((counts.queued, counts.running), (3, 2));
}

/// A child runs once every parent has succeeded (or failed with `soft_error`) since its last run.
pub async fn dependencies_trigger_children_once_all_parents_report(s: Arc<dyn Store>) {
    s.put_job(job("a", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    s.put_job(job("b", r#""soft_error":true"#), PutMode::Create, t(0))
        .await
        .unwrap();
    s.put_job(job("c", r#""parents":["a","b"]"#), PutMode::Create, t(0))
        .await
        .unwrap();
    let now = Timestamp::now();
    let ra = s
        .trigger_run("a", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let rb = s
        .trigger_run("b", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    s.claim_runs("w", 10, now, LEASE).await.unwrap();
    s.finish_runs("w", vec![result(ra.id, RunState::Succeeded, now)])
        .await
        .unwrap();
    assert!(
        s.list_runs("c", None, 10).await.unwrap().is_empty(),
        "b has not reported yet"
    );
    // b fails, but with soft_error (and no retries left) it still counts.
    s.finish_runs("w", vec![result(rb.id, RunState::Failed, now)])
        .await
        .unwrap();
    let c = s.list_runs("c", None, 10).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].trigger, Trigger::Dependency);
    let mut by = c[0].triggered_by.clone();
    by.sort_unstable();
    assert_eq!(by, vec![ra.id, rb.id]);
    // Progress was consumed: a alone does not trigger c again.
    let ra2 = s
        .trigger_run("a", RunOverrides::default(), false, t(2))
        .await
        .unwrap();
    let cl = s
        .claim_runs("w", 10, Timestamp::now(), LEASE)
        .await
        .unwrap();
    assert!(cl.iter().any(|x| x.run.id == ra2.id));
    s.finish_runs(
        "w",
        vec![result(ra2.id, RunState::Succeeded, Timestamp::now())],
    )
    .await
    .unwrap();
    assert_eq!(s.list_runs("c", None, 10).await.unwrap().len(), 1);
    // A plain failure of a (no soft_error) does not count.
    let ra3 = s
        .trigger_run("a", RunOverrides::default(), true, t(3))
        .await
        .unwrap();
    s.claim_runs("w", 10, Timestamp::now(), LEASE)
        .await
        .unwrap();
    s.finish_runs(
        "w",
        vec![result(ra3.id, RunState::Failed, Timestamp::now())],
    )
    .await
    .unwrap();
    let rb2 = s
        .trigger_run("b", RunOverrides::default(), false, t(3))
        .await
        .unwrap();
    s.claim_runs("w", 10, Timestamp::now(), LEASE)
        .await
        .unwrap();
    s.finish_runs(
        "w",
        vec![result(rb2.id, RunState::Succeeded, Timestamp::now())],
    )
    .await
    .unwrap();
    // a's earlier success (ra2) still stands, so b's report completes the set.
    assert_eq!(s.list_runs("c", None, 10).await.unwrap().len(), 2);
    let edges = s.dependency_edges().await.unwrap();
    assert_eq!(
        edges,
        vec![
            ("a".to_owned(), "c".to_owned()),
            ("b".to_owned(), "c".to_owned())
        ]
    );
}

/// Unknown parents and cycles are refused, naming them; nothing is stored.
pub async fn dependency_checks_refuse_unknown_parents_and_cycles(s: Arc<dyn Store>) {
    let e = s
        .put_job(
            job("x", r#""parents":["ghost","ghoul"]"#),
            PutMode::Create,
            t(0),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Invalid(v) if v.field == "parents" && v.message.contains("ghost") && v.message.contains("ghoul")),
        "{e:?}"
    );
    assert!(s.get_job("x").await.unwrap().is_none());
    s.put_job(job("a", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    s.put_job(job("b", r#""parents":["a"]"#), PutMode::Create, t(0))
        .await
        .unwrap();
    s.put_job(job("c", r#""parents":["b"]"#), PutMode::Create, t(0))
        .await
        .unwrap();
    let e = s
        .put_job(job("a", r#""parents":["c"]"#), PutMode::Upsert, t(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Invalid(v) if v.code == "cycle" && v.message.contains("a") && v.message.contains("c")),
        "{e:?}"
    );
    assert!(
        s.get_job("a")
            .await
            .unwrap()
            .unwrap()
            .spec
            .parents
            .is_empty()
    );
    assert_eq!(s.dependency_edges().await.unwrap().len(), 2);
}

/// Deleting a parent is refused while children depend on it, unless forced.
pub async fn delete_parent_needs_force(s: Arc<dyn Store>) {
    s.put_job(job("a", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    s.put_job(job("z", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    s.put_job(job("b", r#""parents":["a","z"]"#), PutMode::Create, t(0))
        .await
        .unwrap();
    let e = s.delete_job("a", false).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains('b')),
        "{e:?}"
    );
    assert!(s.get_job("a").await.unwrap().is_some());
    assert!(s.delete_job("a", true).await.unwrap());
    assert_eq!(
        s.get_job("b").await.unwrap().unwrap().spec.parents,
        vec!["z".to_owned()]
    );
    assert_eq!(
        s.dependency_edges().await.unwrap(),
        vec![("z".to_owned(), "b".to_owned())]
    );
}

/// An async run whose process exited 0 stays `running` until the completion call; the call
/// ends it (a failure is retried), and a second call is refused.
pub async fn async_runs_wait_for_completion(s: Arc<dyn Store>) {
    s.put_job(
        job("a", r#""async":true,"retries":1,"retry_backoff":"0s""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let run = s
        .trigger_run("a", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let now = Timestamp::now();
    s.claim_runs("w", 10, now, LEASE).await.unwrap();
    let mut r = result(run.id, RunState::Succeeded, now);
    r.awaits_completion = true;
    s.finish_runs("w", vec![r]).await.unwrap();
    let waiting = s.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(waiting.state, RunState::Running);
    // Waiting runs hold no lease and do not belong to the worker any more.
    assert!(
        s.reap_expired(now + Duration::from_secs(3600), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.recover_worker("w", "restart", now)
            .await
            .unwrap()
            .is_empty()
    );
    let done = s
        .complete_run(run.id, RunState::Failed, Some("reported".into()), now)
        .await
        .unwrap();
    assert_eq!(done.state, RunState::Failed);
    // The failure is retried like any other (and so not counted as the job's error yet).
    let job = s.get_job("a").await.unwrap().unwrap();
    assert_eq!((job.error_count, job.errors_since_success), (0, 0));
    let runs = s.list_runs("a", None, 10).await.unwrap();
    assert_eq!((runs[0].trigger, runs[0].attempt), (Trigger::Retry, 2));
    let again = s.complete_run(run.id, RunState::Succeeded, None, now).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    // The retry succeeds through the completion call: errors since success reset.
    let c = s
        .claim_runs("w", 10, Timestamp::now(), LEASE)
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    let mut r = result(c[0].run.id, RunState::Succeeded, Timestamp::now());
    r.awaits_completion = true;
    s.finish_runs("w", vec![r]).await.unwrap();
    s.complete_run(c[0].run.id, RunState::Succeeded, None, Timestamp::now())
        .await
        .unwrap();
    let job = s.get_job("a").await.unwrap().unwrap();
    assert_eq!(
        (job.success_count, job.error_count, job.errors_since_success),
        (1, 0, 0)
    );
}

/// A completion reported while the process still runs is kept and applied when it exits 0;
/// a non-zero exit wins over it.
pub async fn completion_before_exit_is_applied_at_exit(s: Arc<dyn Store>) {
    s.put_job(job("a", r#""async":true"#), PutMode::Create, t(0))
        .await
        .unwrap();
    let now = Timestamp::now();
    let r1 = s
        .trigger_run("a", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    s.claim_runs("w", 10, now, LEASE).await.unwrap();
    let early = s
        .complete_run(r1.id, RunState::Failed, None, now)
        .await
        .unwrap();
    assert_eq!(early.state, RunState::Running);
    let mut r = result(r1.id, RunState::Succeeded, now);
    r.awaits_completion = true;
    s.finish_runs("w", vec![r]).await.unwrap();
    let run = s.get_run(r1.id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Failed);
    // Reported success, but the process then failed: failed.
    let r2 = s
        .trigger_run("a", RunOverrides::default(), true, t(2))
        .await
        .unwrap();
    let c = s
        .claim_runs("w", 10, Timestamp::now(), LEASE)
        .await
        .unwrap();
    assert!(c.iter().any(|x| x.run.id == r2.id));
    s.complete_run(r2.id, RunState::Succeeded, None, now)
        .await
        .unwrap();
    s.finish_runs("w", vec![result(r2.id, RunState::Failed, now)])
        .await
        .unwrap();
    assert_eq!(
        s.get_run(r2.id).await.unwrap().unwrap().state,
        RunState::Failed
    );
}

/// Marking a job successful records a succeeded run, counts it, and advances its children.
pub async fn mark_success_counts_and_triggers_children(s: Arc<dyn Store>) {
    s.put_job(job("p", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    s.put_job(job("c", r#""parents":["p"]"#), PutMode::Create, t(0))
        .await
        .unwrap();
    let run = s.mark_success("p", t(5)).await.unwrap();
    assert_eq!(
        (run.state, run.trigger),
        (RunState::Succeeded, Trigger::Manual)
    );
    let p = s.get_job("p").await.unwrap().unwrap();
    assert_eq!((p.success_count, p.errors_since_success), (1, 0));
    let c = s.list_runs("c", None, 10).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].trigger, Trigger::Dependency);
    assert_eq!(c[0].triggered_by, vec![run.id]);
    assert!(matches!(
        s.mark_success("nope", t(5)).await,
        Err(StoreError::JobNotFound(_))
    ));
}

/// One leader at a time: the holder renews with the same epoch, another node takes a lapsed
/// lease with the next epoch, and a write fenced with a stale epoch changes nothing.
pub async fn leadership_lease_and_fencing(s: Arc<dyn Store>) {
    let ttl = Duration::from_millis(400);
    let now = Timestamp::now();
    let a = s.acquire_leadership("a", "a:1", ttl, now).await.unwrap();
    assert_eq!(
        (a.node.as_str(), a.address.as_str(), a.epoch),
        ("a", "a:1", 1)
    );
    let b = s.acquire_leadership("b", "b:1", ttl, now).await.unwrap();
    assert_eq!(
        (b.node.as_str(), b.epoch),
        ("a", 1),
        "b cannot take a live lease"
    );
    let again = s.acquire_leadership("a", "a:1", ttl, now).await.unwrap();
    assert_eq!(
        (again.node.as_str(), again.epoch),
        ("a", 1),
        "renewal keeps the epoch"
    );
    // The lease lapses (store clock: wait for real).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let b = s
        .acquire_leadership("b", "b:1", ttl, Timestamp::now())
        .await
        .unwrap();
    assert_eq!((b.node.as_str(), b.epoch), ("b", 2));
    // a's writes are fenced; b's pass.
    s.put_job(job("j", r#""schedule":"@every 1s""#), PutMode::Create, t(0))
        .await
        .unwrap();
    let rec = s.get_job("j").await.unwrap().unwrap();
    let c = rec.next_fire_at.unwrap();
    let req = FireRequest {
        job: "j".into(),
        version: rec.version,
        expected_cursor: c,
        occurrences: plan(&[c]),
        skipped_note: None,
        next_cursor: Some(c + Duration::from_secs(1)),
    };
    let stale = Fence {
        node: "a".into(),
        epoch: 1,
    };
    let r = s.fire(vec![req.clone()], c, Some(&stale)).await;
    assert!(matches!(r, Err(StoreError::Fenced(_))), "{r:?}");
    let r = s.reap_expired(c, Some(&stale)).await;
    assert!(matches!(r, Err(StoreError::Fenced(_))), "{r:?}");
    assert!(s.list_runs("j", None, 10).await.unwrap().is_empty());
    let current = Fence {
        node: "b".into(),
        epoch: 2,
    };
    let out = s.fire(vec![req], c, Some(&current)).await.unwrap();
    assert!(matches!(out[0], FireOutcome::Fired { .. }));
    assert_eq!(s.list_runs("j", None, 10).await.unwrap().len(), 1);
    // Released: taken at once with the next epoch.
    s.release_leadership("b", 2).await.unwrap();
    let a = s
        .acquire_leadership("a", "a:1", ttl, Timestamp::now())
        .await
        .unwrap();
    assert_eq!((a.node.as_str(), a.epoch), ("a", 3));
    s.node_heartbeat("a", "a:1", Timestamp::now())
        .await
        .unwrap();
    s.node_heartbeat("b", "b:2", Timestamp::now())
        .await
        .unwrap();
    let view = s.cluster_view(Timestamp::now()).await.unwrap();
    assert_eq!(view.lease.map(|l| l.epoch), Some(3));
    let nodes: Vec<(String, String)> = view.nodes.into_iter().map(|n| (n.id, n.address)).collect();
    assert_eq!(
        nodes,
        [
            ("a".to_owned(), "a:1".to_owned()),
            ("b".to_owned(), "b:2".to_owned())
        ]
    );
}

/// Creating, replacing and pausing a job show up in `changed_jobs`; a fire does not.
pub async fn changed_jobs_lists_definition_writes(s: Arc<dyn Store>) {
    s.put_job(
        job("a", r#""schedule":"@every 1s""#),
        PutMode::Create,
        t(10),
    )
    .await
    .unwrap();
    s.put_job(job("b", ""), PutMode::Create, t(20))
        .await
        .unwrap();
    let names = |v: Vec<crate::JobChange>| {
        let mut n: Vec<String> = v.into_iter().map(|c| c.name).collect();
        n.sort();
        n
    };
    assert_eq!(names(s.changed_jobs(t(5)).await.unwrap()), ["a", "b"]);
    assert_eq!(names(s.changed_jobs(t(15)).await.unwrap()), ["b"]);
    s.set_paused("a", true, t(30)).await.unwrap();
    let ch = s.changed_jobs(t(25)).await.unwrap();
    assert_eq!(ch.len(), 1);
    assert_eq!((ch[0].name.as_str(), ch[0].version), ("a", 2));
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A run is claimed only by a worker whose labels contain its job's selector; runs a worker may
/// not take never hide claimable ones queued behind them; `claim_runs` has no labels.
pub async fn claim_respects_selectors(s: Arc<dyn Store>) {
    s.put_job(
        job(
            "gpu",
            r#""concurrency":"allow","selector":{"gpu":"yes","zone":"eu-1"}"#,
        ),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    s.put_job(
        job("any", r#""concurrency":"allow""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let mut gpu = Vec::new();
    for i in 0..3 {
        gpu.push(
            s.trigger_run("gpu", RunOverrides::default(), false, t(i))
                .await
                .unwrap()
                .id,
        );
    }
    let any = s
        .trigger_run("any", RunOverrides::default(), false, t(5))
        .await
        .unwrap()
        .id;
    // No labels: only the unrestricted run, even though older restricted ones are queued.
    let c = s.claim_runs("plain", 10, t(100), LEASE).await.unwrap();
    assert_eq!(c.iter().map(|c| c.run.id).collect::<Vec<_>>(), vec![any]);
    // Partial match: nothing.
    let c = s
        .claim_runs_labeled("half", &labels(&[("gpu", "yes")]), 10, t(100), LEASE)
        .await
        .unwrap();
    assert!(c.is_empty());
    // Wrong value: nothing.
    let c = s
        .claim_runs_labeled(
            "wrong",
            &labels(&[("gpu", "yes"), ("zone", "us-1")]),
            10,
            t(100),
            LEASE,
        )
        .await
        .unwrap();
    assert!(c.is_empty());
    // Superset of the selector: claims oldest first, honouring the limit.
    let l = labels(&[("gpu", "yes"), ("zone", "eu-1"), ("extra", "x")]);
    let c = s
        .claim_runs_labeled("full", &l, 2, t(100), LEASE)
        .await
        .unwrap();
    assert_eq!(c.iter().map(|c| c.run.id).collect::<Vec<_>>(), gpu[..2]);
    assert_eq!(
        c[0].spec.selector,
        labels(&[("gpu", "yes"), ("zone", "eu-1")])
    );
    assert!(c.iter().all(|c| c.run.worker.as_deref() == Some("full")));
    let c = s
        .claim_runs_labeled("full", &l, 10, t(100), LEASE)
        .await
        .unwrap();
    assert_eq!(c.iter().map(|c| c.run.id).collect::<Vec<_>>(), gpu[2..]);
    // A labelled worker also takes unrestricted runs.
    let free = s
        .trigger_run("any", RunOverrides::default(), false, t(6))
        .await
        .unwrap()
        .id;
    let c = s
        .claim_runs_labeled("full", &l, 10, t(100), LEASE)
        .await
        .unwrap();
    assert_eq!(c.iter().map(|c| c.run.id).collect::<Vec<_>>(), vec![free]);
    // Changing the selector applies to runs still queued.
    let queued = s
        .trigger_run("gpu", RunOverrides::default(), false, t(7))
        .await
        .unwrap()
        .id;
    s.put_job(
        job("gpu", r#""concurrency":"allow","selector":{"gpu":"no"}"#),
        PutMode::Upsert,
        t(8),
    )
    .await
    .unwrap();
    assert!(
        s.claim_runs_labeled("full", &l, 10, t(100), LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let c = s
        .claim_runs_labeled("nogpu", &labels(&[("gpu", "no")]), 10, t(100), LEASE)
        .await
        .unwrap();
    assert_eq!(c.iter().map(|c| c.run.id).collect::<Vec<_>>(), vec![queued]);
    // An invalid selector is refused.
    let e = s
        .put_job(
            job("bad", r#""selector":{"zone":"eu 1"}"#),
            PutMode::Create,
            t(0),
        )
        .await
        .unwrap_err();
    match e {
        StoreError::Invalid(v) => assert_eq!(v.field, "selector.zone"),
        other => panic!("unexpected {other:?}"),
    }
}

/// Workers register and refresh; the list shows labels, slots, last seen, running counts, and
/// marks long-silent workers stale instead of dropping them.
pub async fn worker_registry_lists_and_counts(s: Arc<dyn Store>) {
    use crate::{WORKER_STALE_AFTER, WorkerInfo};
    assert!(s.list_workers(t(0)).await.unwrap().is_empty());
    let a = WorkerInfo {
        id: "a".into(),
        labels: labels(&[("zone", "eu-1")]),
        slots: 4,
        version: "1.0".into(),
        address: None,
    };
    let b = WorkerInfo {
        id: "b".into(),
        labels: Default::default(),
        slots: 2,
        version: "1.0".into(),
        address: Some("10.0.0.2".into()),
    };
    s.upsert_worker(a.clone(), t(0)).await.unwrap();
    s.upsert_worker(b.clone(), t(0)).await.unwrap();
    // A refresh updates what it advertises and when it was seen, not when it registered.
    let a2 = WorkerInfo {
        slots: 8,
        ..a.clone()
    };
    s.upsert_worker(a2.clone(), t(50)).await.unwrap();
    // An older, delayed refresh does not move `last_seen` back.
    s.upsert_worker(a2.clone(), t(40)).await.unwrap();
    s.put_job(job("j", r#""concurrency":"allow""#), PutMode::Create, t(0))
        .await
        .unwrap();
    for i in 0..3 {
        s.trigger_run("j", RunOverrides::default(), false, t(i))
            .await
            .unwrap();
    }
    s.claim_runs_labeled("a", &a.labels, 2, t(50), LEASE)
        .await
        .unwrap();
    let stale_at = t(0)
        .checked_add(WORKER_STALE_AFTER)
        .unwrap()
        .checked_add(Duration::from_secs(10))
        .unwrap();
    let list = s.list_workers(stale_at).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].info, a2);
    assert_eq!(list[0].registered_at, t(0));
    assert_eq!(list[0].last_seen, t(50));
    assert_eq!(list[0].running, 2);
    assert!(!list[0].stale);
    assert_eq!(list[1].info, b);
    assert_eq!(list[1].running, 0);
    assert!(list[1].stale, "b unseen for longer than the stale bound");
}

/// `worker_runs` lists exactly the runs running on a worker with a lease, with their specs.
pub async fn worker_runs_hands_out_held_runs_again(s: Arc<dyn Store>) {
    s.put_job(
        job("j", r#""concurrency":"allow","selector":{"zone":"a"}"#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    s.put_job(job("as", r#""async":true"#), PutMode::Create, t(0))
        .await
        .unwrap();
    for i in 0..3 {
        s.trigger_run("j", RunOverrides::default(), false, t(i))
            .await
            .unwrap();
    }
    s.trigger_run("as", RunOverrides::default(), false, t(3))
        .await
        .unwrap();
    assert!(s.worker_runs("w").await.unwrap().is_empty());
    let l = labels(&[("zone", "a")]);
    let claimed = s
        .claim_runs_labeled("w", &l, 10, t(10), LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    let other = s.worker_runs("x").await.unwrap();
    assert!(other.is_empty());
    // One finished, one async waiting for its completion call: neither is handed out again.
    let done = claimed[0].run.id;
    let async_run = claimed.iter().find(|c| c.run.job == "as").unwrap().run.id;
    let mut waiting = result(async_run, RunState::Succeeded, t(11));
    waiting.awaits_completion = true;
    s.finish_runs("w", vec![result(done, RunState::Succeeded, t(11)), waiting])
        .await
        .unwrap();
    let again = s.worker_runs("w").await.unwrap();
    let expect: Vec<i64> = claimed
        .iter()
        .map(|c| c.run.id)
        .filter(|id| *id != done && *id != async_run)
        .collect();
    assert_eq!(again.iter().map(|c| c.run.id).collect::<Vec<_>>(), expect);
    assert!(
        again
            .iter()
            .all(|c| c.spec.name == "j" && c.run.state == RunState::Running)
    );
    assert_eq!(again[0].lease_expires_at, t(10).checked_add(LEASE).unwrap());
}

/// Trigger, claim and finish one run of `job` at `at` (ending 1 s later, with some output);
/// returns its id.
async fn run_once(s: &Arc<dyn Store>, job: &str, at: Timestamp, state: RunState) -> i64 {
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

fn counters(j: &crate::JobRecord) -> (u64, u64, Option<Timestamp>, Option<Timestamp>, u64) {
    (
        j.success_count,
        j.error_count,
        j.last_success_at,
        j.last_error_at,
        j.errors_since_success,
    )
}

fn keep_runs(n: u32) -> Retention {
    Retention {
        keep_runs: Some(n),
        keep_days: None,
    }
}

/// `keep_runs`: the newest N finished runs of a job stay, older finished ones go with their
/// output; queued and running runs stay whatever their age; counters do not move.
pub async fn prune_keep_runs_keeps_active_runs_and_counters(s: Arc<dyn Store>) {
    s.put_job(
        job(
            "j",
            r#""concurrency":"allow","retries":1,"retry_backoff":"1h","retry_backoff_max":"1h""#,
        ),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    // Two old runs still running.
    let r1 = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let r2 = s
        .trigger_run("j", RunOverrides::default(), false, t(2))
        .await
        .unwrap();
    assert_eq!(s.claim_runs("w", 2, t(2), LEASE).await.unwrap().len(), 2);
    // A failure whose retry waits an hour (an old queued run), then seven successes.
    let first = run_once(&s, "j", t(10), RunState::Failed).await;
    let mut finished = vec![first];
    for i in 0..7 {
        finished.push(run_once(&s, "j", t(20 + i), RunState::Succeeded).await);
    }
    let retry = s.list_runs("j", None, 100).await.unwrap();
    let retry = retry
        .iter()
        .find(|r| r.trigger == Trigger::Retry)
        .expect("a queued retry");
    assert_eq!(retry.state, RunState::Queued);
    let retry_id = retry.id;
    let before = s.get_job("j").await.unwrap().unwrap();

    let deleted = s.prune_runs(&keep_runs(3), t(100), 1000).await.unwrap();
    assert_eq!(deleted, 5, "8 finished runs, 3 kept");
    let left = s.list_runs("j", None, 100).await.unwrap();
    let mut ids: Vec<i64> = left.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    let mut want = vec![r1.id, r2.id, retry_id];
    want.extend_from_slice(&finished[5..]);
    want.sort_unstable();
    assert_eq!(
        ids, want,
        "the 3 newest finished runs and every active run remain"
    );
    for id in &finished[..5] {
        assert!(s.get_run(*id).await.unwrap().is_none());
        assert!(s.read_log(*id, 0, 1 << 20).await.unwrap().is_none());
    }
    let kept = s.read_log(finished[7], 0, 1 << 20).await.unwrap().unwrap();
    assert_eq!(kept.data, format!("output of {}", finished[7]).into_bytes());
    let after = s.get_job("j").await.unwrap().unwrap();
    assert_eq!(counters(&after), counters(&before), "counters unchanged");
    // (The failure is being retried: not the job's error yet.)
    assert_eq!((after.success_count, after.error_count), (7, 0));
    // Nothing more to delete; no policy deletes nothing.
    assert_eq!(s.prune_runs(&keep_runs(3), t(100), 1000).await.unwrap(), 0);
    assert_eq!(
        s.prune_runs(&Retention::default(), t(100), 1000)
            .await
            .unwrap(),
        0
    );
    // keep_runs 0 still keeps the newest finished run.
    assert_eq!(s.prune_runs(&keep_runs(0), t(100), 1000).await.unwrap(), 2);
    let left = s.list_runs("j", None, 100).await.unwrap();
    assert_eq!(left.len(), 4);
    assert_eq!(left.iter().filter(|r| r.state.is_final()).count(), 1);
    assert_eq!(left[0].id, finished[7]);
}

/// `keep_days`: finished runs that ended before `now − D days` go; a job's newest finished
/// run and old runs still queued stay.
pub async fn prune_keep_days_keeps_newest_and_active(s: Arc<dyn Store>) {
    let day = |d: i64| t(d * 86_400);
    for name in ["d", "old"] {
        s.put_job(job(name, r#""concurrency":"allow""#), PutMode::Create, t(0))
            .await
            .unwrap();
    }
    // A queued run no worker here can claim (its selector), ten days old.
    s.put_job(
        job("q", r#""concurrency":"allow","selector":{"pool":"x"}"#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let queued = s
        .trigger_run("q", RunOverrides::default(), false, day(0))
        .await
        .unwrap();
    let old = run_once(&s, "old", day(0), RunState::Succeeded).await;
    let mut ids = Vec::new();
    for d in 0..10 {
        ids.push(run_once(&s, "d", day(d), RunState::Succeeded).await);
    }
    let policy = Retention {
        keep_runs: None,
        keep_days: Some(3),
    };
    // now = day 10: runs that ended before day 7 go (days 0..=6).
    assert_eq!(s.prune_runs(&policy, day(10), 1000).await.unwrap(), 7);
    let left: Vec<i64> = s
        .list_runs("d", None, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, vec![ids[9], ids[8], ids[7]]);
    assert!(
        s.get_run(old).await.unwrap().is_some(),
        "a job's newest run stays"
    );
    assert_eq!(
        s.get_run(queued.id).await.unwrap().unwrap().state,
        RunState::Queued
    );
    assert_eq!(s.prune_runs(&policy, day(10), 1000).await.unwrap(), 0);
    // Both limits: beyond the newest 2, or older than 3 days.
    let both = Retention {
        keep_runs: Some(2),
        keep_days: Some(3),
    };
    assert_eq!(s.prune_runs(&both, day(10), 1000).await.unwrap(), 1);
    assert_eq!(s.list_runs("d", None, 100).await.unwrap().len(), 2);
}

/// One call deletes at most `max_rows`; further calls resume, across jobs, until done.
pub async fn prune_max_rows_bounds_each_call(s: Arc<dyn Store>) {
    for name in ["a", "b"] {
        s.put_job(job(name, r#""concurrency":"allow""#), PutMode::Create, t(0))
            .await
            .unwrap();
        for i in 0..6 {
            run_once(&s, name, t(10 + i), RunState::Succeeded).await;
        }
    }
    let policy = keep_runs(1);
    let mut calls = Vec::new();
    loop {
        let n = s.prune_runs(&policy, t(100), 4).await.unwrap();
        assert!(n <= 4, "a call deleted {n} > max_rows");
        calls.push(n);
        if n < 4 {
            break;
        }
        assert!(calls.len() < 10, "pruning does not end: {calls:?}");
    }
    assert_eq!(calls.iter().sum::<u64>(), 10, "calls: {calls:?}");
    assert_eq!(s.prune_runs(&policy, t(100), 4).await.unwrap(), 0);
    for name in ["a", "b"] {
        assert_eq!(s.list_runs(name, None, 100).await.unwrap().len(), 1);
    }
}

/// A parent's run recorded in a child's dependency progress stays until the child has run
/// (its dependency run names it).
pub async fn prune_keeps_runs_in_dependency_progress(s: Arc<dyn Store>) {
    for (name, extra) in [
        ("a", r#""concurrency":"allow""#),
        ("b", ""),
        ("c", r#""parents":["a","b"]"#),
    ] {
        s.put_job(job(name, extra), PutMode::Create, t(0))
            .await
            .unwrap();
    }
    let reported = run_once(&s, "a", t(1), RunState::Succeeded).await;
    let failed = run_once(&s, "a", t(2), RunState::Failed).await;
    let newest = run_once(&s, "a", t(3), RunState::Failed).await;
    assert_eq!(s.prune_runs(&keep_runs(1), t(100), 1000).await.unwrap(), 1);
    assert!(s.get_run(failed).await.unwrap().is_none());
    assert!(
        s.get_run(reported).await.unwrap().is_some(),
        "recorded in c's progress"
    );
    assert!(s.get_run(newest).await.unwrap().is_some());
    // b reports: c runs, naming a's run; the progress is consumed and the run may go.
    run_once(&s, "b", t(4), RunState::Succeeded).await;
    let c = s.list_runs("c", None, 10).await.unwrap();
    assert_eq!(c.len(), 1);
    assert!(c[0].triggered_by.contains(&reported));
    assert_eq!(s.prune_runs(&keep_runs(1), t(100), 1000).await.unwrap(), 1);
    assert!(s.get_run(reported).await.unwrap().is_none());
}

/// A catch-up (several occurrences to run in one fire, `misfire: run_all`) runs every
/// occurrence, one after another, oldest first, whatever the overlap policy: the oldest is queued,
/// the others held and released one at a time as the one before ends.
pub async fn catch_up_runs_one_after_another_under_every_policy(s: Arc<dyn Store>) {
    for policy in ["forbid", "queue", "allow", "replace"] {
        let name = format!("c-{policy}");
        let rec = s
            .put_job(
                job(
                    &name,
                    &format!(
                        r#""schedule":"@every 4s","misfire":"run_all","concurrency":"{policy}""#
                    ),
                ),
                PutMode::Create,
                t(0),
            )
            .await
            .unwrap()
            .record;
        let c = rec.next_fire_at.unwrap();
        let at = |k: u64| c + Duration::from_secs(4 * k);
        let occurrences = (0..4)
            .map(|k| PlannedOccurrence {
                at: at(k),
                disposition: Disposition::Run,
            })
            .collect();
        s.fire(
            vec![FireRequest {
                job: name.clone(),
                version: rec.version,
                expected_cursor: at(0),
                occurrences,
                skipped_note: None,
                next_cursor: Some(at(4)),
            }],
            at(3),
            None,
        )
        .await
        .unwrap();
        // One claimable at a time, oldest first; each result releases the next.
        let mut order = Vec::new();
        loop {
            let now = Timestamp::now();
            let claimed = s.claim_runs("w", 10, now, LEASE).await.unwrap();
            if claimed.is_empty() {
                break;
            }
            assert_eq!(claimed.len(), 1, "{policy}: catch-up runs started together");
            order.push(claimed[0].run.scheduled_for);
            s.finish_runs(
                "w",
                vec![result(claimed[0].run.id, RunState::Succeeded, now)],
            )
            .await
            .unwrap();
        }
        assert_eq!(order, (0..4).map(at).collect::<Vec<_>>(), "{policy}");
        let runs = s.list_runs(&name, None, 10).await.unwrap();
        assert!(
            runs.iter().all(|r| r.state == RunState::Succeeded),
            "{policy}: {runs:?}"
        );
    }
}

/// `queued_by_selector`: queued runs that are due and not held, counted by their job's selector.
pub async fn queued_by_selector_counts_due_runs(s: Arc<dyn Store>) {
    s.put_job(
        job("gpu", r#""selector":{"gpu":"yes"},"concurrency":"allow""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    s.put_job(
        job("any", r#""concurrency":"allow""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        s.trigger_run("gpu", RunOverrides::default(), false, t(1))
            .await
            .unwrap();
    }
    s.trigger_run("any", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let mut got = s.queued_by_selector(t(2)).await.unwrap();
    got.sort();
    let gpu: BTreeMap<String, String> = [("gpu".to_owned(), "yes".to_owned())].into();
    assert_eq!(got, vec![(BTreeMap::new(), 1), (gpu.clone(), 3)]);
    // Running runs are not counted.
    let c = s.claim_runs("w", 1, t(2), LEASE).await.unwrap();
    assert_eq!(c.len(), 1);
    let mut got = s.queued_by_selector(t(2)).await.unwrap();
    got.sort();
    assert_eq!(got, vec![(gpu, 3)]);
}

/// `job_metrics`: only jobs labelled `metrics: "true"`, by name, with their counters, last
/// success and newest ended run.
pub async fn job_metrics_lists_labelled_jobs(s: Arc<dyn Store>) {
    for (name, labels) in [
        ("b-watched", r#""labels":{"metrics":"true"}"#),
        ("a-watched", r#""labels":{"metrics":"true","team":"x"}"#),
        ("plain", r#""labels":{"metrics":"false"}"#),
    ] {
        s.put_job(
            job(name, &format!(r#"{labels},"concurrency":"allow""#)),
            PutMode::Create,
            t(0),
        )
        .await
        .unwrap();
    }
    run_once(&s, "a-watched", t(10), RunState::Succeeded).await;
    run_once(&s, "a-watched", t(20), RunState::Failed).await;
    let got = s.job_metrics(10).await.unwrap();
    let names: Vec<&str> = got.iter().map(|j| j.job.as_str()).collect();
    assert_eq!(names, ["a-watched", "b-watched"]);
    let a = &got[0];
    assert_eq!((a.succeeded, a.failed), (1, 1));
    assert!(a.last_success_at.is_some());
    assert_eq!(a.last_state, Some(RunState::Failed));
    let b = &got[1];
    assert_eq!((b.succeeded, b.failed, b.last_state), (0, 0, None));
    assert_eq!(s.job_metrics(1).await.unwrap().len(), 1);
}

/// `apply_jobs`: every put and delete in one transaction; a failing one leaves nothing written.
pub async fn apply_jobs_is_all_or_nothing(s: Arc<dyn Store>) {
    s.put_job(job("old", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    let bad = s
        .apply_jobs(
            vec![
                job("p", ""),
                job("c", r#""parents":["p"]"#),
                job("orphan", r#""parents":["nowhere"]"#),
            ],
            vec!["old".into()],
            t(1),
        )
        .await;
    assert!(bad.is_err(), "{bad:?}");
    for name in ["p", "c", "orphan"] {
        assert!(s.get_job(name).await.unwrap().is_none(), "{name} written");
    }
    assert!(s.get_job("old").await.unwrap().is_some(), "old deleted");
    let done = s
        .apply_jobs(
            vec![job("p", ""), job("c", r#""parents":["p"]"#)],
            vec!["old".into()],
            t(2),
        )
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|o| o.created));
    assert!(s.get_job("old").await.unwrap().is_none());
    let edges = s.dependency_edges().await.unwrap();
    assert_eq!(edges, vec![("p".to_owned(), "c".to_owned())]);
}
