//! Retention on the SQLite file itself: pruned runs leave no output rows behind.

use std::time::Duration;

use jiff::Timestamp;
use tempora_core::run::{RunOverrides, RunState};
use tempora_store::{PutMode, Retention, RunResult, Store, StoreOptions};
use tempora_store_sqlite::SqliteStore;

#[tokio::test]
async fn pruned_runs_leave_no_output_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).expect("open store");
    let spec = serde_json::from_str(r#"{"name":"j","command":"true","concurrency":"allow"}"#)
        .expect("spec");
    let t0 = Timestamp::from_second(1_700_000_000).expect("t0");
    store
        .put_job(spec, PutMode::Create, t0)
        .await
        .expect("put job");
    for i in 0..5 {
        let at = t0 + Duration::from_secs(i);
        let run = store
            .trigger_run("j", RunOverrides::default(), false, at)
            .await
            .expect("trigger");
        store
            .claim_runs("w", 1, at, Duration::from_secs(30))
            .await
            .expect("claim");
        // Several output chunks per run.
        store.append_log(run.id, b"a".to_vec()).await.expect("log");
        store.append_log(run.id, b"b".to_vec()).await.expect("log");
        store
            .finish_runs(
                "w",
                vec![RunResult {
                    run_id: run.id,
                    state: RunState::Succeeded,
                    started_at: Some(at),
                    finished_at: at,
                    exit_code: Some(0),
                    signal: None,
                    error: None,
                    log_tail: b"c".to_vec(),
                    awaits_completion: false,
                }],
            )
            .await
            .expect("finish");
    }
    let count = |sql: &str| -> i64 {
        let c = rusqlite::Connection::open(dir.path().join("tempora.db")).expect("open db");
        c.query_row(sql, [], |r| r.get(0)).expect("count")
    };
    assert_eq!(count("SELECT COUNT(*) FROM run_logs"), 15);
    let policy = Retention {
        keep_runs: Some(2),
        keep_days: None,
    };
    assert_eq!(
        store
            .prune_runs(&policy, t0 + Duration::from_secs(60), 100)
            .await
            .expect("prune"),
        3
    );
    assert_eq!(count("SELECT COUNT(*) FROM runs"), 2);
    assert_eq!(count("SELECT COUNT(*) FROM run_logs"), 6);
    assert_eq!(
        count("SELECT COUNT(*) FROM run_logs WHERE run_id NOT IN (SELECT id FROM runs)"),
        0
    );
}
