//! End-to-end tests of the real binary: firing, output capture, retries, timeouts, cancel,
//! overlap. Each test starts its own server on a free port with a fresh SQLite file.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Server, alive, read_pid, ts};
use serde_json::json;

#[test]
fn every_second_job_fires_on_time_and_exactly_once() {
    let s = Server::start(&[]);
    s.put_job("tick", json!({"command": "true", "schedule": "@every 1s"}));
    let runs = s.wait_for(Duration::from_secs(15), "4 succeeded runs", || {
        let runs = s.runs("tick");
        (runs.iter().filter(|r| r["state"] == "succeeded").count() >= 4).then_some(runs)
    });
    let mut seen = HashMap::new();
    for r in &runs {
        assert_eq!(r["trigger"], "schedule");
        assert_eq!(r["attempt"], 1);
        *seen
            .entry(r["scheduled_for"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        if r["state"] == "succeeded" {
            let lag = ts(&r["started_at"]).duration_since(ts(&r["scheduled_for"]));
            assert!(lag.as_secs_f64() < 1.0, "start lag {lag:?}");
            assert_eq!(r["exit_code"], 0);
        }
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "duplicate occurrences: {seen:?}"
    );
    let (_, job) = s.get("/api/v1/jobs/tick");
    assert!(job["status"]["success_count"].as_u64().unwrap() >= 4);
    assert!(job["status"]["next_fire_at"].is_string());
    assert!(job["status"]["last_success_at"].is_string());
}

#[test]
fn output_is_captured_in_order_and_readable_while_running() {
    let s = Server::start(&[]);
    s.put_job(
        "talk",
        json!({"command": "echo out1; echo err1 >&2; echo out2; sleep 3; echo done"}),
    );
    let run = s.trigger("talk");
    let id = run["id"].as_i64().unwrap();
    // While it sleeps, the first lines are already readable.
    let text = s.wait_for(Duration::from_secs(5), "partial output", || {
        let (st, t) = s.get_text(&format!("/api/v1/runs/{id}/log"));
        (st == 200 && t.contains("out2")).then_some(t)
    });
    assert_eq!(text, "out1\nerr1\nout2\n");
    assert_eq!(s.run(id)["state"], "running");
    // follow streams until the end.
    let (st, followed) = s.get_text(&format!("/api/v1/runs/{id}/log?follow=true"));
    assert_eq!(st, 200);
    assert_eq!(followed, "out1\nerr1\nout2\ndone\n");
    let r = s.wait_final(id, Duration::from_secs(10));
    assert_eq!(r["state"], "succeeded");
    // Environment of the run.
    s.put_job("env", json!({"command": "echo $TEMPORA_JOB $TEMPORA_ATTEMPT $CHRONOS_JOB_NAME $FOO", "env": {"FOO": "bar"}}));
    let id = s.trigger("env")["id"].as_i64().unwrap();
    s.wait_final(id, Duration::from_secs(10));
    let (_, t) = s.get_text(&format!("/api/v1/runs/{id}/log"));
    assert_eq!(t, "env 1 env bar\n");
}

#[test]
fn output_is_bounded_keeping_the_tail() {
    let s = Server::start(&["--max-log-bytes", "100000"]);
    s.put_job("big", json!({"command": "i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"}));
    let id = s.trigger("big")["id"].as_i64().unwrap();
    let r = s.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "succeeded");
    assert!(r["log_dropped_bytes"].as_u64().unwrap() > 0);
    let (_, t) = s.get_text(&format!("/api/v1/runs/{id}/log"));
    assert!(t.starts_with("[tempora: "), "{}", &t[..100]);
    assert!(t.ends_with("line-2999-xxxxxxxxxxxxxxxxxxxxxxxx\n"));
    assert!(t.len() <= 100_000 + 200);
}

#[test]
fn failures_are_retried_with_backoff_as_new_runs() {
    let s = Server::start(&[]);
    s.put_job(
        "flaky",
        json!({"command": "exit 3", "retries": 2, "retry_backoff": "1s"}),
    );
    let first = s.trigger("flaky");
    let runs = s.wait_for(Duration::from_secs(20), "3 failed attempts", || {
        let runs = s.runs("flaky");
        (runs.len() == 3 && runs.iter().all(|r| r["state"] == "failed")).then_some(runs)
    });
    let attempts: Vec<_> = runs
        .iter()
        .rev()
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let triggers: Vec<_> = runs
        .iter()
        .rev()
        .map(|r| r["trigger"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(triggers, ["manual", "retry", "retry"]);
    for r in &runs {
        assert_eq!(r["exit_code"], 3);
        assert_eq!(r["error"], "exit status 3");
        assert_eq!(r["scheduled_for"], first["scheduled_for"]);
    }
    // Backoff: attempt 3 started at least 1 s + 2 s after attempt 1 ended.
    let gap = ts(&runs[0]["started_at"]).duration_since(ts(&runs[2]["finished_at"]));
    assert!(gap.as_secs_f64() >= 2.9, "backoff gap {gap:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.runs("flaky").len(), 3, "no fourth attempt");
    let (_, job) = s.get("/api/v1/jobs/flaky");
    // One failed occurrence (its three attempts are on the runs).
    assert_eq!(job["status"]["error_count"], 1);
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let s = Server::start(&["--kill-grace", "1s"]);
    let pidfile = s.scratch().join("child.pid");
    s.put_job(
        "slow",
        json!({
            "command": format!("sleep 100 & echo $! > {}; trap '' TERM; sleep 100", pidfile.display()),
            "timeout": "1s",
        }),
    );
    let id = s.trigger("slow")["id"].as_i64().unwrap();
    let r = s.wait_final(id, Duration::from_secs(15));
    assert_eq!(r["state"], "timed_out");
    assert_eq!(r["error"], "timed out after 1s");
    let d = ts(&r["finished_at"]).duration_since(ts(&r["started_at"]));
    assert!(d.as_secs_f64() < 5.0, "took {d:?}");
    let child = read_pid(&pidfile).expect("pid written");
    s.wait_for(Duration::from_secs(3), "grandchild gone", || {
        (!alive(child)).then_some(())
    });
}

#[test]
fn cancel_stops_a_running_run_and_a_queued_one() {
    let s = Server::start(&["--kill-grace", "1s"]);
    let pidfile = s.scratch().join("c.pid");
    s.put_job(
        "long",
        json!({"command": format!("echo $$ > {}; sleep 100", pidfile.display()), "concurrency": "allow"}),
    );
    let id = s.trigger("long")["id"].as_i64().unwrap();
    s.wait_for(Duration::from_secs(5), "running", || {
        (s.run(id)["state"] == "running" && read_pid(&pidfile).is_some()).then_some(())
    });
    let pid = read_pid(&pidfile).unwrap();
    // Just after a heartbeat (every 2 s), so that waiting for the next one would show.
    std::thread::sleep(Duration::from_millis(300));
    let asked = std::time::Instant::now();
    let (st, v) = s.send("POST", &format!("/api/v1/runs/{id}/cancel"), "");
    assert_eq!(st, 202, "{v}");
    // The node's own pool stops it at once, not at its next heartbeat.
    while alive(pid) {
        assert!(
            asked.elapsed() < Duration::from_millis(1000),
            "the process still runs {:?} after the cancel",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = s.wait_final(id, Duration::from_secs(10));
    assert_eq!(r["state"], "cancelled");
    // Cancelling a finished run is a conflict; an unknown one is 404.
    assert_eq!(
        s.send("POST", &format!("/api/v1/runs/{id}/cancel"), "").0,
        409
    );
    assert_eq!(s.send("POST", "/api/v1/runs/987654/cancel", "").0, 404);
}

#[test]
fn overlap_forbid_records_skipped_occurrences() {
    let s = Server::start(&[]);
    s.put_job(
        "busy",
        json!({"command": "sleep 2.5", "schedule": "@every 1s"}),
    );
    let runs = s.wait_for(Duration::from_secs(15), "a skipped occurrence", || {
        let runs = s.runs("busy");
        runs.iter().any(|r| r["state"] == "skipped").then_some(runs)
    });
    let skipped = runs.iter().find(|r| r["state"] == "skipped").unwrap();
    assert!(skipped["error"].as_str().unwrap().contains("forbid"));
    // Never two running at once.
    assert!(runs.iter().filter(|r| r["state"] == "running").count() <= 1);
    // Skips are logged (INFO), naming the job.
    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains("occurrences skipped") && l.contains("job=busy")),
        "{log}"
    );
}

#[test]
fn overlap_allow_runs_concurrently() {
    let s = Server::start(&[]);
    s.put_job(
        "par",
        json!({"command": "sleep 3", "schedule": "@every 1s", "concurrency": "allow"}),
    );
    s.wait_for(Duration::from_secs(10), "2 concurrent runs", || {
        (s.runs("par")
            .iter()
            .filter(|r| r["state"] == "running")
            .count()
            >= 2)
            .then_some(())
    });
}

#[test]
fn pause_and_resume() {
    let s = Server::start(&[]);
    s.put_job("p", json!({"command": "true", "schedule": "@every 1s"}));
    let (st, v) = s.send("POST", "/api/v1/jobs/p/pause", "");
    assert_eq!(st, 200);
    assert_eq!(v["paused"], true);
    assert!(v["status"]["next_fire_at"].is_null());
    std::thread::sleep(Duration::from_millis(500));
    let n = s.runs("p").len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.runs("p").len(), n, "a paused job does not fire");
    let (st, v) = s.send("POST", "/api/v1/jobs/p/resume", "");
    assert_eq!(st, 200);
    assert!(v["status"]["next_fire_at"].is_string());
    s.wait_for(Duration::from_secs(5), "fires again", || {
        (s.runs("p").len() > n).then_some(())
    });
}
