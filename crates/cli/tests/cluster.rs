//! A cluster of real `tempora server` processes on one throwaway PostgreSQL: one leader at a
//! time, every node answers, failover after `kill -9`, fencing after `SIGSTOP` past the lease,
//! and a ledger written by the job itself showing every occurrence ran exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Server;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tempora_testkit::pg;

fn database() -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(pg::fresh_database())
}

fn node(url: &str, id: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--database-url", url, "--node-id", id];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn cluster(s: &Server) -> Value {
    let (st, v) = s.get("/api/v1/cluster");
    assert_eq!(st, 200, "{v}");
    v
}

/// The leader as seen by `s`, once there is one.
fn leader(s: &Server, within: Duration) -> (String, u64) {
    s.wait_for(within, "a leader", || {
        let c = cluster(s);
        let l = &c["leader"];
        Some((l["node"].as_str()?.to_owned(), l["epoch"].as_u64()?))
    })
}

/// Wait for a leader other than `old` (or with a newer epoch); returns it and how long it took.
fn new_leader(s: &Server, old_epoch: u64, within: Duration) -> (String, u64, Duration) {
    let t0 = Instant::now();
    let (n, e) = s.wait_for(within, "a new leader", || {
        let c = cluster(s);
        let l = &c["leader"];
        let e = l["epoch"].as_u64()?;
        (e > old_epoch).then(|| (l["node"].as_str().unwrap_or("").to_owned(), e))
    });
    (n, e, t0.elapsed())
}

