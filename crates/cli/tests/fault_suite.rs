//! The fault-injection suite: PostgreSQL, 3 server nodes and 2 workers, 20 jobs firing every
//! second (`misfire: run_all`, `concurrency: allow`) and a few jobs that run for seconds, for
//! a few minutes, while it kills the leader, pauses the (new) leader past its lease and resumes
//! it, kills a worker mid-run and restarts PostgreSQL. At the end a ledger that the jobs' own
//! commands write is checked: every occurrence in the window ran exactly once. It prints each
//! failover's duration.
//!
//! By hand: `scripts/fault-suite.sh` (= `cargo nextest run -p tempora --test fault_suite
//! --no-capture`). `FAULT_SUITE_SECONDS` sets the length of the steady phases (default 300:
//! about 3 minutes in all).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::{Server, Worker};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

fn seconds(default: u64) -> Duration {
    let scale: f64 = std::env::var("FAULT_SUITE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(2.0, |total: f64| total / 150.0);
    Duration::from_secs_f64(default as f64 * scale.max(0.2))
}

/// The leader and epoch as seen through any node that answers.
fn leader_of(nodes: &[&Server]) -> Option<(String, u64)> {
    nodes.iter().find_map(|s| {
        let (st, v) = common::http("GET", &format!("{}/api/v1/cluster", s.url()), "").ok()?;
        if st != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&v).ok()?;
        Some((
            v["leader"]["node"].as_str()?.to_owned(),
            v["leader"]["epoch"].as_u64()?,
        ))
    })
}

/// Wait for a leader with an epoch above `epoch`; returns it and the time since `from`.
fn failover(nodes: &[&Server], epoch: u64, from: Instant) -> (String, u64, Duration) {
    let deadline = from + Duration::from_secs(60);
    loop {
        if let Some((n, e)) = leader_of(nodes)
            && e > epoch
        {
            return (n, e, from.elapsed());
        }
        assert!(Instant::now() < deadline, "no new leader within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn by_id<'a>(nodes: &'a mut [Server; 3], id: &str) -> &'a mut Server {
    let i = ["n1", "n2", "n3"]
        .iter()
        .position(|n| *n == id)
        .expect("known node");
    &mut nodes[i]
}

/// The names of the long runs' start markers.
fn marker_names(dir: &Path) -> std::collections::BTreeSet<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default()
}

/// The ledger: job → occurrence second → times run.
fn read_ledger(path: &Path) -> BTreeMap<String, BTreeMap<i64, usize>> {
    let mut out: BTreeMap<String, BTreeMap<i64, usize>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let Some((job, at)) = line.split_once(' ') else {
            panic!("bad ledger line `{line}`");
        };
        let t: jiff::Timestamp = at.trim().parse().expect("ledger timestamp");
        *out.entry(job.to_owned())
            .or_default()
            .entry(t.as_second())
            .or_default() += 1;
    }
    out
}

