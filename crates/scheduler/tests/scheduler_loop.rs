//! The scheduler loop against a real SQLite store: on-time firing, catch-up of occurrences
//! missed while "down" (per the misfire policy), and reaction to job changes.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tempora_core::job::JobSpec;
use tempora_core::run::RunState;
use tempora_scheduler::{Scheduler, SchedulerConfig};
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

async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    (Arc::new(s), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fires_on_time_and_catches_up_after_downtime() {
    let (store, _dir) = store().await;
    // Saved 10.5 s "ago": occurrences at -9.5 s … -0.5 s were missed while nothing ran.
    let past = Timestamp::now() - Duration::from_millis(10_500);
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
    let (handle, stop, task) = start_leading(&store, SchedulerConfig::default(), ready.clone());
    // The fire wakes the workers.
    tokio::time::timeout(Duration::from_secs(2), ready.notified())
        .await
        .expect("work_ready notified");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // A new job is picked up through the handle.
    store
        .put_job(
            spec("late", r#""schedule":"@every 1s""#),
            PutMode::Create,
            Timestamp::now(),
        )
        .await
        .unwrap();
    handle.job_changed("late");
    tokio::time::sleep(Duration::from_millis(1600)).await;
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
}

/// Edits made through another node reach the leader only through its change poll (no
/// notification): a job rescheduled after a quiet spell, and one stamped by a node whose clock is
/// 5 s behind (inside the poll's overlap), are both picked up and fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_without_notification_are_found_by_the_change_poll() {
    let (store, _dir) = store().await;
    store
        .put_job(
            spec("edited", r#""schedule":"@every 1h""#),
            PutMode::Create,
            Timestamp::now(),
        )
        .await
        .unwrap();
    let ready = Arc::new(Notify::new());
    let config = SchedulerConfig {
        poll_changes_every: Duration::from_millis(200),
        ..SchedulerConfig::default()
    };
    let (_handle, stop, task) = start_leading(&store, config, ready);
    // A quiet spell: several polls find nothing new.
    tokio::time::sleep(Duration::from_millis(1500)).await;
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
            Timestamp::now(),
        )
        .await
        .unwrap();
    store
        .put_job(
            spec("skewed", r#""schedule":"@every 1s""#),
            PutMode::Create,
            Timestamp::now() - Duration::from_secs(5),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    for job in ["edited", "skewed"] {
        let runs = store.list_runs(job, None, 100).await.unwrap();
        assert!(
            !runs.is_empty(),
            "{job}: the change poll did not pick it up"
        );
    }
}
