//! Remote workers: selectors, the registry, held claims, what waits for which labels.

use super::*;

fn own(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The claim labels of a worker with these labels that runs commands.
fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    tempora_core::kind::claim_labels(&own(pairs), &[Kind::Command])
}

/// A job's kind is a capability: a worker claims only runs of the kinds it advertises, a run it
/// may not take never hides one it may, and the registry keeps what each worker advertised.
pub async fn claim_respects_capabilities(s: Arc<dyn Store>) {
    use crate::WorkerInfo;
    s.put_job(
        job(
            "box",
            r#""concurrency":"allow","container":{"image":"busybox"}"#,
        ),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let web: JobSpec = serde_json::from_str(
        r#"{"name":"web","concurrency":"allow","http":{"url":"http://127.0.0.1:9/"}}"#,
    )
    .unwrap();
    s.put_job(web, PutMode::Create, t(0)).await.unwrap();
    s.put_job(job("sh", r#""concurrency":"allow""#), PutMode::Create, t(0))
        .await
        .unwrap();
    let mut ids = BTreeMap::new();
    for (i, j) in ["box", "web", "sh"].iter().enumerate() {
        let r = s
            .trigger_run(j, RunOverrides::default(), false, t(i as i64))
            .await
            .unwrap();
        ids.insert(*j, r.id);
    }
    let with = |caps: &[Kind]| tempora_core::kind::claim_labels(&BTreeMap::new(), caps);
    // Commands only: the oldest runs (container, HTTP) do not hide the command run.
    assert!(
        s.any_claimable(&with(&[Kind::Command]), t(10))
            .await
            .unwrap()
    );
    assert!(!s.any_claimable(&BTreeMap::new(), t(10)).await.unwrap());
    let c = s
        .claim_runs_labeled("cmd", &with(&[Kind::Command]), 10, t(10), LEASE)
        .await
        .unwrap();
    assert_eq!(
        c.iter().map(|c| c.run.id).collect::<Vec<_>>(),
        vec![ids["sh"]]
    );
    // Queued, counted by effective selector: the kind's label is part of it.
    let mut waiting = s.queued_by_selector(t(10)).await.unwrap();
    waiting.sort();
    let sel = |k: &str| -> BTreeMap<String, String> {
        [(format!("tempora.io/{k}"), "yes".to_owned())].into()
    };
    assert_eq!(waiting, vec![(sel("container"), 1), (sel("http"), 1)]);
    assert_eq!(
        s.get_job("box")
            .await
            .unwrap()
            .unwrap()
            .spec
            .effective_selector(),
        sel("container")
    );
    // No labels at all claims nothing; a container worker takes only the container run.
    assert!(
        s.claim_runs_labeled("none", &BTreeMap::new(), 10, t(10), LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let c = s
        .claim_runs_labeled("docker", &with(&[Kind::Container]), 10, t(10), LEASE)
        .await
        .unwrap();
    assert_eq!(
        c.iter().map(|c| c.run.id).collect::<Vec<_>>(),
        vec![ids["box"]]
    );
    assert_eq!(c[0].spec.kind(), Kind::Container);
    let c = s
        .claim_runs_labeled(
            "web",
            &with(&[Kind::Http, Kind::Container]),
            10,
            t(10),
            LEASE,
        )
        .await
        .unwrap();
    assert_eq!(
        c.iter().map(|c| c.run.id).collect::<Vec<_>>(),
        vec![ids["web"]]
    );
    // The registry round-trips capabilities apart from labels.
    let w = WorkerInfo {
        id: "docker".into(),
        labels: own(&[("zone", "a")]),
        capabilities: vec![Kind::Command, Kind::Container],
        slots: 1,
        version: "1".into(),
        address: None,
        clock_offset: None,
    };
    s.upsert_worker(w.clone(), t(10)).await.unwrap();
    let listed = s.list_workers(t(10)).await.unwrap();
    assert_eq!(listed[0].info, w);
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
    assert_eq!(c[0].spec.selector, own(&[("gpu", "yes"), ("zone", "eu-1")]));
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
        labels: own(&[("zone", "eu-1")]),
        capabilities: vec![Kind::Command, Kind::Http],
        slots: 4,
        version: "1.0".into(),
        address: None,
        clock_offset: None,
    };
    let b = WorkerInfo {
        id: "b".into(),
        labels: Default::default(),
        capabilities: vec![Kind::Command],
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
    s.claim_runs_labeled("a", &a.claim_labels(), 2, t(50), LEASE)
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
    let gpu = labels(&[("gpu", "yes")]);
    let mut want = vec![(labels(&[]), 1), (gpu.clone(), 3)];
    want.sort();
    assert_eq!(got, want);
    // Running runs are not counted.
    let c = s.claim_runs("w", 1, t(2), LEASE).await.unwrap();
    assert_eq!(c.len(), 1);
    let mut got = s.queued_by_selector(t(2)).await.unwrap();
    got.sort();
    assert_eq!(got, vec![(gpu, 3)]);
}
