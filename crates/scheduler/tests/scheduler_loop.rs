//! The scheduler loop against a real SQLite store: on-time firing, catch-up of occurrences
//! missed while "down" (per the misfire policy), and reaction to job changes.
//!
//! Time is the test's: tokio's clock is paused (`start_paused`), held still ([`freeze`]) and
//! moved only by the test, and the scheduler reads a [`TokioClock`] that moves with it, so
//! seconds, DST nights and days of outage pass in milliseconds, with no sleep on the wall
//! clock; the test waits on conditions (a run written), not on durations.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tempora_core::job::JobSpec;
use tempora_core::run::RunState;
use tempora_scheduler::{Scheduler, SchedulerConfig};
use tempora_store::clock::{Clock, TokioClock};
use tempora_store::faults::{Fault, Faulty, Write};
use tempora_store::{PutMode, Store, StoreOptions};
use tempora_store_sqlite::SqliteStore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn spec(name: &str, extra: &str) -> JobSpec {
    serde_json::from_str(&format!(r#"{{"name":"{name}","command":"true",{extra}}}"#)).unwrap()
}

/// Run the scheduler as the (only) leader until `stop` is cancelled.
fn start_leading(
    store: &Arc<dyn Store>,
    config: SchedulerConfig,
    ready: Arc<Notify>,
) -> (
    tempora_scheduler::SchedulerHandle,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), tempora_scheduler::SchedulerError>>,
) {
    let (sched, handle) = Scheduler::new(store.clone(), config, ready);
    let stop = CancellationToken::new();
    let (leader_tx, leadership) = tempora_scheduler::leader::always_leader();
    let run = sched.run(leadership, stop.clone());
    let task = tokio::spawn(async move {
        // Leadership lasts as long as its sender.
        let _leader_tx = leader_tx;
        run.await
    });
    (handle, stop, task)
}

/// A fixed instant for the clock to start at (tests do not depend on the day they run).
fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Holds tokio's paused clock still until dropped: a paused runtime with nothing to do jumps
/// to its next timer, also while a store write is in flight on the store's own thread, which
/// would move "now" under the scheduler in the middle of a fire. A running blocking task stops
/// that, so time moves only when the test calls [`advance_to`] or [`step`].
struct Frozen(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

fn freeze() -> Frozen {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        // Returns when the sender is dropped (end of test, or a panic unwinding it).
        let _ = rx.recv();
    });
    Frozen(tx)
}

/// Let the other tasks run for a moment of real time (test time stays where it is).
async fn settle() {
    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(3)))
        .await
        .unwrap();
}

/// Wait (test time frozen) until `check` holds; fails after 30 s of real time.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        settle().await;
    }
}

/// Move test time forward to `at` (waking every timer due by then) and let the tasks react.
async fn advance_to(clock: &Arc<dyn Clock>, at: Timestamp) {
    let d = at.duration_since(clock.now());
    if d.is_positive() {
        tokio::time::advance(d.unsigned_abs()).await;
    }
    settle().await;
}

/// Let `d` of test time pass in steps of `step`, the tasks reacting at each.
async fn step(d: Duration, step: Duration) {
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        tokio::time::advance(step.min(end - tokio::time::Instant::now())).await;
        settle().await;
    }
}

/// Whether the store holds a run of `job` for the occurrence at `at`.
async fn has_run(store: &Arc<dyn Store>, job: &str, at: Timestamp) -> bool {
    store
        .list_runs(job, None, 10_000)
        .await
        .unwrap()
        .iter()
        .any(|r| r.scheduled_for == at)
}

