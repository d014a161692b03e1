//! Clock discipline: a cluster fires on the database's clock whatever each machine's own clock
//! says. Nodes and workers run under libfaketime (their wall clocks moved, their monotonic
//! clocks left alone, as a real clock step leaves them); the jobs themselves do not (a job
//! never sees the server's environment), so the ledger they write is on the true clock.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, Worker, faketime_env};
use serde_json::{Value, json};
use tempora_testkit::pg;

fn database() -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(pg::fresh_database())
}

/// A node of the cluster at `url`, its clock moved by `skew` (`None`: the true clock).
fn node(url: &str, id: &str, skew: Option<&str>, extra: &[&str]) -> Server {
    let mut args = vec!["--database-url", url, "--node-id", id];
    args.extend_from_slice(extra);
    let env = skew.map(faketime_env).unwrap_or_default();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_env(&args, &env)
}

fn cluster(s: &Server) -> Value {
    let (st, v) = s.get("/api/v1/cluster");
    assert_eq!(st, 200, "{v}");
    v
}

fn leader_of(v: &Value) -> Option<String> {
    v["leader"]["node"].as_str().map(str::to_owned)
}

/// The offset (ms) `GET /api/v1/cluster` shows for node `id`.
fn node_offset(v: &Value, id: &str) -> Option<f64> {
    v["nodes"].as_array()?.iter().find(|n| n["id"] == id)?["clock_offset_ms"].as_f64()
}

fn assert_near(what: &str, got: Option<f64>, want: f64, within: f64) {
    let got = got.unwrap_or_else(|| panic!("{what}: no offset shown"));
    assert!(
        (got - want).abs() <= within,
        "{what}: offset {got} ms, expected {want} ± {within} ms"
    );
}

/// A job firing every second that appends `scheduled_for true_start_ns run_id` to `ledger`.
fn ledger_job(s: &Server, ledger: &Path) {
    let cmd = format!(
        "echo \"$TEMPORA_SCHEDULED_FOR $(date +%s%N) $TEMPORA_RUN_ID\" >> {}",
        ledger.display()
    );
    let (st, v) = s.send(
        "PUT",
        "/api/v1/jobs/tick",
        &json!({"command": cmd, "schedule": "@every 1s", "misfire": "run_all",
                "concurrency": "allow", "epsilon": "5m"})
        .to_string(),
    );
    assert_eq!(st, 201, "{v}");
}

/// One ledger line: the occurrence, and how late (ns, true clock) the job started.
struct Entry {
    scheduled: jiff::Timestamp,
    late_ns: i128,
    run: i64,
}

fn read_ledger(ledger: &Path) -> Vec<Entry> {
    std::fs::read_to_string(ledger)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            let scheduled: jiff::Timestamp = f.next().unwrap().parse().unwrap();
            let started: i128 = f.next().unwrap().parse().unwrap();
            let run: i64 = f.next().unwrap().parse().unwrap();
            Entry {
                scheduled,
                late_ns: started - scheduled.as_nanosecond(),
                run,
            }
        })
        .collect()
}

