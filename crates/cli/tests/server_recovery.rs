//! Failure tests of the real binary: kill -9 mid-run, graceful shutdown, misfire after
//! downtime — checked from the run ledger (no occurrence lost or run twice).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{Server, alive, read_pid, ts};
use nix::sys::signal::Signal;
use serde_json::json;

/// Every scheduled occurrence appears once as attempt 1, consecutive ones `step` apart; a
/// folded `skipped` row stands for `occurrences` of them, up to `last_scheduled_for`.
fn assert_ledger_continuous(runs: &[serde_json::Value], step_secs: i64) {
    let mut by_occ: BTreeMap<i64, Vec<&serde_json::Value>> = BTreeMap::new();
    for r in runs
        .iter()
        .filter(|r| r["attempt"] == 1 && r["trigger"] == "schedule")
    {
        let first = ts(&r["scheduled_for"]).as_second();
        let n = r["occurrences"].as_i64().unwrap_or(1);
        if n > 1 {
            assert_eq!(r["state"], "skipped", "{r}");
            let last = ts(&r["last_scheduled_for"]).as_second();
            assert_eq!(
                last - first,
                (n - 1) * step_secs,
                "a folded row's span: {r}"
            );
        }
        for k in 0..n {
            by_occ.entry(first + k * step_secs).or_default().push(r);
        }
    }
    for (at, rs) in &by_occ {
        assert_eq!(rs.len(), 1, "occurrence {at} recorded {} times", rs.len());
    }
    let keys: Vec<i64> = by_occ.keys().copied().collect();
    for w in keys.windows(2) {
        assert_eq!(
            w[1] - w[0],
            step_secs,
            "gap in the ledger between {} and {}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn kill9_mid_run_marks_lost_and_retries_after_restart() {
    let mut s = Server::start(&[]);
    let pidfile = s.scratch().join("p.pid");
    let marker = s.scratch().join("attempts");
    s.put_job(
        "victim",
        json!({
            "command": format!("echo $TEMPORA_ATTEMPT >> {}; echo $$ > {}; sleep 30", marker.display(), pidfile.display()),
            "retries": 1,
            "retry_backoff": "1s",
            "timeout": "5s",
        }),
    );
    let id = s.trigger("victim")["id"].as_i64().unwrap();
    s.wait_for(Duration::from_secs(5), "job process", || read_pid(&pidfile));
    let pid = read_pid(&pidfile).unwrap();
    s.kill9();
    // The job dies with its server (no orphan racing the retry).
    s.wait_for(Duration::from_secs(3), "orphan gone", || {
        (!alive(pid)).then_some(())
    });
    s.spawn();
    let r = s.run(id);
    assert_eq!(r["state"], "lost", "{r}");
    assert!(r["error"].as_str().unwrap().contains("server stopped"));
    let retry = s.wait_for(Duration::from_secs(10), "retry attempt", || {
        s.runs("victim")
            .into_iter()
            .find(|r| r["attempt"] == 2 && r["state"] != "queued")
    });
    assert_eq!(retry["trigger"], "retry");
    let r2 = s.wait_final(retry["id"].as_i64().unwrap(), Duration::from_secs(15));
    assert_eq!(r2["state"], "timed_out");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1\n2\n");
    assert_eq!(s.runs("victim").len(), 2);
}

#[test]
fn kill9_with_every_second_job_loses_and_duplicates_nothing() {
    let mut s = Server::start(&[]);
    let ledger = s.scratch().join("ledger");
    s.put_job(
        "tick",
        json!({
            "command": format!("echo $TEMPORA_SCHEDULED_FOR >> {}", ledger.display()),
            "schedule": "@every 1s",
            "misfire": "run_all",
            "concurrency": "allow",
        }),
    );
    s.wait_for(Duration::from_secs(10), "two occurrences to run", || {
        (s.runs("tick").len() >= 2).then_some(())
    });
    s.kill9();
    std::thread::sleep(Duration::from_secs(3));
    s.spawn();
    // The downtime's occurrences ran (`run_all`) and nothing is left running.
    s.wait_for(Duration::from_secs(15), "the catch-up", || {
        let lines = std::fs::read_to_string(&ledger).unwrap_or_default();
        let distinct: std::collections::HashSet<&str> = lines.lines().collect();
        let idle = s
            .runs("tick")
            .iter()
            .all(|r| !matches!(r["state"].as_str(), Some("queued" | "running")));
        (distinct.len() >= 7 && idle).then_some(())
    });
    let runs = s.runs("tick");
    assert_ledger_continuous(&runs, 1);
    // run_all within epsilon: every occurrence of the downtime ran, each once (the job's own ledger).
    let lines = std::fs::read_to_string(&ledger).unwrap();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for l in lines.lines() {
        *count.entry(l).or_default() += 1;
    }
    assert!(
        count.values().all(|&n| n == 1),
        "an occurrence ran twice: {count:?}"
    );
    let succeeded = runs.iter().filter(|r| r["state"] == "succeeded").count();
    let lost = runs.iter().filter(|r| r["state"] == "lost").count();
    // A run killed with the server may have written its line before dying.
    assert!(
        succeeded <= count.len() && count.len() <= succeeded + lost,
        "{succeeded} succeeded, {lost} lost, {} ran",
        count.len()
    );
    assert!(
        runs.iter().all(|r| r["state"] != "skipped"),
        "run_all skips nothing within epsilon"
    );
    assert!(count.len() >= 7, "ran {} occurrences", count.len());
}

#[test]
fn misfire_run_once_collapses_and_epsilon_skips() {
    let mut s = Server::start(&[]);
    s.put_job("once", json!({"command": "true", "schedule": "@every 1s"}));
    s.put_job(
        "eps",
        json!({"command": "true", "schedule": "@every 1s", "epsilon": "2s"}),
    );
    s.put_job(
        "skip",
        json!({"command": "true", "schedule": "@every 1s", "misfire": "skip"}),
    );
    std::thread::sleep(Duration::from_secs(2));
    s.kill9();
    std::thread::sleep(Duration::from_secs(5));
    s.spawn();
    // The misfire decisions of the downtime are recorded as skipped runs.
    s.wait_for(Duration::from_secs(15), "the downtime's skips", || {
        ["once", "eps", "skip"]
            .iter()
            .all(|job| {
                let skipped: i64 = s
                    .runs(job)
                    .iter()
                    .filter(|r| r["state"] == "skipped")
                    .map(|r| r["occurrences"].as_i64().unwrap_or(1))
                    .sum();
                skipped >= 3
            })
            .then_some(())
    });
    for job in ["once", "eps", "skip"] {
        let runs = s.runs(job);
        assert_ledger_continuous(&runs, 1);
        let skipped: Vec<_> = runs.iter().filter(|r| r["state"] == "skipped").collect();
        let occurrences: i64 = skipped
            .iter()
            .map(|r| r["occurrences"].as_i64().unwrap_or(1))
            .sum();
        assert!(occurrences >= 3, "{job}: {occurrences} skipped");
        // A run queued just before the kill may still be pending at restart: the overlap
        // policy (forbid) may then skip an occurrence too. Every other skip is the misfire policy's.
        let reasons: Vec<&str> = skipped
            .iter()
            .map(|r| r["error"].as_str().unwrap())
            .filter(|r| !r.contains("concurrency: forbid"))
            .collect();
        assert!(!reasons.is_empty(), "{job}: {reasons:?}");
        match job {
            "once" => assert!(
                reasons.iter().all(|r| r.contains("collapsed")),
                "{reasons:?}"
            ),
            "eps" => assert!(reasons.iter().any(|r| r.contains("epsilon")), "{reasons:?}"),
            _ => assert!(
                reasons.iter().all(|r| r.contains("misfire: skip")),
                "{reasons:?}"
            ),
        }
    }
}

#[test]
fn sigterm_waits_for_grace_then_records_lost_and_retries_after_restart() {
    let mut s = Server::start(&["--shutdown-grace", "1s", "--kill-grace", "1s"]);
    let pidfile = s.scratch().join("g.pid");
    s.put_job(
        "graceful",
        json!({"command": format!("echo $$ > {}; sleep 60", pidfile.display()), "retries": 1, "retry_backoff": "1s", "timeout": "3s"}),
    );
    let id = s.trigger("graceful")["id"].as_i64().unwrap();
    s.wait_for(Duration::from_secs(5), "job process", || read_pid(&pidfile));
    let pid = read_pid(&pidfile).unwrap();
    let status = s.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.success(), "graceful exit: {status:?}");
    assert!(!alive(pid), "run process killed at shutdown");
    s.spawn();
    let r = s.run(id);
    assert_eq!(r["state"], "lost");
    assert!(r["error"].as_str().unwrap().contains("shut down"), "{r}");
    s.wait_for(Duration::from_secs(10), "retry after restart", || {
        s.runs("graceful")
            .into_iter()
            .find(|r| r["attempt"] == 2 && r["state"] != "queued")
    });
}

#[test]
fn sigterm_lets_short_runs_finish() {
    let mut s = Server::start(&["--shutdown-grace", "5s"]);
    s.put_job("short", json!({"command": "sleep 1; echo finished"}));
    let id = s.trigger("short")["id"].as_i64().unwrap();
    s.wait_for(Duration::from_secs(5), "running", || {
        (s.run(id)["state"] == "running").then_some(())
    });
    let status = s.signal_and_wait(Signal::SIGINT, Duration::from_secs(10));
    assert!(status.success());
    s.spawn();
    let r = s.run(id);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(
        s.get_text(&format!("/api/v1/runs/{id}/log")).1,
        "finished\n"
    );
}

/// A job found a year behind (its next occurrence rewound in the stopped server's database):
/// the planner jumps over the stale occurrences instead of walking 31 million of them, the job
/// fires at once, the skip is summarised, and SIGTERM still stops the server promptly. An
/// `epsilon` above one day is refused.
#[test]
fn a_job_a_year_behind_fires_at_once_and_shutdown_stays_prompt() {
    let mut s = Server::start(&["--shutdown-grace", "1s", "--kill-grace", "1s"]);
    s.put_job(
        "behind",
        json!({"command": "true", "schedule": "* * * * * ?", "epsilon": "10s"}),
    );
    let (st, v) = s.send(
        "PUT",
        "/api/v1/jobs/wide",
        &json!({"command": "true", "epsilon": "P2D"}).to_string(),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["field"], "epsilon");
    s.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    let year_ago_us =
        (jiff::Timestamp::now().as_microsecond() - 365 * 86_400 * 1_000_000).to_string();
    let db = s.data_dir().join("tempora.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute(\"UPDATE jobs SET next_fire_at=? WHERE name='behind'\", (int(sys.argv[2]),)); \
             c.commit()",
        ])
        .arg(&db)
        .arg(&year_ago_us)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    let started = std::time::Instant::now();
    let restart = jiff::Timestamp::now();
    s.spawn();
    let runs = s.wait_for(
        Duration::from_secs(5),
        "a run of the job a year behind",
        || {
            let runs = s.runs("behind");
            runs.iter()
                .any(|r| r["state"] != "skipped" && ts(&r["scheduled_for"]) > restart)
                .then_some(runs)
        },
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    let notes: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["error"].as_str())
        .filter(|e| e.contains("not recorded one by one"))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("; more than 1000") && n.contains("older missed")),
        "{notes:?}"
    );
    // Each recorded skip is a stale occurrence of the last 10 s window or the note's row: far
    // fewer rows than occurrences.
    assert!(runs.len() < 1100, "{} rows", runs.len());
    let t = std::time::Instant::now();
    s.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

