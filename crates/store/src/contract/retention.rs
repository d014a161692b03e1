//! History retention (`prune_runs`).

use super::*;

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

/// Deleting history deletes every output chunk of the deleted runs (several per run) and
/// nothing else: no orphan chunk is left in the store.
pub async fn prune_leaves_no_output_rows(s: Arc<dyn Store>) {
    s.put_job(job("j", r#""concurrency":"allow""#), PutMode::Create, t(0))
        .await
        .unwrap();
    for i in 0..5 {
        let at = t(10 + i);
        let run = s
            .trigger_run("j", RunOverrides::default(), false, at)
            .await
            .unwrap();
        assert_eq!(s.claim_runs("w", 1, at, LEASE).await.unwrap().len(), 1);
        s.append_log(run.id, b"a".to_vec()).await.unwrap();
        s.append_log(run.id, b"b".to_vec()).await.unwrap();
        let mut r = result(run.id, RunState::Succeeded, at + Duration::from_secs(1));
        r.log_tail = b"c".to_vec();
        s.finish_runs("w", vec![r]).await.unwrap();
    }
    let rows = s.storage_rows().await.unwrap();
    assert_eq!(
        (rows.runs, rows.log_chunks, rows.orphan_log_chunks),
        (5, 15, 0)
    );
    assert_eq!(s.prune_runs(&keep_runs(2), t(100), 100).await.unwrap(), 3);
    let rows = s.storage_rows().await.unwrap();
    assert_eq!(
        (rows.runs, rows.log_chunks, rows.orphan_log_chunks),
        (2, 6, 0)
    );
}
