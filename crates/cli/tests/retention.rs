//! Run-history retention end to end: `--keep-runs` deletes old finished runs in the background
//! and leaves the job's counters alone; it is on by default; bad values are refused naming the
//! flag.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, bin};
use serde_json::json;

#[test]
fn keep_runs_leaves_the_newest_finished_runs_and_the_counters() {
    let s = Server::start(&["--keep-runs", "3", "--retention-every", "1s"]);
    s.put_job("r", json!({"command": "echo run $TEMPORA_RUN_ID"}));
    let mut ids = Vec::new();
    for _ in 0..8 {
        let id = s.trigger("r")["id"].as_i64().unwrap();
        assert_eq!(
            s.wait_final(id, Duration::from_secs(10))["state"],
            "succeeded"
        );
        ids.push(id);
    }
    let left = s.wait_for(Duration::from_secs(10), "3 runs left", || {
        let runs = s.runs("r");
        (runs.len() == 3).then_some(runs)
    });
    let kept: Vec<i64> = left.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(kept, [ids[7], ids[6], ids[5]], "the newest three remain");
    assert!(left.iter().all(|r| r["state"] == "succeeded"));
    // A deleted run and its output are gone; a kept one's output is there.
    assert_eq!(s.get(&format!("/api/v1/runs/{}", ids[0])).0, 404);
    let (st, text) = s.get_text(&format!("/api/v1/runs/{}/log", ids[7]));
    assert_eq!((st, text), (200, format!("run {}\n", ids[7])));
    // The counters still count every run.
    let (_, job) = s.get("/api/v1/jobs/r");
    assert_eq!(job["status"]["success_count"], 8, "{job}");
    assert_eq!(job["status"]["error_count"], 0, "{job}");
    assert!(job["status"]["last_success_at"].is_string());
    assert_eq!(job["status"]["last_run"]["id"], ids[7], "{job}");
    // The passes are logged and counted.
    let (_, metrics) = s.get_text("/metrics?format=prometheus");
    let pruned = metrics
        .lines()
        .find(|l| l.starts_with("tempora_runs_pruned_total"))
        .unwrap_or_else(|| panic!("no tempora_runs_pruned_total in:\n{metrics}"));
    assert_eq!(pruned.split_whitespace().last(), Some("5"), "{pruned}");
    let log = s.log();
    assert!(
        log.contains("retention pass") && log.contains("deleted"),
        "no retention pass logged:\n{log}"
    );
}

/// Retention is on by default (newest 100 finished runs per job, 30 days), like Kubernetes'
/// history limits; `--keep-runs 0 --keep-days 0` keeps everything.
#[test]
fn retention_is_on_by_default_and_zero_turns_it_off() {
    let on = Server::start(&["--retention-every", "1s"]);
    let off = Server::start(&[
        "--retention-every",
        "1s",
        "--keep-runs",
        "0",
        "--keep-days",
        "0",
    ]);
    for s in [&on, &off] {
        s.put_job("r", json!({"command": "true", "concurrency": "allow"}));
        for _ in 0..104 {
            s.trigger("r");
        }
        // Every run ended (the job's counter; on `on`, retention may already have deleted the
        // first ones).
        s.wait_for(Duration::from_secs(60), "104 runs to succeed", || {
            (s.get("/api/v1/jobs/r").1["status"]["success_count"] == 104).then_some(())
        });
    }
    on.wait_for(Duration::from_secs(15), "100 runs left", || {
        (on.runs("r").len() == 100).then_some(())
    });
    assert!(on.log().contains("keep_runs=100") && on.log().contains("keep_days=30"));
    // Two more passes on the server with retention off: still every run.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(off.runs("r").len(), 104);
    let (_, metrics) = off.get_text("/metrics?format=prometheus");
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("tempora_runs_pruned_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[test]
fn bad_retention_values_are_refused_naming_the_flag() {
    for (args, env, flag) in [
        (vec!["--keep-runs", "-3"], None, "--keep-runs"),
        (vec!["--keep-runs", "ten"], None, "--keep-runs"),
        (vec!["--keep-days", "week"], None, "--keep-days"),
        (vec![], Some(("TEMPORA_KEEP_DAYS", "1.5")), "--keep-days"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(&args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(flag), "{args:?} {env:?}: {err}");
    }
}
