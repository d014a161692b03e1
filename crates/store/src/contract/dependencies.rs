//! Dependent jobs and async completion.

use super::*;

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