#[test]
fn failover_and_fencing_keep_every_occurrence_exactly_once() {
    let url = database();
    // a and b may lead and run nothing; w never leads and runs the jobs.
    let a = node(&url, "a", &["--local-slots", "0"]);
    let (first, e1) = leader(&a, Duration::from_secs(10));
    assert_eq!(first, "a");
    let mut b = node(&url, "b", &["--local-slots", "0"]);
    let w = node(&url, "w", &["--no-leader", "--local-slots", "8"]);
    let ledger = w.scratch().join("ledger");
    // Created through a node that does not lead: the leader learns of it by polling.
    let cmd = format!("echo \"$TEMPORA_SCHEDULED_FOR\" >> {}", ledger.display());
    let (st, v) = w.send(
        "PUT",
        "/api/v1/jobs/tick",
        &json!({"command": cmd, "schedule": "@every 1s", "misfire": "run_all",
                "concurrency": "allow", "epsilon": "5m"})
        .to_string(),
    );
    assert_eq!(st, 201, "{v}");
    // Every node answers, and agrees on the leader and the job.
    for s in [&a, &b, &w] {
        let c = cluster(s);
        assert_eq!(c["leader"]["node"], "a", "{c}");
        assert_eq!(s.get("/api/v1/jobs/tick").0, 200);
        assert_eq!(
            s.get("/v1/scheduler/leader").1["leader"],
            format!("127.0.0.1:{}", a.port)
        );
    }
    let nodes = cluster(&w)["nodes"].as_array().unwrap().len();
    assert_eq!(nodes, 3);
    w.wait_for(Duration::from_secs(10), "the first runs", || {
        (w.runs("tick").len() >= 3).then_some(())
    });

    // Kill the leader: b takes over (w cannot), within the lease + one renewal.
    let mut a = a;
    a.kill9();
    let (n, e2, took) = new_leader(&w, e1, Duration::from_secs(15));
    assert_eq!(n, "b");
    println!("failover after kill -9: {took:?}");
    assert!(took < Duration::from_secs(7), "failover took {took:?}");
    // b fires: an occurrence after the failover ran.
    let failover = jiff::Timestamp::now();
    w.wait_for(Duration::from_secs(10), "b's first occurrences", || {
        w.runs("tick")
            .iter()
            .any(|r| common::ts(&r["scheduled_for"]) > failover && r["state"] == "succeeded")
            .then_some(())
    });

    // Pause the new leader past its lease: a (restarted) takes over; b, resumed, is fenced.
    a.spawn();
    let b_pid = Pid::from_raw(b.pid());
    kill(b_pid, Signal::SIGSTOP).unwrap();
    let (n, e3, took) = new_leader(&w, e2, Duration::from_secs(15));
    assert_eq!(n, "a");
    println!("failover after SIGSTOP: {took:?}");
    std::thread::sleep(Duration::from_secs(2));
    kill(b_pid, Signal::SIGCONT).unwrap();
    // b, resumed, finds its lease taken and steps down; a goes on leading.
    b.wait_for(Duration::from_secs(10), "b to step down", || {
        (b.get("/api/v1/status").1["leader"] == false).then_some(())
    });
    assert_eq!(cluster(&w)["leader"]["node"], "a");
    assert_eq!(cluster(&w)["epoch"].as_u64(), Some(e3));

    // Stop firing, let the runs finish, then read the ledger.
    assert_eq!(w.send("POST", "/api/v1/jobs/tick/pause", "").0, 200);
    w.wait_for(Duration::from_secs(30), "runs to finish", || {
        w.runs("tick")
            .iter()
            .all(|r| !matches!(r["state"].as_str(), Some("queued" | "running")))
            .then_some(())
    });
    let text = std::fs::read_to_string(&ledger).unwrap();
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for line in text.lines() {
        let t: jiff::Timestamp = line.trim().parse().unwrap();
        *seen.entry(t.as_second()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ran twice: {twice:?}");
    let (lo, hi) = (*seen.keys().next().unwrap(), *seen.keys().last().unwrap());
    let missing: Vec<i64> = (lo..=hi).filter(|t| !seen.contains_key(t)).collect();
    assert!(missing.is_empty(), "missing occurrences: {missing:?}");
    assert!(hi - lo >= 10, "the window covers the failovers: {lo}..{hi}");
    // The store agrees: one run per occurrence, all succeeded.
    let runs = w.runs("tick");
    assert_eq!(runs.len(), seen.len());
    assert!(runs.iter().all(|r| r["state"] == "succeeded"));
    b.kill9();
}

/// A `tempora worker` whose server is paused (SIGSTOP) moves to the other node and keeps
/// running jobs, including the one it was running when the pause began; once the node is
/// resumed the worker goes on as before (the fault suite once saw a worker take no run for a
/// minute after its node was paused; this test pins the worker's side of that down).
#[test]
fn worker_keeps_running_jobs_while_its_server_is_paused() {
    let url = database();
    let a = node(&url, "a", &["--local-slots", "0"]);
    let b = node(&url, "b", &["--local-slots", "0"]);
    let w = common::Worker::start("w-pause", &[a.url(), b.url()], &["--slots", "4"]);
    let _dump = common::DumpOnPanic::new(vec![("w-pause".into(), w.log_path())]);
    a.put_job(
        "ping",
        json!({"command": "echo pong", "concurrency": "allow"}),
    );
    let hold = a.scratch().join("hold");
    a.put_job(
        "hold",
        json!({"command": format!("touch {}; sleep 4; echo held", hold.display())}),
    );
    let ok = |s: &Server, id: i64, within: u64| {
        let r = s.wait_final(id, Duration::from_secs(within));
        assert_eq!(r["state"], "succeeded", "{r}");
        assert_eq!(r["worker"], "w-pause", "{r}");
    };
    let id_of = |v: Value| v["id"].as_i64().expect("run id");
    ok(&a, id_of(a.trigger("ping")), 20);
    // The node the worker registered with, and the other one.
    let first = a.wait_for(Duration::from_secs(5), "the worker's start line", || {
        let log = w.log();
        let line = log.lines().find(|l| l.contains("tempora worker started"))?;
        Some(if line.contains("node=a") { "a" } else { "b" })
    });
    let (paused, other) = if first == "a" { (&a, &b) } else { (&b, &a) };
    // A run in progress when the pause begins.
    let held = id_of(other.trigger("hold"));
    other.wait_for(Duration::from_secs(20), "the long run to start", || {
        hold.exists().then_some(())
    });
    let pid = Pid::from_raw(paused.pid());
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    let t = Instant::now();
    // New runs queued through the other node reach the worker while its first node sleeps.
    let during: Vec<i64> = (0..3).map(|_| id_of(other.trigger("ping"))).collect();
    for id in &during {
        ok(other, *id, 30);
    }
    ok(other, held, 30);
    println!("runs done {:?} into the pause", t.elapsed());
    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    // And after the resume, through either node.
    for s in [paused, other, paused, other] {
        ok(s, id_of(s.trigger("ping")), 20);
    }
}
