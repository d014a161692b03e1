//! Firing occurrences: exactly once, stale fires, misfire, folded skips, catch-up, overlap.

use super::*;

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

/// A backfill makes one run per occurrence that has none (a scheduled occurrence's run counts;
/// asking twice adds nothing); the runs go one after another whatever the job's policy; a
/// backfill occurrence is then not fired again by the scheduler.
pub async fn backfill_runs_each_occurrence_once_one_after_another(s: Arc<dyn Store>) {
    let rec = s
        .put_job(
            job("j", r#""schedule":"*/10 * * * * ?","concurrency":"forbid""#),
            PutMode::Create,
            t(0),
        )
        .await
        .unwrap()
        .record;
    let first = rec.next_fire_at.unwrap();
    // The scheduler fired the first occurrence.
    let req = FireRequest {
        job: "j".into(),
        version: rec.version,
        expected_cursor: first,
        occurrences: plan(&[first]),
        skipped_note: None,
        next_cursor: Some(first + Duration::from_secs(10)),
    };
    s.fire(vec![req], first, None).await.unwrap();
    let now = first + Duration::from_secs(100);
    let wanted: Vec<Timestamp> = (0..4)
        .map(|i| first + Duration::from_secs(10 * i))
        .collect();
    let done = s.backfill("j", wanted.clone(), now).await.unwrap();
    assert_eq!(done.created.len(), 3, "{done:?}");
    assert_eq!(done.existing, 1, "the scheduled occurrence has its run");
    let again = s.backfill("j", wanted.clone(), now).await.unwrap();
    assert_eq!((again.created.len(), again.existing), (0, 4));
    let runs = s.list_runs("j", None, 10).await.unwrap();
    assert_eq!(runs.len(), 4);
    let backfilled: Vec<&tempora_core::run::Run> = runs
        .iter()
        .filter(|r| r.trigger == Trigger::Backfill)
        .collect();
    assert_eq!(backfilled.len(), 3);
    let mut times: Vec<Timestamp> = backfilled.iter().map(|r| r.scheduled_for).collect();
    times.sort();
    assert_eq!(times, wanted[1..]);
    // One after another: the scheduled run is queued; the backfilled ones wait behind it.
    let claimed = s.claim_runs("w", 10, now, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let mut ran = vec![claimed[0].run.scheduled_for];
    for _ in 0..4 {
        let id = s
            .claim_runs("w", 10, Timestamp::now(), LEASE)
            .await
            .unwrap();
        assert!(id.is_empty(), "a second run started while one runs");
        let running = s
            .list_runs("j", None, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.state == RunState::Running)
            .unwrap();
        s.finish_runs("w", vec![result(running.id, RunState::Succeeded, now)])
            .await
            .unwrap();
        // A held run is released claimable from the store's own clock.
        let next = s
            .claim_runs("w", 10, Timestamp::now(), LEASE)
            .await
            .unwrap();
        if next.is_empty() {
            break;
        }
        assert_eq!(next.len(), 1);
        ran.push(next[0].run.scheduled_for);
    }
    assert_eq!(ran, wanted, "oldest first, each once");
    // The scheduler catching up on a backfilled occurrence adds no run.
    let rec = s.get_job("j").await.unwrap().unwrap();
    let cursor = rec.next_fire_at.unwrap();
    assert_eq!(cursor, wanted[1]);
    let refire = FireRequest {
        job: "j".into(),
        version: rec.version,
        expected_cursor: cursor,
        occurrences: plan(&[cursor]),
        skipped_note: None,
        next_cursor: Some(cursor + Duration::from_secs(10)),
    };
    let out = s.fire(vec![refire], now, None).await.unwrap();
    assert!(
        matches!(&out[0], FireOutcome::Fired { queued, skipped: 0, .. } if queued.is_empty()),
        "{out:?}"
    );
    assert_eq!(s.list_runs("j", None, 10).await.unwrap().len(), 4);
    assert!(matches!(
        s.backfill("nope", wanted, now).await,
        Err(StoreError::JobNotFound(_))
    ));
}

/// A backfill asked while another's runs still wait queues its runs behind them: none is
/// skipped, and every one runs, one at a time.
pub async fn a_second_backfill_waits_behind_the_first(s: Arc<dyn Store>) {
    s.put_job(
        job("j", r#""schedule":"*/10 * * * * ?","concurrency":"queue""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let now = t(1000);
    let first: Vec<Timestamp> = (0..3).map(|i| t(10 + 10 * i)).collect();
    let second: Vec<Timestamp> = (0..3).map(|i| t(500 + 10 * i)).collect();
    assert_eq!(s.backfill("j", first, now).await.unwrap().created.len(), 3);
    assert_eq!(s.backfill("j", second, now).await.unwrap().created.len(), 3);
    let runs = s.list_runs("j", None, 10).await.unwrap();
    assert!(
        runs.iter().all(|r| r.state == RunState::Queued),
        "a backfilled run was not queued: {runs:?}"
    );
    let mut ran = 0;
    for _ in 0..10 {
        let claimed = s
            .claim_runs("w", 10, Timestamp::now(), LEASE)
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        assert_eq!(claimed.len(), 1, "two at once");
        ran += 1;
        s.finish_runs(
            "w",
            vec![result(claimed[0].run.id, RunState::Succeeded, now)],
        )
        .await
        .unwrap();
    }
    assert_eq!(ran, 6);
}

/// Occurrences whose runs retention deleted are not backfilled again (they may have run): every
/// occurrence up to the newest such one is reported `pruned`; later ones are backfilled.
pub async fn backfill_does_not_rerun_pruned_occurrences(s: Arc<dyn Store>) {
    s.put_job(
        job("j", r#""schedule":"*/10 * * * * ?","concurrency":"allow""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let now = t(1000);
    let wanted: Vec<Timestamp> = (0..4).map(|i| t(10 + 10 * i)).collect();
    assert_eq!(
        s.backfill("j", wanted.clone(), now)
            .await
            .unwrap()
            .created
            .len(),
        4
    );
    for _ in 0..4 {
        let claimed = s
            .claim_runs("w", 10, Timestamp::now(), LEASE)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        s.finish_runs(
            "w",
            vec![result(claimed[0].run.id, RunState::Succeeded, now)],
        )
        .await
        .unwrap();
    }
    let keep_one = Retention {
        keep_runs: Some(1),
        keep_days: None,
    };
    assert_eq!(s.prune_runs(&keep_one, now, 100).await.unwrap(), 3);
    let mut again = wanted.clone();
    again.push(t(50));
    let done = s.backfill("j", again, now).await.unwrap();
    assert_eq!(done.pruned, 3, "{done:?}");
    assert_eq!(done.existing, 1, "{done:?}");
    assert_eq!(done.created.len(), 1, "only the new occurrence: {done:?}");
}
