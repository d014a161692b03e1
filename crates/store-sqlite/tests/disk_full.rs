//! A disk that fills up under a batch of writes: every caller's answer matches the store.
//!
//! The store lives on a small tmpfs (mounted by the test; needs root, which CI has). Many
//! writers put large jobs at once, so the writer thread groups them into batches and SQLite's
//! page cache (1 MiB here) spills to the WAL in the middle of a transaction. When the disk is
//! full, SQLite may roll the whole transaction back by itself; the operations after that point
//! must not then run outside a transaction, committing one by one while their callers hear
//! "failed" (which would make a retried fire or result run twice). Checked: a job is stored if
//! and only if its `put_job` said so; after the disk grows, the store takes writes again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use jiff::Timestamp;
use tempora_store::{PutMode, Store, StoreError, StoreOptions};
use tempora_store_sqlite::{SqliteStore, SqliteTuning};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tempora-disk-full")
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("mount");
        assert!(st.success(), "cannot resize the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn spec(name: &str, size: usize) -> tempora_core::job::JobSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "command": format!("echo {}", "x".repeat(size)),
    }))
    .expect("spec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sqlite_rolled_back_fails_as_a_whole() {
    let Some(fs) = Tmpfs::mount("3m") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot mount a tmpfs (this test needs root); CI must run it"
        );
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let data: PathBuf = fs.path().join("data");
    let store = Arc::new(
        SqliteStore::open_tuned(
            &data,
            StoreOptions::default(),
            SqliteTuning {
                cache_mib: 1,
                ..SqliteTuning::default()
            },
        )
        .expect("open the store"),
    );
    // Rounds of 64 concurrent writers, each putting a new ~40 KiB job, until the disk is full
    // and a few rounds after that.
    let mut answers: Vec<(String, Result<(), StoreError>)> = Vec::new();
    let mut full_rounds = 0;
    for round in 0..60 {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                let name = format!("job-{round}-{i}");
                tokio::spawn(async move {
                    let r = store
                        .put_job(spec(&name, 40 * 1024), PutMode::Upsert, Timestamp::now())
                        .await
                        .map(|_| ());
                    (name, r)
                })
            })
            .collect();
        let mut failed = false;
        for t in tasks {
            let (name, r) = t.await.expect("task");
            failed |= r.is_err();
            answers.push((name, r));
        }
        if failed {
            full_rounds += 1;
            if full_rounds == 4 {
                break;
            }
        }
    }
    let failures: Vec<&(String, Result<(), StoreError>)> =
        answers.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(!failures.is_empty(), "the disk never filled up");
    for (_, r) in &failures {
        let e = r.as_ref().expect_err("a failure");
        assert!(
            matches!(e, StoreError::Unavailable(_) | StoreError::Backend(_)),
            "unexpected error: {e}"
        );
    }
    // Give the disk room again: the store takes writes, and its contents match the answers.
    fs.resize("256m");
    let mut wrong = Vec::new();
    for (name, r) in &answers {
        let stored = store.get_job(name).await.expect("read").is_some();
        if stored != r.is_ok() {
            wrong.push(format!("{name}: answered {r:?}, stored {stored}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} answers disagree with the store (of {} failures), e.g.:\n{}",
        wrong.len(),
        answers.len(),
        failures.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
    // A failed write retried now succeeds.
    let (name, _) = failures[0];
    store
        .put_job(spec(name, 40 * 1024), PutMode::Upsert, Timestamp::now())
        .await
        .expect("retry after the disk grew");
    assert!(store.get_job(name).await.expect("read").is_some());
}