/// The occurrences of `job`'s schedule after `from` up to `to` (`created` anchors `@every`).
fn occurrences(
    job: &JobSpec,
    created: Timestamp,
    from: Timestamp,
    to: Timestamp,
) -> Vec<Timestamp> {
    let schedule =
        tempora_core::schedule::Schedule::parse(job.schedule.as_deref().unwrap()).unwrap();
    let tz = tempora_core::schedule::parse_timezone(&job.timezone).unwrap();
    let mut out = Vec::new();
    let mut c = from;
    while let Some(n) = schedule.next_after(c, &tz, created) {
        if n > to {
            break;
        }
        out.push(n);
        c = n;
    }
    out
}

/// Step test time through each occurrence of `job` up to `to`, waiting at each until the
/// scheduler has written its run (time frozen meanwhile, so it is queued at the instant).
async fn step_through(
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    job: &JobSpec,
    created: Timestamp,
    to: Timestamp,
) -> Vec<Timestamp> {
    let due = occurrences(job, created, clock.now(), to);
    for &at in &due {
        advance_to(clock, at).await;
        until(&format!("{} fired at {at}", job.name), || {
            has_run(store, &job.name, at)
        })
        .await;
    }
    advance_to(clock, to).await;
    due
}

/// A scheduler config on `clock` whose change poll stays out of the way (job changes come
/// through the handle in these tests; the poll would only read the store).
fn quiet(clock: &Arc<dyn Clock>) -> SchedulerConfig {
    SchedulerConfig {
        poll_changes_every: Duration::from_secs(3600),
        clock: clock.clone(),
        ..SchedulerConfig::default()
    }
}

async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    (Arc::new(s), dir)
}