#[test]
fn cluster_survives_leader_kill_pause_worker_kill_and_database_restart() {
    let pg = Postgres::start();
    let url = pg.url();
    let node_args = |id: &'static str| -> Vec<&str> {
        vec![
            "--database-url",
            Box::leak(url.clone().into_boxed_str()),
            "--node-id",
            id,
            "--local-slots",
            "0",
            // The check compares every run in the store with the jobs' own ledger, and the
            // tick jobs run more than the 100 runs default retention keeps.
            "--keep-runs",
            "0",
        ]
    };
    let n1 = Server::start(&node_args("n1"));
    std::thread::sleep(Duration::from_millis(1500));
    let mut nodes = [
        n1,
        Server::start(&node_args("n2")),
        Server::start(&node_args("n3")),
    ];
    // Two `tempora worker` agents, each knowing all three nodes (default run leases: 30 s).
    let servers: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    // The every-second jobs run on w2 only (selector `tier: fast`), the long jobs on w1 only
    // (selector `role: long`): w1, the worker that is killed, holds only long runs and is killed
    // mid-sleep, whichever node each worker happens to be polling. (A worker killed right after
    // a job's last step, before its result reached a node, has that run retried: at-least-once
    // for worker crashes, see docs/cluster.md; the ledger would count a true second execution.)
    let w1_args = ["--slots", "32", "--labels", "role=long"];
    let mut w1 = Worker::start("w1", &servers, &w1_args);
    let w2 = Worker::start("w2", &servers, &["--slots", "32", "--labels", "tier=fast"]);
    // Workers replaced by a restart keep their logs until the end.
    let mut retired: Vec<Worker> = Vec::new();
    // On a panic anywhere below, print what the workers saw (every request and its outcome).
    let mut dump = common::DumpOnPanic::new(vec![
        ("w1 (first start)".into(), w1.log_path()),
        ("w2".into(), w2.log_path()),
    ]);
    let ledger = nodes[0].dir.path().join("ledger");
    // Each long run touches a marker named after its run when it starts: "mid-way" is read
    // from the job itself, not guessed from `started_at`.
    let markers = nodes[0].dir.path().join("markers");
    std::fs::create_dir_all(&markers).expect("markers dir");
    let api = |s: &Server, method: &str, path: &str, body: Value| {
        let (st, v) = s.send(method, path, &body.to_string());
        assert!(st < 300, "{method} {path}: {st} {v}");
    };
    let line = |l: &Path| {
        format!(
            "echo \"$TEMPORA_JOB $TEMPORA_SCHEDULED_FOR\" >> {}",
            l.display()
        )
    };
    for i in 0..20 {
        api(
            &nodes[i % 3],
            "PUT",
            &format!("/api/v1/jobs/tick-{i:02}"),
            json!({"command": line(&ledger), "schedule": "@every 1s", "misfire": "run_all",
                   "concurrency": "allow", "epsilon": "10m", "retries": 5, "retry_backoff": "1s",
                   "selector": {"tier": "fast"}}),
        );
    }
    for i in 0..3 {
        api(
            &nodes[i % 3],
            "PUT",
            &format!("/api/v1/jobs/long-{i}"),
            json!({"command": format!("touch {}/$TEMPORA_RUN_ID-$TEMPORA_ATTEMPT; sleep 3; {}",
                                      markers.display(), line(&ledger)),
                   "schedule": "@every 5s", "misfire": "run_all", "concurrency": "allow",
                   "epsilon": "10m", "retries": 5, "retry_backoff": "1s",
                   "selector": {"role": "long"}}),
        );
    }
    let (mut leader, mut epoch) = {
        let refs: Vec<&Server> = nodes.iter().collect();
        leader_of(&refs).expect("a leader")
    };
    println!("leader {leader} (epoch {epoch}); steady phase");
    let workers = nodes[1].wait_for(Duration::from_secs(10), "both workers registered", || {
        let (_, c) = nodes[1].get("/api/v1/cluster");
        let w = c["workers"].as_array()?.clone();
        let ids: Vec<&str> = w.iter().filter_map(|w| w["id"].as_str()).collect();
        (ids.contains(&"w1") && ids.contains(&"w2")).then_some(w)
    });
    assert!(
        workers
            .iter()
            .all(|w| w["slots"] == 32 || w["id"].as_str().is_some_and(|i| !i.starts_with('w')))
    );
    std::thread::sleep(seconds(20));
    let mut failovers: Vec<(String, Duration)> = Vec::new();

    // 1. kill -9 the leader.
    let t = Instant::now();
    by_id(&mut nodes, &leader).kill9();
    let dead = leader.clone();
    let (n, e, took) = {
        let refs: Vec<&Server> = nodes.iter().collect();
        failover(&refs, epoch, t)
    };
    println!("kill -9 {dead}: {n} leads (epoch {e}) after {took:?}");
    failovers.push((format!("leader {dead} killed"), took));
    (leader, epoch) = (n, e);
    by_id(&mut nodes, &dead).spawn();
    std::thread::sleep(seconds(15));

    // 2. SIGSTOP the leader past its lease, then SIGCONT: it must not fire (fenced).
    let paused = leader.clone();
    let pid = Pid::from_raw(by_id(&mut nodes, &paused).pid());
    let t = Instant::now();
    kill(pid, Signal::SIGSTOP).unwrap();
    let (n, e, took) = {
        let refs: Vec<&Server> = nodes.iter().filter(|s| s.pid() != pid.as_raw()).collect();
        failover(&refs, epoch, t)
    };
    println!("SIGSTOP {paused}: {n} leads (epoch {e}) after {took:?}");
    failovers.push((format!("leader {paused} paused"), took));
    epoch = e;
    std::thread::sleep(Duration::from_secs(3));
    kill(pid, Signal::SIGCONT).unwrap();
    std::thread::sleep(seconds(10));
    let (st, status) = by_id(&mut nodes, &paused).get("/api/v1/status");
    assert_eq!(
        (st, status["leader"].clone()),
        (200, json!(false)),
        "{paused} stepped down"
    );

    // 3. kill -9 a worker while it runs a long job; restart it later. Mid-run: half a second
    // after a long run's marker appears (only w1 runs long jobs), well before the job writes
    // the ledger 3 s in (a worker killed after the job's last step but before its report is a
    // true second execution when the run is retried; that is not what this step is about).
    let before: std::collections::BTreeSet<_> = marker_names(&markers);
    nodes[0].wait_for(Duration::from_secs(60), "w1 to start a long job", || {
        (marker_names(&markers).len() > before.len()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    w1.kill9();
    println!("worker w1 killed mid-run");
    std::thread::sleep(seconds(12));
    retired.push(std::mem::replace(
        &mut w1,
        Worker::start("w1", &servers, &w1_args),
    ));
    dump.add("w1 (restarted)", w1.log_path());

    // 4. Stop PostgreSQL for 10 s while runs are in flight.
    pg.down();
    println!("PostgreSQL stopped");
    std::thread::sleep(Duration::from_secs(10));
    let t = Instant::now();
    pg.up();
    let (n, e, took) = {
        let refs: Vec<&Server> = nodes.iter().collect();
        failover(&refs, epoch, t)
    };
    println!("PostgreSQL restarted: {n} leads (epoch {e}) {took:?} after the restart");
    failovers.push(("database restarted".into(), took));
    std::thread::sleep(seconds(20));

    // Stop firing; let everything finish.
    for i in 0..20 {
        api(
            &nodes[0],
            "POST",
            &format!("/api/v1/jobs/tick-{i:02}/pause"),
            json!({}),
        );
    }
    for i in 0..3 {
        api(
            &nodes[0],
            "POST",
            &format!("/api/v1/jobs/long-{i}/pause"),
            json!({}),
        );
    }
    let names: Vec<String> = (0..20)
        .map(|i| format!("tick-{i:02}"))
        .chain((0..3).map(|i| format!("long-{i}")))
        .collect();
    nodes[0].wait_for(Duration::from_secs(120), "all runs to end", || {
        names
            .iter()
            .all(|n| {
                nodes[0]
                    .runs(n)
                    .iter()
                    .all(|r| !matches!(r["state"].as_str(), Some("queued" | "running")))
            })
            .then_some(())
    });

    // The ledger: for every job, every occurrence from its first to its last, exactly once.
    let seen = read_ledger(&ledger);
    let mut problems = Vec::new();
    let mut total = 0;
    for name in &names {
        let step = if name.starts_with("long") { 5 } else { 1 };
        let Some(times) = seen.get(name) else {
            problems.push(format!("{name}: never ran"));
            continue;
        };
        total += times.len();
        for (t, n) in times {
            if *n > 1 {
                problems.push(format!("{name}: {t} ran {n} times"));
            }
        }
        let (lo, hi) = (*times.keys().next().unwrap(), *times.keys().last().unwrap());
        let mut t = lo;
        while t <= hi {
            if !times.contains_key(&t) {
                problems.push(format!("{name}: {t} missing"));
            }
            t += step;
        }
        // The store agrees: every scheduled occurrence succeeded once.
        let runs = nodes[0].runs(name);
        let ok = runs.iter().filter(|r| r["state"] == "succeeded").count();
        if ok != times.len() {
            problems.push(format!(
                "{name}: {ok} succeeded runs but {} ledger entries",
                times.len()
            ));
        }
    }
    println!(
        "ledger: {total} occurrences checked over {} jobs",
        names.len()
    );
    for (what, took) in &failovers {
        println!("failover ({what}): {took:?}");
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(total > 1000, "the window is long enough: {total}");
    drop((w1, retired));
}
