//! Exactly-once through failures on the write path ([`crate::faults`]): a write that fails
//! before it is made changes nothing, and the retry of one whose answer was lost after the
//! commit does not repeat it.

use super::*;
use crate::faults::{Fault, Faulty, Write};

fn fire_at(job: &str, version: i64, at: Timestamp) -> FireRequest {
    FireRequest {
        job: job.into(),
        version,
        expected_cursor: at,
        occurrences: plan(&[at]),
        skipped_note: None,
        next_cursor: Some(at + Duration::from_secs(1)),
    }
}

async fn scheduled(s: &Arc<dyn Store>, job: &str) -> Vec<Timestamp> {
    let mut at: Vec<Timestamp> = s
        .list_runs(job, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.scheduled_for)
        .collect();
    at.sort();
    at
}

/// A fire that fails before writing leaves the occurrence and the cursor as they were; one
/// whose answer is lost after the commit is not repeated by the scheduler's retry (the cursor
/// has moved: the retry is stale), so each occurrence has exactly one run.
pub async fn fire_is_exactly_once_through_failures(inner: Arc<dyn Store>) {
    let (s, points) = Faulty::wrap(inner);
    s.put_job(
        job("j", r#""schedule":"@every 1s","concurrency":"allow""#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let rec = s.get_job("j").await.unwrap().unwrap();
    let c = rec.next_fire_at.unwrap();

    points.next(Write::Fire, Fault::FailBefore);
    let r = s.fire(vec![fire_at("j", rec.version, c)], c, None).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(scheduled(&s, "j").await.is_empty(), "nothing written");
    let after = s.get_job("j").await.unwrap().unwrap();
    assert_eq!(after.next_fire_at, Some(c), "the cursor did not move");

    points.next(Write::Fire, Fault::FailAfter);
    let r = s.fire(vec![fire_at("j", rec.version, c)], c, None).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert_eq!(scheduled(&s, "j").await, [c], "written once");
    // The scheduler retries the same request: stale, nothing more.
    let out = s
        .fire(vec![fire_at("j", rec.version, c)], c, None)
        .await
        .unwrap();
    assert!(matches!(out[..], [FireOutcome::Stale { .. }]), "{out:?}");
    assert_eq!(scheduled(&s, "j").await, [c]);
    // It reloads the job and goes on from the stored cursor.
    let next = s.get_job("j").await.unwrap().unwrap().next_fire_at.unwrap();
    assert_eq!(next, c + Duration::from_secs(1));
    let out = s
        .fire(vec![fire_at("j", rec.version, next)], next, None)
        .await
        .unwrap();
    assert!(matches!(out[..], [FireOutcome::Fired { .. }]), "{out:?}");
    assert_eq!(scheduled(&s, "j").await, [c, next]);
    assert_eq!(points.count(Write::Fire), 4);
}

/// A claim whose answer is lost does not hand the run to anyone again through a claim: the
/// worker gets it back from `worker_runs`. A finish that fails before writing leaves the run
/// running; the retry of one whose answer was lost changes nothing (no second count, no second
/// retry).
pub async fn claim_and_finish_are_exactly_once_through_failures(inner: Arc<dyn Store>) {
    let (s, points) = Faulty::wrap(inner);
    s.put_job(job("j", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    let run = s
        .trigger_run("j", RunOverrides::default(), false, t(1))
        .await
        .unwrap();

    points.next(Write::Claim, Fault::FailAfter);
    let r = s.claim_runs("w", 4, Timestamp::now(), LEASE).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    for worker in ["w", "other"] {
        let again = s
            .claim_runs(worker, 4, Timestamp::now(), LEASE)
            .await
            .unwrap();
        assert!(again.is_empty(), "claimed once, not again by {worker}");
    }
    let held: Vec<i64> = s
        .worker_runs("w")
        .await
        .unwrap()
        .iter()
        .map(|c| c.run.id)
        .collect();
    assert_eq!(held, [run.id], "the worker gets its run back");

    points.next(Write::Finish, Fault::FailBefore);
    let done = || vec![result(run.id, RunState::Succeeded, Timestamp::now())];
    assert!(s.finish_runs("w", done()).await.is_err());
    let r = s.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(r.state, RunState::Running, "nothing recorded");

    points.next(Write::Finish, Fault::FailAfter);
    assert!(s.finish_runs("w", done()).await.is_err());
    let first = s.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(first.state, RunState::Succeeded);
    s.finish_runs("w", done()).await.unwrap();
    assert_eq!(
        s.get_run(run.id).await.unwrap().unwrap(),
        first,
        "the retry changed nothing"
    );
    assert_eq!(s.get_job("j").await.unwrap().unwrap().success_count, 1);

    // A failure whose finish answer is lost is retried once, not once per finish call.
    s.put_job(job("k", r#""retries":1"#), PutMode::Create, t(0))
        .await
        .unwrap();
    let k = s
        .trigger_run("k", RunOverrides::default(), false, t(1))
        .await
        .unwrap();
    let claimed = s.claim_runs("w", 4, Timestamp::now(), LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    points.next(Write::Finish, Fault::FailAfter);
    let failed = || vec![result(k.id, RunState::Failed, Timestamp::now())];
    assert!(s.finish_runs("w", failed()).await.is_err());
    let recorded = s.get_job("k").await.unwrap().unwrap();
    s.finish_runs("w", failed()).await.unwrap();
    let runs = s.list_runs("k", None, 10).await.unwrap();
    let attempts: Vec<(u32, RunState)> = runs.iter().map(|r| (r.attempt, r.state)).collect();
    assert_eq!(attempts, [(2, RunState::Queued), (1, RunState::Failed)]);
    let after = s.get_job("k").await.unwrap().unwrap();
    assert_eq!(
        (after.error_count, after.version),
        (recorded.error_count, recorded.version),
        "the retry changed no counter"
    );
}

/// A leader's fire that stalls past its lease (a hung connection, a stopped process) is fenced
/// when it finally reaches the store: the next leader fired the occurrence, once.
pub async fn a_fire_stalled_past_the_lease_is_fenced(inner: Arc<dyn Store>) {
    let (s, points) = Faulty::wrap(inner);
    let ttl = Duration::from_millis(300);
    let a = s
        .acquire_leadership("a", "a:1", ttl, Timestamp::now())
        .await
        .unwrap();
    assert_eq!((a.node.as_str(), a.epoch), ("a", 1));
    s.put_job(job("j", r#""schedule":"@every 1s""#), PutMode::Create, t(0))
        .await
        .unwrap();
    let rec = s.get_job("j").await.unwrap().unwrap();
    let c = rec.next_fire_at.unwrap();
    points.next(Write::Fire, Fault::Hang(Duration::from_millis(900)));
    let stalled = {
        let s = s.clone();
        let req = fire_at("j", rec.version, c);
        tokio::spawn(async move {
            let fence = Fence {
                node: "a".into(),
                epoch: 1,
            };
            s.fire(vec![req], c, Some(&fence)).await
        })
    };
    // a's lease lapses while its write hangs; b takes over and fires the occurrence.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = s
        .acquire_leadership("b", "b:1", ttl, Timestamp::now())
        .await
        .unwrap();
    assert_eq!((b.node.as_str(), b.epoch), ("b", 2));
    let fence = Fence {
        node: "b".into(),
        epoch: 2,
    };
    let out = s
        .fire(vec![fire_at("j", rec.version, c)], c, Some(&fence))
        .await
        .unwrap();
    assert!(matches!(out[..], [FireOutcome::Fired { .. }]), "{out:?}");
    let r = stalled.await.unwrap();
    assert!(matches!(r, Err(StoreError::Fenced(_))), "{r:?}");
    assert_eq!(scheduled(&s, "j").await, [c], "fired once, by b");
}
