//! Notifications: recorded in the transaction that ends a run (one per matching rule, the
//! owner's email once no retry is left), claimed once under a lease, attempts appended, gone
//! with their job.

use super::*;
use crate::notify::{AttemptOutcome, NotificationAttempt, NotificationState};
use tempora_core::notify::{Event, Target};

/// A failed attempt that will be retried notifies `failure` rules only; the last failed attempt
/// adds `retry_exhausted` (and the owner's email); each notification names all the run's events; claims are exclusive for their lease.
pub async fn notifications_follow_the_end_of_runs(s: Arc<dyn Store>) {
    s.put_job(
        job(
            "n",
            r#""retries":1,"retry_backoff":"1s","owner":"ops@example.com",
               "env":{"SLACK":"http://127.0.0.1:9/slack"},
               "notify":[{"webhook":"http://127.0.0.1:9/hook"},
                         {"on":["success"],"slack":"${SLACK}"},
                         {"on":["retry_exhausted","timed_out"],"email":["a@example.com"]}]"#,
        ),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    let first = s
        .trigger_run("n", RunOverrides::default(), false, t(1))
        .await
        .unwrap()
        .id;
    s.claim_runs("w", 1, t(1), LEASE).await.unwrap();
    s.finish_runs("w", vec![result(first, RunState::Failed, t(2))])
        .await
        .unwrap();
    let got = s.run_notifications(first).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].target,
        Target::Webhook("http://127.0.0.1:9/hook".into())
    );
    assert_eq!(got[0].events, vec![Event::Failure]);
    assert_eq!(got[0].state, NotificationState::Pending);
    assert_eq!(got[0].job, "n");
    // The retry (due after its backoff, from the finish's own clock) times out: the last attempt.
    let later = Timestamp::now() + Duration::from_secs(5);
    let c = s.claim_runs("w", 1, later, LEASE).await.unwrap();
    let retry = c[0].run.id;
    s.finish_runs("w", vec![result(retry, RunState::TimedOut, t(11))])
        .await
        .unwrap();
    let got = s.run_notifications(retry).await.unwrap();
    let targets: Vec<(&str, Vec<Event>)> = got
        .iter()
        .map(|n| (n.target.kind(), n.events.clone()))
        .collect();
    assert_eq!(
        targets,
        vec![
            (
                "webhook",
                vec![Event::Failure, Event::RetryExhausted, Event::TimedOut]
            ),
            (
                "email",
                vec![Event::Failure, Event::RetryExhausted, Event::TimedOut]
            ),
            (
                "email",
                vec![Event::Failure, Event::RetryExhausted, Event::TimedOut]
            ),
        ]
    );
    assert_eq!(got[2].target, Target::Email(vec!["ops@example.com".into()]));

    // Claimed once for the lease, then again when it lapsed (due from the finish's clock).
    let lease = Duration::from_secs(60);
    let at = |secs: u64| later + Duration::from_secs(5 + secs);
    let due = s.due_notifications(at(0), 10, lease).await.unwrap();
    assert_eq!(due.len(), 4);
    assert!(
        s.due_notifications(at(1), 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    let again = s.due_notifications(at(61), 2, lease).await.unwrap();
    assert_eq!(again.len(), 2, "the limit holds");
    // Attempts are appended; a final state ends the claims.
    let id = due[0].id;
    s.record_notification(
        id,
        NotificationAttempt {
            at: at(62),
            ok: false,
            detail: "connection refused".into(),
        },
        AttemptOutcome::RetryAt(at(70)),
    )
    .await
    .unwrap();
    s.record_notification(
        id,
        NotificationAttempt {
            at: at(70),
            ok: true,
            detail: "HTTP 200".into(),
        },
        AttemptOutcome::Final(NotificationState::Sent),
    )
    .await
    .unwrap();
    let n = s
        .run_notifications(first)
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.id == id)
        .unwrap();
    assert_eq!(n.state, NotificationState::Sent);
    assert_eq!(n.attempts.len(), 2);
    assert_eq!(n.attempts[0].detail, "connection refused");
    assert!(n.attempts[1].ok);
    let later = s.due_notifications(at(1000), 10, lease).await.unwrap();
    assert_eq!(later.len(), 3, "the sent one is not claimed again");

    // A success notifies the success rule; a job without rules or owner records nothing.
    let ok = s
        .trigger_run("n", RunOverrides::default(), false, t(30))
        .await
        .unwrap()
        .id;
    s.claim_runs("w", 1, t(30), LEASE).await.unwrap();
    s.finish_runs("w", vec![result(ok, RunState::Succeeded, t(31))])
        .await
        .unwrap();
    let got = s.run_notifications(ok).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].target, Target::Slack("${SLACK}".into()));
    s.put_job(job("quiet", ""), PutMode::Create, t(0))
        .await
        .unwrap();
    let quiet = run_once(&s, "quiet", t(40), RunState::Failed).await;
    assert!(s.run_notifications(quiet).await.unwrap().is_empty());

    // One job cannot take every sender: at most PER_JOB_CLAIM of a job per claim.
    let hooks: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"webhook":"http://127.0.0.1:9/{i}"}}"#))
        .collect();
    s.put_job(
        job("many", &format!(r#""notify":[{}]"#, hooks.join(","))),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    s.put_job(
        job("one", r#""notify":[{"webhook":"http://127.0.0.1:9/one"}]"#),
        PutMode::Create,
        t(0),
    )
    .await
    .unwrap();
    run_once(&s, "many", t(60), RunState::Failed).await;
    run_once(&s, "one", t(61), RunState::Failed).await;
    let fair = s.due_notifications(at(1020), 10, lease).await.unwrap();
    let per = |j: &str| fair.iter().filter(|n| n.job == j).count();
    assert_eq!(
        (per("many"), per("one")),
        (crate::notify::PER_JOB_CLAIM as usize, 1)
    );

    // Deleting the job deletes its notifications.
    s.delete_job("n", false).await.unwrap();
    assert!(s.run_notifications(first).await.unwrap().is_empty());
    let left = s.due_notifications(at(2000), 20, lease).await.unwrap();
    assert!(left.iter().all(|n| n.job != "n"), "{left:?}");
}