/// Pause the job, wait for its runs to end, and check the ledger: every occurrence from the
/// first to the last ran exactly once, none before its time. Returns the entries.
fn settle_and_check(s: &Server, ledger: &Path) -> Vec<Entry> {
    assert_eq!(s.send("POST", "/api/v1/jobs/tick/pause", "").0, 200);
    s.wait_for(Duration::from_secs(30), "runs to finish", || {
        s.runs("tick")
            .iter()
            .all(|r| !matches!(r["state"].as_str(), Some("queued" | "running")))
            .then_some(())
    });
    let entries = read_ledger(ledger);
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for e in &entries {
        *seen.entry(e.scheduled.as_second()).or_default() += 1;
        assert!(
            e.late_ns >= 0,
            "occurrence {} started {} ms early",
            e.scheduled,
            -e.late_ns / 1_000_000
        );
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ran twice: {twice:?}");
    let (lo, hi) = (*seen.keys().next().unwrap(), *seen.keys().last().unwrap());
    let missing: Vec<i64> = (lo..=hi).filter(|t| !seen.contains_key(t)).collect();
    assert!(missing.is_empty(), "missing occurrences: {missing:?}");
    let runs = s.runs("tick");
    assert_eq!(runs.len(), entries.len(), "one run per ledger line");
    assert!(runs.iter().all(|r| r["state"] == "succeeded"));
    entries
}

/// The leader runs 20 s fast, a worker 7 s slow, another node 30 s slow: every occurrence
/// starts within 100 ms of its true time, the lags the API shows are the true ones, each
/// offset is reported; the node 30 s off never leads, not even when the leader dies.
#[test]
fn skewed_nodes_and_workers_run_on_the_database_clock() {
    let url = database();
    let limit = ["--local-slots", "0", "--max-clock-offset", "25s"];
    let a = node(&url, "fast", Some("+20s"), &limit);
    a.wait_for(Duration::from_secs(10), "the fast node to lead", || {
        (leader_of(&cluster(&a)).as_deref() == Some("fast")).then_some(())
    });
    let b = node(&url, "slow30", Some("-30s"), &limit);
    let c = node(&url, "true", None, &limit);
    let w_env = faketime_env("-7s");
    let w_env: Vec<(&str, &str)> = w_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let w = Worker::start_env("w-slow", &[a.url(), c.url()], &["--slots", "4"], &w_env);
    let mut dump = common::DumpOnPanic::new(vec![("w-slow".into(), w.log_path())]);
    for (name, s) in [("fast", &a), ("slow30", &b), ("true", &c)] {
        dump.add(name, s.dir.path().join("server.log"));
    }
    let ledger = c.scratch().join("ledger");
    ledger_job(&c, &ledger);
    c.wait_for(Duration::from_secs(20), "ten runs", || {
        (read_ledger(&ledger).len() >= 10).then_some(())
    });

    // Offsets: each node's to the database, the worker's to the servers.
    let v = cluster(&c);
    assert_eq!(leader_of(&v).as_deref(), Some("fast"), "{v}");
    assert_near("fast", node_offset(&v, "fast"), -20_000.0, 500.0);
    assert_near("slow30", node_offset(&v, "slow30"), 30_000.0, 500.0);
    assert_near("true", node_offset(&v, "true"), 0.0, 500.0);
    let (st, workers) = c.get("/api/v1/workers");
    assert_eq!(st, 200, "{workers}");
    let wv = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "w-slow")
        .cloned()
        .unwrap_or_else(|| panic!("no w-slow in {workers}"));
    assert_near("w-slow", wv["clock_offset_ms"].as_f64(), 7_000.0, 500.0);
    let (_, metrics) = a.get_text("/metrics?format=prometheus");
    let gauge: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tempora_clock_offset_seconds "))
        .unwrap_or_else(|| panic!("no clock offset gauge in\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!((gauge + 20.0).abs() < 0.5, "gauge {gauge}");
    assert!(
        std::fs::read_to_string(a.dir.path().join("server.log"))
            .unwrap()
            .contains("this node's clock is off the database's"),
        "the fast node warns (past half the limit)"
    );

    // On time by the true clock, and the API's lags are the true ones.
    let entries = read_ledger(&ledger);
    for e in &entries {
        let ms = e.late_ns as f64 / 1e6;
        assert!(
            (0.0..=100.0).contains(&ms),
            "{} started {ms} ms late",
            e.scheduled
        );
        let run = c.run(e.run);
        let started = common::ts(&run["started_at"]);
        let api_ms = started.duration_since(e.scheduled).as_secs_f64() * 1e3;
        assert!(
            (-1.0..=100.0).contains(&api_ms) && (api_ms - ms).abs() <= 50.0,
            "run {}: the API says {api_ms} ms late, the job {ms} ms",
            e.run
        );
    }
    let mean = entries.iter().map(|e| e.late_ns as f64 / 1e6).sum::<f64>() / entries.len() as f64;
    println!(
        "{} occurrences, mean start {mean:.1} ms after the true time",
        entries.len()
    );

    // The leader dies: the node with the true clock takes over; the one 30 s off never leads.
    let mut a = a;
    a.kill9();
    let t0 = Instant::now();
    let mut took = None;
    while t0.elapsed() < Duration::from_secs(20) {
        let v = cluster(&c);
        let l = leader_of(&v);
        assert_ne!(l.as_deref(), Some("slow30"), "the node 30 s off leads: {v}");
        if l.as_deref() == Some("true") && took.is_none() {
            took = Some(t0.elapsed());
        }
        if took.is_some_and(|t| t0.elapsed() > t + Duration::from_secs(3)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = took.expect("the true-clock node took over");
    println!("failover to the true-clock node: {took:?}");
    assert!(
        std::fs::read_to_string(b.dir.path().join("server.log"))
            .unwrap()
            .contains("not taking the leader lease"),
        "the node 30 s off says why it does not lead"
    );
    assert_eq!(b.get("/api/v1/status").1["leader"], false);
    settle_and_check(&c, &ledger);
}

/// A leader whose wall clock steps 30 s ahead mid-run steps down (the other node takes over)
/// without firing anything early, and no occurrence is lost or run twice.
#[test]
fn a_leader_whose_clock_jumps_steps_down() {
    let url = database();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("faketime");
    std::fs::write(&spec, "+0\n").unwrap();
    let a = node(
        &url,
        "jumpy",
        Some(&format!("file:{}", spec.display())),
        &["--local-slots", "0"],
    );
    a.wait_for(Duration::from_secs(10), "the node to lead", || {
        (leader_of(&cluster(&a)).as_deref() == Some("jumpy")).then_some(())
    });
    let b = node(&url, "steady", None, &["--local-slots", "0"]);
    let w = node(&url, "w", None, &["--no-leader", "--local-slots", "8"]);
    let mut dump = common::DumpOnPanic::new(vec![]);
    for (name, s) in [("jumpy", &a), ("steady", &b), ("w", &w)] {
        dump.add(name, s.dir.path().join("server.log"));
    }
    let ledger = w.scratch().join("ledger");
    ledger_job(&w, &ledger);
    w.wait_for(Duration::from_secs(20), "five runs", || {
        (read_ledger(&ledger).len() >= 5).then_some(())
    });
    let epoch = cluster(&w)["epoch"].as_u64().unwrap();

    // The wall clock steps 30 s ahead.
    std::fs::write(&spec, "+30s\n").unwrap();
    let t0 = Instant::now();
    let (n, e) = w.wait_for(Duration::from_secs(15), "a new leader", || {
        let v = cluster(&w);
        let e = v["epoch"].as_u64()?;
        (e > epoch).then(|| (leader_of(&v).unwrap_or_default(), e))
    });
    println!("the stepped leader handed over after {:?}", t0.elapsed());
    assert_eq!(n, "steady");
    assert_near(
        "jumpy",
        node_offset(&cluster(&w), "jumpy"),
        -30_000.0,
        1_000.0,
    );
    assert!(
        std::fs::read_to_string(a.dir.path().join("server.log"))
            .unwrap()
            .contains("stepping down: this node may not lead"),
        "the stepped node says why it stepped down"
    );
    w.wait_for(Duration::from_secs(10), "runs under the new leader", || {
        let v = cluster(&w);
        (v["epoch"].as_u64() == Some(e) && read_ledger(&ledger).len() >= 12).then_some(())
    });
    let entries = settle_and_check(&w, &ledger);
    let worst = entries.iter().map(|e| e.late_ns).max().unwrap_or(0) as f64 / 1e6;
    println!(
        "{} occurrences, latest start {worst:.0} ms after its time",
        entries.len()
    );
}
