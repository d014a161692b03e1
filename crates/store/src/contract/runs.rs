//! Runs: claim, finish, counters, retry, cancel, heartbeats, leases, logs, listing.

use super::*;

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

/// A result whose times are before the run was queued (a worker's broken clock, or a forged
/// result) is held to the queue time: no run finishes before it was queued.
pub async fn finish_times_are_held_to_the_queue_time(s: Arc<dyn Store>) {
    s.put_job(job("j", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    let queued = t(100);
    let run = s
        .trigger_run("j", RunOverrides::default(), false, queued)
        .await
        .unwrap();
    assert_eq!(run.queued_at, queued);
    s.claim_runs("w", 1, Timestamp::now(), LEASE).await.unwrap();
    let mut r = result(run.id, RunState::Succeeded, t(-86_400));
    r.started_at = Some(t(-2 * 86_400));
    s.finish_runs("w", vec![r]).await.unwrap();
    let done = s.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(done.state, RunState::Succeeded);
    assert_eq!(done.finished_at, Some(queued), "{done:?}");
    assert_eq!(done.started_at, Some(queued), "{done:?}");
}
