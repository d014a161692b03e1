//! Jobs: writes, reads, pause, delete, the change list, applying a set, per-job metrics.

use super::*;

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