#[tokio::test(start_paused = true)]
async fn fires_on_time_and_catches_up_after_downtime() {
    let (store, _dir) = store().await;
    let _frozen = freeze();
    let clock: Arc<dyn Clock> = TokioClock::starting_at(t("2026-06-01T12:00:00Z"));
    // Saved 10.5 s "ago": occurrences at -9.5 s … -0.5 s were missed while nothing ran.
    let past = clock.now() - Duration::from_millis(10_500);
    store
        .put_job(spec("all", r#""schedule":"@every 1s","misfire":"run_all","concurrency":"allow","epsilon":"5s""#), PutMode::Create, past)
        .await
        .unwrap();
    store
        .put_job(
            spec("once", r#""schedule":"@every 1s""#),
            PutMode::Create,
            past,
        )
        .await
        .unwrap();
    let ready = Arc::new(Notify::new());
    let config = SchedulerConfig {
        clock: clock.clone(),
        ..SchedulerConfig::default()
    };
    let (handle, stop, task) = start_leading(&store, config, ready.clone());
    // The fire wakes the workers.
    let woken = ready.notified();
    // The catch-up: the latest missed occurrence (0.5 s ago) is queued at once.
    let all_spec = spec("all", r#""schedule":"@every 1s""#);
    let missed = occurrences(&all_spec, past, past, clock.now());
    let latest = *missed.last().unwrap();
    until("the catch-up", || has_run(&store, "all", latest)).await;
    // The fire wakes the workers.
    woken.await;
    // Then each occurrence on time.
    step_through(
        &store,
        &clock,
        &all_spec,
        past,
        clock.now() + Duration::from_millis(2200),
    )
    .await;
    // A new job is picked up through the handle.
    store
        .put_job(
            spec("late", r#""schedule":"@every 1s""#),
            PutMode::Create,
            clock.now(),
        )
        .await
        .unwrap();
    handle.job_changed("late");
    step_through(
        &store,
        &clock,
        &all_spec,
        past,
        clock.now() + Duration::from_millis(1600),
    )
    .await;
    until("the late job fired", || async {
        !store.list_runs("late", None, 10).await.unwrap().is_empty()
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();

    let all = store.list_runs("all", None, 100).await.unwrap();
    // Folded skipped rows stand for `occurrences` consecutive occurrences, a second apart.
    let skipped: u64 = all
        .iter()
        .filter(|r| r.state == RunState::Skipped)
        .map(|r| r.occurrences)
        .sum();
    let queued = all.iter().filter(|r| r.state == RunState::Queued).count();
    // 10 missed: those later than epsilon (5 s) skipped, the rest queued; then ~3 on time.
    assert!((4..=6).contains(&skipped), "skipped {skipped}");
    assert!(queued >= 7, "queued {queued}");
    let mut occ: Vec<_> = all
        .iter()
        .flat_map(|r| {
            (0..r.occurrences as i64).map(move |k| r.scheduled_for + Duration::from_secs(k as u64))
        })
        .collect();
    let n = occ.len();
    occ.sort();
    occ.dedup();
    assert_eq!(occ.len(), n, "no occurrence twice");
    for w in occ.windows(2) {
        assert_eq!(w[1].duration_since(w[0]).as_secs(), 1, "continuous ledger");
    }
    let once = store.list_runs("once", None, 100).await.unwrap();
    // run_once: one run for the latest missed (forbid keeps later ones skipped while it is queued).
    assert!(once.iter().any(|r| r.state == RunState::Queued));
    assert!(
        once.iter()
            .any(|r| r.error.as_deref().is_some_and(|e| e.contains("collapsed")))
    );
    let late = store.list_runs("late", None, 100).await.unwrap();
    assert!(!late.is_empty(), "job added later fired");
    // Runs fired on time were queued at their occurrence (test time).
    let on_time = all
        .iter()
        .filter(|r| r.state == RunState::Queued && r.scheduled_for > past + Duration::from_secs(11))
        .collect::<Vec<_>>();
    assert!(on_time.len() >= 3, "{on_time:?}");
    for r in on_time {
        let lag = r.queued_at.duration_since(r.scheduled_for);
        assert!(lag.as_millis() < 50, "run {} queued {lag:?} late", r.id);
    }
}

/// Edits made through another node reach the leader only through its change poll (no
/// notification): a job rescheduled after a quiet spell, and one stamped by a node whose clock is
/// 5 s behind (inside the poll's overlap), are both picked up and fire.
#[tokio::test(start_paused = true)]
async fn edits_without_notification_are_found_by_the_change_poll() {
    let (store, _dir) = store().await;
    let _frozen = freeze();
    let clock: Arc<dyn Clock> = TokioClock::starting_at(t("2026-06-01T12:00:00Z"));
    store
        .put_job(
            spec("edited", r#""schedule":"@every 1h""#),
            PutMode::Create,
            clock.now(),
        )
        .await
        .unwrap();
    let ready = Arc::new(Notify::new());
    let config = SchedulerConfig {
        poll_changes_every: Duration::from_millis(200),
        clock: clock.clone(),
        ..SchedulerConfig::default()
    };
    let (_handle, stop, task) = start_leading(&store, config, ready);
    // A quiet spell: several polls find nothing new.
    step(Duration::from_millis(1500), Duration::from_millis(100)).await;
    assert!(
        store
            .list_runs("edited", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .put_job(
            spec("edited", r#""schedule":"@every 1s""#),
            PutMode::Upsert,
            clock.now(),
        )
        .await
        .unwrap();
    store
        .put_job(
            spec("skewed", r#""schedule":"@every 1s""#),
            PutMode::Create,
            clock.now() - Duration::from_secs(5),
        )
        .await
        .unwrap();
    // Within a few polls (test time) both fire.
    let start = tokio::time::Instant::now();
    for job in ["edited", "skewed"] {
        while store.list_runs(job, None, 100).await.unwrap().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{job}: the change poll did not pick it up"
            );
            step(Duration::from_millis(100), Duration::from_millis(100)).await;
        }
    }
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Fire writes that fail before writing, fail after their commit, or hang for 5 s (a stalled
/// database): the loop retries, catches up, and the job's ledger has every occurrence exactly
/// once.
#[tokio::test(start_paused = true)]
async fn fires_exactly_once_through_store_failures() {
    let (inner, _dir) = store().await;
    let (store, points) = Faulty::wrap(inner);
    let _frozen = freeze();
    let clock: Arc<dyn Clock> = TokioClock::starting_at(t("2026-06-01T12:00:00Z"));
    let created = clock.now();
    let job = spec(
        "j",
        r#""schedule":"@every 1s","misfire":"run_all","concurrency":"allow","epsilon":"1m""#,
    );
    store
        .put_job(job.clone(), PutMode::Create, created)
        .await
        .unwrap();
    points.inject(Write::Fire, 2, Fault::FailAfter);
    points.inject(Write::Fire, 4, Fault::FailBefore);
    points.inject(Write::Fire, 6, Fault::Hang(Duration::from_secs(5)));
    points.inject(Write::Fire, 8, Fault::FailAfter);
    points.inject(Write::Fire, 9, Fault::FailAfter);
    let config = quiet(&clock);
    let (_handle, stop, task) = start_leading(&store, config, Arc::new(Notify::new()));
    step(Duration::from_secs(30), Duration::from_millis(100)).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let settled = clock.now() - Duration::from_secs(3);
    let expected = occurrences(&job, created, created, settled);
    let mut runs = store.list_runs("j", None, 1000).await.unwrap();
    runs.sort_by_key(|r| r.scheduled_for);
    let fired: Vec<Timestamp> = runs
        .iter()
        .map(|r| r.scheduled_for)
        .filter(|at| *at <= settled)
        .collect();
    assert_eq!(fired, expected, "every occurrence, each once");
    assert!(runs.iter().all(|r| r.state == RunState::Queued));
    assert!(points.count(Write::Fire) > 9, "every failure point was met");
}

/// Run one job through `days` of test time from `start` and check that the loop fired
/// exactly the schedule's occurrences (`Schedule::next_after`, checked against cronie and
/// Quartz elsewhere), each once and at its time.
async fn fires_exactly_the_schedule(name: &str, extra: &str, start: &str, days: u64) {
    let (store, _dir) = store().await;
    let _frozen = freeze();
    let clock: Arc<dyn Clock> = TokioClock::starting_at(t(start));
    let created = clock.now();
    let job = spec(name, &format!(r#""concurrency":"allow",{extra}"#));
    store
        .put_job(job.clone(), PutMode::Create, created)
        .await
        .unwrap();
    let config = quiet(&clock);
    let (_handle, stop, task) = start_leading(&store, config, Arc::new(Notify::new()));
    let end = created + Duration::from_secs(days * 86_400);
    let expected = step_through(&store, &clock, &job, created, end).await;
    stop.cancel();
    task.await.unwrap().unwrap();

    let mut runs = store.list_runs(name, None, 10_000).await.unwrap();
    runs.sort_by_key(|r| r.scheduled_for);
    let fired: Vec<Timestamp> = runs.iter().map(|r| r.scheduled_for).collect();
    assert_eq!(fired, expected, "{name}: the occurrences fired, each once");
    for r in &runs {
        assert_eq!(r.state, RunState::Queued, "{r:?}");
        // Test time stood still from each occurrence until its run was written.
        assert_eq!(r.queued_at, r.scheduled_for, "{name}: queued at its time");
    }
    println!(
        "{name}: {} occurrences over {days} days, on time",
        fired.len()
    );
}

/// Spring forward in Berlin (02:00 → 03:00 on 29 March 2026): a daily 02:30 job runs once,
/// at the jump (cronie's rule for a fixed time in the gap); fall back (03:00 → 02:00 on 25
/// October): once, not twice.
#[tokio::test(start_paused = true)]
async fn berlin_dst_nights_fire_each_occurrence_once() {
    let extra = r#""schedule":"30 2 * * *","timezone":"Europe/Berlin""#;
    fires_exactly_the_schedule("spring", extra, "2026-03-27T12:00:00Z", 4).await;
    fires_exactly_the_schedule("autumn", extra, "2026-10-23T12:00:00Z", 4).await;
}

/// Lord Howe moves its clocks by 30 minutes (back at 02:00 on 5 April 2026); Chatham's clocks
/// jump from 02:45 to 03:45 (27 September 2026), exactly at the time of a 02:45 job.
#[tokio::test(start_paused = true)]
async fn half_hour_and_chatham_shifts_fire_each_occurrence_once() {
    fires_exactly_the_schedule(
        "lord_howe",
        r#""schedule":"*/30 * * * *","timezone":"Australia/Lord_Howe""#,
        "2026-04-03T12:00:00Z",
        3,
    )
    .await;
    fires_exactly_the_schedule(
        "chatham",
        r#""schedule":"45 2 * * *","timezone":"Pacific/Chatham""#,
        "2026-09-25T00:00:00Z",
        4,
    )
    .await;
    fires_exactly_the_schedule(
        "quartz_leap",
        r#""schedule":"0 0 12 29 2 ? *","timezone":"America/New_York""#,
        "2028-02-27T00:00:00Z",
        4,
    )
    .await;
}

/// Three days down: a `run_once` job fires one catch-up run at once (the older occurrences
/// skipped, the oldest summarised), then each next occurrence on time.
#[tokio::test(start_paused = true)]
async fn three_days_down_then_on_time() {
    let (store, _dir) = store().await;
    let _frozen = freeze();
    let clock: Arc<dyn Clock> = TokioClock::starting_at(t("2026-06-04T00:00:00Z"));
    let created = clock.now() - Duration::from_secs(3 * 86_400);
    let job = spec(
        "minutely",
        r#""schedule":"@every 1m","misfire":"run_once","concurrency":"allow""#,
    );
    store
        .put_job(job.clone(), PutMode::Create, created)
        .await
        .unwrap();
    let config = quiet(&clock);
    let (_handle, stop, task) = start_leading(&store, config, Arc::new(Notify::new()));
    let latest = *occurrences(&job, created, created, clock.now())
        .last()
        .unwrap();
    until("the catch-up", || has_run(&store, "minutely", latest)).await;
    step_through(
        &store,
        &clock,
        &job,
        created,
        clock.now() + Duration::from_secs(330),
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let runs = store.list_runs("minutely", None, 10_000).await.unwrap();
    let queued: Vec<_> = runs
        .iter()
        .filter(|r| r.state == RunState::Queued)
        .collect();
    let late: Vec<_> = queued
        .iter()
        .filter(|r| r.queued_at.duration_since(r.scheduled_for).as_secs() >= 1)
        .collect();
    assert!(late.is_empty(), "{late:?}");
    // One catch-up run (the latest missed occurrence) and five after the restart.
    assert_eq!(queued.len(), 6, "{queued:?}");
    let skipped: u64 = runs
        .iter()
        .filter(|r| r.state == RunState::Skipped)
        .map(|r| r.occurrences)
        .sum();
    assert!(
        skipped >= 999,
        "skipped rows stand for the recorded missed occurrences: {skipped}"
    );
    assert!(
        runs.iter().any(|r| r
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not recorded one by one"))),
        "the older missed occurrences are summarised"
    );
    let mut at: Vec<_> = runs.iter().map(|r| r.scheduled_for).collect();
    let n = at.len();
    at.sort();
    at.dedup();
    assert_eq!(at.len(), n, "no occurrence twice");
}

/// A run whose worker went silent is `lost` once its lease (30 s) ran out and the reaper's
/// grace (the lease TTL, counted from when this node began to lead) has passed, then retried
/// after its backoff.
#[tokio::test(start_paused = true)]
async fn an_expired_lease_is_reaped_and_retried() {
    let (store, _dir) = store().await;
    let _frozen = freeze();
    let clock: Arc<dyn Clock> = TokioClock::starting_at(t("2026-06-01T00:00:00Z"));
    store
        .put_job(
            spec("j", r#""retries":1,"retry_backoff":"10s""#),
            PutMode::Create,
            clock.now(),
        )
        .await
        .unwrap();
    let run = store
        .trigger_run("j", Default::default(), false, clock.now())
        .await
        .unwrap();
    let lease = Duration::from_secs(30);
    let claimed = store.claim_runs("w", 1, clock.now(), lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let ready = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let (leader_tx, leadership) = tempora_scheduler::leader::always_leader();
    let reaper = tokio::spawn(tempora_scheduler::reaper::run_reaper(
        store.clone(),
        Duration::from_secs(5),
        lease,
        ready.clone(),
        clock.clone(),
        leadership,
        stop.clone(),
    ));
    step(Duration::from_secs(25), Duration::from_secs(1)).await;
    assert_eq!(
        store.get_run(run.id).await.unwrap().unwrap().state,
        RunState::Running,
        "within its lease"
    );
    // The lease ran out at 30 s; the reaper (every 5 s) marks it lost at its next pass.
    let start = tokio::time::Instant::now();
    while store.get_run(run.id).await.unwrap().unwrap().state != RunState::Lost {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not reaped by 45 s"
        );
        step(Duration::from_secs(1), Duration::from_secs(1)).await;
    }
    let lost = store.get_run(run.id).await.unwrap().unwrap();
    let reaped_at = lost.finished_at.unwrap();
    assert!(
        reaped_at >= claimed[0].lease_expires_at,
        "not before the lease ran out"
    );
    let retry = store
        .list_runs("j", None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.attempt == 2)
        .expect("a retry");
    assert_eq!(retry.state, RunState::Queued);
    assert_eq!(retry.not_before, reaped_at + Duration::from_secs(10));
    stop.cancel();
    reaper.await.unwrap();
    drop(leader_tx);
}

/// Two nodes on one store: when the leader dies without giving the lease up, the other takes
/// over once the lease has lapsed (4 s) — not before — within one renewal after.
#[tokio::test(start_paused = true)]
async fn a_dead_leaders_lease_lapses_and_another_node_takes_over() {
    let (store, _dir) = store().await;
    let _frozen = freeze();
    let clock: Arc<dyn Clock> = TokioClock::starting_at(t("2026-06-01T00:00:00Z"));
    let config = |node: &str| tempora_scheduler::leader::LeaderConfig {
        node: node.into(),
        address: format!("{node}:1"),
        ttl: Duration::from_secs(4),
        renew_every: Duration::from_secs(1),
        eligible: true,
        max_clock_offset: Duration::from_secs(2),
        clock: clock.clone(),
    };
    let stop = CancellationToken::new();
    let (a_tx, mut a_rx) = tokio::sync::watch::channel(None);
    let a = tokio::spawn(tempora_scheduler::leader::run_elector(
        store.clone(),
        config("a"),
        a_tx,
        stop.clone(),
    ));
    until("a leads", || {
        std::future::ready(a_rx.borrow_and_update().is_some())
    })
    .await;
    let (b_tx, mut b_rx) = tokio::sync::watch::channel(None);
    let b = tokio::spawn(tempora_scheduler::leader::run_elector(
        store.clone(),
        config("b"),
        b_tx,
        stop.clone(),
    ));
    step(Duration::from_secs(10), Duration::from_millis(100)).await;
    assert!(b_rx.borrow().is_none(), "b does not lead while a renews");
    // a dies (no release).
    a.abort();
    let died = tokio::time::Instant::now();
    let fence = loop {
        if let Some(f) = b_rx.borrow_and_update().clone() {
            break f;
        }
        assert!(
            died.elapsed() < Duration::from_secs(30),
            "b did not take over"
        );
        step(Duration::from_millis(100), Duration::from_millis(100)).await;
    };
    let took = died.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_secs(6),
        "b took over after {took:?}"
    );
    assert_eq!((fence.node.as_str(), fence.epoch), ("b", 2));
    stop.cancel();
    b.await.unwrap();
}