/// While a SIGTERM'd node lets its runs finish, the API still answers (`/health` 200, runs
/// readable) and `/ready` says 503, so a load balancer moves on; the run keeps its real result.
#[test]
fn a_draining_node_answers_the_api_and_is_not_ready() {
    let mut s = Server::start(&["--shutdown-grace", "10s"]);
    s.put_job("drain-me", json!({"command": "sleep 2; echo done"}));
    let id = s.trigger("drain-me")["id"].as_i64().unwrap();
    s.wait_for(Duration::from_secs(10), "the run to start", || {
        (s.run(id)["state"] == "running").then_some(())
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid()), Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.get_text("/health").0, 200);
    let (st, text) = s.get_text("/ready");
    assert_eq!(st, 503, "{text}");
    assert!(text.contains("shutting down"), "{text}");
    assert_eq!(s.run(id)["state"], "running");
    // The node exits once the run is over; its result is the real one.
    let status = s.child.take().unwrap().wait().unwrap();
    assert!(status.success(), "{status:?}");
    s.spawn();
    let r = s.run(id);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(s.get_text(&format!("/api/v1/runs/{id}/log")).1, "done\n");
}

/// `misfire: run_all` after downtime runs every missed occurrence, one after another and oldest
/// first, under the default `concurrency: forbid` and under `queue` (they used to skip most of
/// the backlog as overlapping).
#[test]
fn run_all_catches_up_one_after_another_whatever_the_overlap_policy() {
    let mut s = Server::start(&[]);
    for policy in ["forbid", "queue"] {
        let ledger = s.scratch().join(format!("ledger-{policy}"));
        s.put_job(
            &format!("catch-{policy}"),
            json!({
                "command": format!(
                    "echo \"start $TEMPORA_SCHEDULED_FOR $(date +%s%N)\" >> {l}; sleep 0.3; \
                     echo \"end $TEMPORA_SCHEDULED_FOR $(date +%s%N)\" >> {l}",
                    l = ledger.display()
                ),
                "schedule": "@every 2s",
                "misfire": "run_all",
                "concurrency": policy,
            }),
        );
    }
    // Stopped for 7 s: 3 or 4 occurrences of each job fall due while it is down.
    std::thread::sleep(Duration::from_millis(500));
    s.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    let stopped = jiff::Timestamp::now();
    std::thread::sleep(Duration::from_secs(7));
    let restarted = jiff::Timestamp::now();
    s.spawn();
    let missed = |job: &str| -> Vec<serde_json::Value> {
        s.runs(job)
            .into_iter()
            .filter(|r| {
                let at = common::ts(&r["scheduled_for"]);
                at > stopped && at < restarted
            })
            .collect()
    };
    s.wait_for(Duration::from_secs(20), "the catch-up of both jobs", || {
        ["catch-forbid", "catch-queue"]
            .iter()
            .all(|job| {
                let m = missed(job);
                m.len() >= 3
                    && m.iter()
                        .all(|r| !matches!(r["state"].as_str(), Some("queued" | "running")))
            })
            .then_some(())
    });
    // No new occurrence while the ledgers are read (a run in progress has no `end` line yet).
    for job in ["catch-forbid", "catch-queue"] {
        assert_eq!(
            s.send("POST", &format!("/api/v1/jobs/{job}/pause"), "").0,
            200
        );
    }
    s.wait_for(Duration::from_secs(10), "the last runs to end", || {
        ["catch-forbid", "catch-queue"]
            .iter()
            .all(|job| {
                s.runs(job)
                    .iter()
                    .all(|r| !matches!(r["state"].as_str(), Some("queued" | "running")))
            })
            .then_some(())
    });
    for policy in ["forbid", "queue"] {
        let job = format!("catch-{policy}");
        let runs = s.runs(&job);
        let missed: Vec<&serde_json::Value> = runs
            .iter()
            .filter(|r| {
                let at = common::ts(&r["scheduled_for"]);
                at > stopped && at < restarted
            })
            .collect();
        assert!(missed.len() >= 3, "{policy}: {runs:?}");
        assert!(
            missed.iter().all(|r| r["state"] == "succeeded"),
            "{policy}: every missed occurrence ran: {runs:?}"
        );
        // From the job's own ledger: never two at once, in the order of their occurrences.
        let ledger = std::fs::read_to_string(s.scratch().join(format!("ledger-{policy}"))).unwrap();
        let lines: Vec<(&str, &str)> = ledger
            .lines()
            .map(|l| {
                let mut f = l.split(' ');
                (f.next().unwrap(), f.next().unwrap())
            })
            .collect();
        for pair in lines.chunks(2) {
            assert!(
                pair.len() == 2
                    && pair[0].0 == "start"
                    && pair[1].0 == "end"
                    && pair[0].1 == pair[1].1,
                "{policy}: runs overlapped: {ledger}"
            );
        }
        let order: Vec<&str> = lines.iter().step_by(2).map(|(_, at)| *at).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "{policy}: not oldest first: {ledger}");
    }
}

/// Flags are checked before anything starts: a wrong one ends the server with an error naming
/// it, and no store is made (the data directory does not appear) and no port bound.
#[test]
fn bad_flags_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["--retention-every", "0s"], "--retention-every"),
        (&["--max-clock-offset", "0s"], "--max-clock-offset"),
        (&["--max-clock-offset", "1ms"], "--max-clock-offset"),
        (
            &["--leader-renew-every", "20s", "--leader-lease-ttl", "10s"],
            "--leader-renew-every",
        ),
        (&["--lease-ttl", "0s"], "--lease-ttl"),
        (&["--claim-poll-every", "0s"], "--claim-poll-every"),
        (&["--tls-cert", missing, "--tls-key", missing], "--tls-cert"),
    ];
    for (flags, named) in cases {
        let out = std::process::Command::new(common::bin())
            .args([
                "server",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &listen,
            ])
            .args(flags)
            .env_remove("TEMPORA_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} accepted");
        assert!(stderr.contains(named), "{flags:?}: {stderr}");
        assert!(!data.exists(), "{flags:?}: the store was opened");
        // The port is free: nothing was bound.
        std::net::TcpListener::bind(&listen).unwrap();
    }
}
