//! Remote workers: selectors, the registry, held claims, what waits for which labels.

use super::*;

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
        clock_offset: None,
    };
    let b = WorkerInfo {
        id: "b".into(),
        labels: Default::default(),
        slots: 2,
        version: "1.0".into(),
        address: Some("10.0.0.2".into()),
        clock_offset: Some(jiff::SignedDuration::from_micros(7_000_250)),
    };
    s.upsert_worker(a.clone(), t(0)).await.unwrap();
    s.upsert_worker(b.clone(), t(0)).await.unwrap();
    // A refresh updates what it advertises (its clock's offset too) and when it was seen,
    // not when it registered.
    let a2 = WorkerInfo {
        slots: 8,
        clock_offset: Some(jiff::SignedDuration::from_millis(-3)),
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
