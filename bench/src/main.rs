//! `tempora-bench`: starts the real `tempora server` (SQLite in a temporary directory, or a
//! cluster of nodes on `--database-url`), creates N jobs firing every second, lets them run,
//! then reads the run ledger back over the API and prints start lag percentiles
//! (`started_at − scheduled_for`), missed and duplicate occurrences, and the servers' own CPU
//! (without their children) and RSS. `--drain N` measures throughput instead (N queued manual
//! runs drained, runs/s); `--failover` kills the leader halfway and reports how long the cluster
//! went without one.
//!
//! Run it with `bench/run.sh` (builds the release binaries first); `bench/cluster.sh` starts a
//! throwaway PostgreSQL and runs it against 3 nodes and 2 `tempora worker` agents.

mod auth;
mod history;
mod scale;
mod spawn_limit;
mod ui_pages;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use jiff::Timestamp;
use serde_json::{Value, json};

/// Benchmark options.
#[derive(Debug, Parser)]
#[command(about = "Precision benchmark: N jobs firing every second on one tempora node")]
struct Opts {
    /// Number of jobs, each firing every second.
    #[arg(long, default_value_t = 200)]
    jobs: usize,
    /// How long the jobs run.
    #[arg(long, default_value = "60", value_parser = parse_secs)]
    duration: Duration,
    /// The tempora binary (default: next to this one).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The job's command.
    #[arg(long, default_value = "true")]
    command: String,
    /// Local worker slots of the server.
    #[arg(long, default_value_t = 256)]
    slots: usize,
    /// Print the result as one JSON object too.
    #[arg(long)]
    json: bool,
    /// Make every job fire at the same instant (Quartz `* * * * * ?`) instead of spreading the
    /// jobs' phases evenly over the second.
    #[arg(long)]
    burst: bool,
    /// Only measure the machine's spawn limit: start N `/bin/sh -c <command>` at once from 8
    /// threads, no server (`--burst` measures it too, for its ratios).
    #[arg(long)]
    spawn_limit: Option<usize>,
    /// Run a cluster on this PostgreSQL database instead of one SQLite node.
    #[arg(long)]
    database_url: Option<String>,
    /// Scheduler nodes (cluster only; they run no jobs when there are workers).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// `tempora worker` agents (cluster only) sharing `--slots`; the nodes then run nothing.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Throughput mode: queue this many manual runs of `--command` and time their drain.
    #[arg(long)]
    drain: Option<usize>,
    /// Make the jobs HTTP jobs (a GET to a local HTTP server this benchmark runs, answering
    /// `200 ok`) instead of starting `--command`.
    #[arg(long)]
    http_target: bool,
    /// Make the jobs container jobs running `--command` in this local image (`pull: never`;
    /// `scripts/test-image.sh` builds `tempora-test/busybox:1`).
    #[arg(long)]
    container_image: Option<String>,
    /// Kill -9 the leader halfway through and measure the failover (cluster only).
    #[arg(long)]
    failover: bool,
    /// Scale mode: this many stored cron jobs (seeded once per month under `target/`): cold
    /// start, RSS, idle CPU, GET latency at 500 req/s, creating 10,000 jobs over HTTP.
    #[arg(long)]
    scale: Option<usize>,
    #[command(flatten)]
    history: history::HistoryOpts,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let s = s.trim_end_matches('s');
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("seconds expected: {e}"))
}

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (utime + stime) in clock ticks of the process itself (children excluded), and RSS in KiB.
fn cpu_and_rss(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after "(comm)": state is index 0, utime is field 14 overall → index 11; stime → 12.
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((utime + stime, rss))
}

/// CPU ticks and RSS summed over live processes.
fn cpu_and_rss_all(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .filter_map(|p| cpu_and_rss(*p).ok())
        .fold((0, 0), |(c, r), (c1, r1)| (c + c1, r + r1))
}

fn topology(o: &Opts) -> String {
    match &o.database_url {
        None => "one node (SQLite)".to_owned(),
        Some(_) => format!(
            "a PostgreSQL cluster of {} node(s) and {} worker agent(s)",
            o.nodes, o.workers
        ),
    }
}

/// The leader's node id and epoch, as `base` sees it.
async fn leader(http: &reqwest::Client, base: &str) -> Option<(String, u64)> {
    let v: Value = http
        .get(format!("{base}/api/v1/cluster"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some((
        v["leader"]["node"].as_str()?.to_owned(),
        v["leader"]["epoch"].as_u64()?,
    ))
}

/// Kill -9 the leader; the time until another node leads.
async fn kill_leader(
    http: &reqwest::Client,
    base: &str,
    procs: &mut [(String, Proc, String)],
) -> anyhow::Result<Duration> {
    let (id, epoch) = leader(http, base).await.context("no leader to kill")?;
    let p = procs
        .iter_mut()
        .find(|p| p.0 == id)
        .context("the leader is not one of ours")?;
    if p.2 == base {
        bail!("the leader is the node the bench reads through");
    }
    let t = Instant::now();
    p.1.child.kill()?;
    let _ = p.1.child.wait();
    loop {
        if let Some((_, e)) = leader(http, base).await
            && e > epoch
        {
            return Ok(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("no new leader within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the unlabelled metric `name` on the server's `/metrics` (Prometheus text), or
/// None when the server does not report it or does not answer.
pub(crate) async fn metric_value(http: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .header("accept", "text/plain")
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// SQLite's memory in KiB from the server's `tempora_sqlite_memory_bytes` gauge (None on
/// PostgreSQL or when `/metrics` does not answer).
async fn sqlite_memory_kib(http: &reqwest::Client, base: &str) -> Option<u64> {
    metric_value(http, base, "tempora_sqlite_memory_bytes")
        .await
        .map(|b| (b / 1024.0) as u64)
}

/// Start node `id` (a `tempora server`) on `port` with `slots` local slots.
fn start_node(
    bin: &std::path::Path,
    dir: &std::path::Path,
    o: &Opts,
    id: &str,
    port: u16,
    slots: usize,
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{id}.log")))?;
    let mut cmd = Command::new(bin);
    cmd.arg("server")
        .args(crate::auth::server_args())
        .arg("--data-dir")
        .arg(dir.join(id))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--node-id", id]);
    if let Some(url) = &o.database_url {
        cmd.args(["--database-url", url]);
    }
    cmd.args(["--local-slots", &slots.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

/// Start a `tempora worker` agent talking to every node of `procs`.
fn start_worker(
    bin: &std::path::Path,
    dir: &std::path::Path,
    id: &str,
    slots: usize,
    procs: &[(String, Proc, String)],
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join(format!("{id}.log")))?;
    let mut cmd = Command::new(bin);
    cmd.args(["worker", "--worker-id", id, "--slots", &slots.to_string()])
        .args(crate::auth::worker_args());
    for (_, _, base) in procs.iter().filter(|p| !p.2.is_empty()) {
        cmd.args(["--server", base]);
    }
    cmd.env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

/// Wait until `base` answers `/ready`.
async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("{base} not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The URL of the local HTTP server the jobs call with `--http-target`.
static HTTP_TARGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Start the local HTTP server of `--http-target` (in this process, on its runtime).
async fn start_http_target() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let _ = HTTP_TARGET.set(url);
    Ok(())
}

/// What a run does, in words.
fn what_runs(o: &Opts) -> String {
    match (
        HTTP_TARGET.get().filter(|_| o.http_target),
        &o.container_image,
    ) {
        (Some(url), _) => format!("GET {url}"),
        (None, Some(image)) => format!("{} in a container of {image}", o.command),
        (None, None) => o.command.clone(),
    }
}

/// A benchmark job: `extra` plus either `--command` or, with `--http-target`, the request.
fn job_body(o: &Opts, extra: Value) -> Value {
    let mut v = extra;
    match (o.http_target, HTTP_TARGET.get()) {
        (true, Some(url)) => v["http"] = json!({"url": url}),
        _ => v["command"] = json!(o.command),
    }
    if let Some(image) = &o.container_image {
        v["container"] = json!({"image": image, "pull": "never"});
    }
    v
}

/// Throughput: queue `n` manual runs (8 concurrent clients) while nothing executes, then give
/// the cluster its slots (restart the single node with local slots, or start the workers) and
/// time the drain until every run ended.
async fn drain(
    http: &reqwest::Client,
    base: &str,
    o: &Opts,
    n: usize,
    bin: &std::path::Path,
    dir: &std::path::Path,
    procs: &mut Vec<(String, Proc, String)>,
) -> anyhow::Result<()> {
    let r = http
        .put(format!("{base}/api/v1/jobs/drain"))
        .json(&job_body(o, json!({"concurrency": "allow"})))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("creating the job: {} {}", r.status(), r.text().await?);
    }
    println!(
        "tempora-bench: {n} queued runs of `{}` drained by {}, {} slots",
        what_runs(o),
        topology(o),
        o.slots
    );
    // 1. Queue: 8 clients POST manual runs while nothing executes them.
    let t0 = Instant::now();
    let clients = 8;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base) = (http.clone(), base.to_owned());
        let count = n / clients + usize::from(c < n % clients);
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                let r = http
                    .post(format!("{base}/api/v1/jobs/drain/runs"))
                    .json(&json!({"force": true}))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("trigger: {} {}", r.status(), r.text().await?);
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let queued_in = t0.elapsed();
    println!(
        "queued {n} runs over HTTP ({clients} clients) in {:.2} s: {:.0} triggers/s",
        queued_in.as_secs_f64(),
        n as f64 / queued_in.as_secs_f64()
    );
    // 2. Drain: give the cluster its slots.
    let t0 = Instant::now();
    if o.workers == 0 {
        // Restart the nodes with local slots (the queue is in the store).
        for (id, proc, url) in procs.iter_mut() {
            proc.child.kill()?;
            proc.child.wait()?;
            let port: u16 = url.rsplit(':').next().unwrap_or("").parse()?;
            proc.child = start_node(bin, dir, o, id, port, o.slots.div_ceil(o.nodes))?;
        }
        for (_, _, url) in procs.iter() {
            wait_ready(http, url).await?;
        }
    } else {
        let worker_slots = o.slots.div_ceil(o.workers);
        for i in 0..o.workers {
            let id = format!("worker-{}", i + 1);
            let child = start_worker(bin, dir, &id, worker_slots, procs)?;
            procs.push((id, Proc { child }, String::new()));
        }
    }
    let pids: Vec<u32> = procs.iter().map(|p| p.1.child.id()).collect();
    let (cpu0, _) = cpu_and_rss_all(&pids);
    loop {
        let v: Value = http
            .get(format!("{base}/api/v1/jobs/drain"))
            .send()
            .await?
            .json()
            .await?;
        let done = v["status"]["success_count"].as_u64().unwrap_or(0)
            + v["status"]["error_count"].as_u64().unwrap_or(0);
        if done >= n as u64 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("only {done} of {n} runs ended after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed();
    let (cpu1, rss1) = cpu_and_rss_all(&pids);
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "drained all {n} in {:.2} s (from the slots appearing to the last run ended): {rate:.0} runs/s",
        took.as_secs_f64()
    );
    println!(
        "tempora CPU while draining (own, without the jobs; all processes): {:.0}% of one core; RSS end {} MiB",
        (cpu1 - cpu0) as f64 / 100.0 / took.as_secs_f64() * 100.0,
        rss1 / 1024
    );
    if o.json {
        println!(
            "{}",
            json!({"drain": n, "seconds": took.as_secs_f64(), "runs_per_second": rate,
                   "triggers_per_second": n as f64 / queued_in.as_secs_f64()})
        );
    }
    Ok(())
}

fn print_spawn_limit(m: &spawn_limit::SpawnLimit, json: bool) {
    println!(
        "spawn limit: bursts of {} processes from {} threads, the slowest in {:.1} ms ({:.0}/s); start offset ms p50 {:.2}  p99 {:.2}  max {:.2}",
        m.n,
        spawn_limit::THREADS,
        m.total.as_secs_f64() * 1000.0,
        m.n as f64 / m.total.as_secs_f64().max(1e-9),
        percentile(&m.lag_ms, 50.0),
        percentile(&m.lag_ms, 99.0),
        m.lag_ms.last().copied().unwrap_or(f64::NAN)
    );
    if json {
        println!("{}", spawn_limit_json(m));
    }
}

fn spawn_limit_json(m: &spawn_limit::SpawnLimit) -> Value {
    json!({"spawn_limit": {"n": m.n, "threads": spawn_limit::THREADS,
        "ms": m.total.as_secs_f64() * 1000.0,
        "lag_ms": {"p50": percentile(&m.lag_ms, 50.0), "p99": percentile(&m.lag_ms, 99.0),
                   "max": m.lag_ms.last()}}})
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let o = Opts::parse();
    if let Some(n) = o.spawn_limit {
        let m = spawn_limit::measure_bursts(n, &o.command, 5)?;
        print_spawn_limit(&m, o.json);
        return Ok(());
    }
    // The machine's own limit for this burst, measured before any server runs.
    let limit = if o.burst {
        let m = spawn_limit::measure_bursts(o.jobs, &o.command, 5)?;
        print_spawn_limit(&m, false);
        Some(m)
    } else {
        None
    };
    if o.http_target {
        start_http_target().await?;
    }
    let bin = match &o.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("tempora"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it first (bench/run.sh does)",
            bin.display()
        );
    }
    if let Some(n) = o.scale {
        return scale::run(&bin, n, o.json).await;
    }
    if o.history.runs.is_some() {
        return history::run(&bin, &o.history, o.json).await;
    }
    if o.database_url.is_none() && (o.nodes != 1 || o.workers != 0 || o.failover) {
        bail!("--nodes, --workers and --failover need --database-url");
    }
    if o.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let mut procs: Vec<(String, Proc, String)> = Vec::new();
    let worker_slots = if o.workers > 0 {
        o.slots.div_ceil(o.workers)
    } else {
        0
    };
    // In drain mode nothing runs while the runs are queued: nodes start without local slots
    // and workers only once the queue is full (see `drain`).
    let draining = o.drain.is_some();
    for i in 0..o.nodes {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let id = format!("node-{}", i + 1);
        let slots = if o.workers == 0 && !draining {
            o.slots.div_ceil(o.nodes)
        } else {
            0
        };
        let child = start_node(&bin, dir.path(), &o, &id, port, slots)?;
        procs.push((id, Proc { child }, crate::auth::base(port)));
    }
    if !draining {
        for i in 0..o.workers {
            let id = format!("worker-{}", i + 1);
            let child = start_worker(&bin, dir.path(), &id, worker_slots, &procs)?;
            procs.push((id, Proc { child }, String::new()));
        }
    }
    let http = crate::auth::client()?;
    let t0 = Instant::now();
    for (_, _, base) in procs.iter().filter(|p| !p.2.is_empty()) {
        loop {
            if let Ok(r) = http.get(format!("{base}/ready")).send().await
                && r.status().is_success()
            {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("{base} not ready after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The API is read through a node that stays up (with --failover, one that does not lead).
    let mut base = procs
        .iter()
        .filter(|p| !p.2.is_empty())
        .map(|p| p.2.clone())
        .next_back()
        .context("no server started")?;
    if o.failover
        && let Some((lead, _)) = leader(&http, &base).await
        && let Some(p) = procs.iter().find(|p| !p.2.is_empty() && p.0 != lead)
    {
        base = p.2.clone();
    }
    if let Some(n) = o.drain {
        return drain(&http, &base, &o, n, &bin, dir.path(), &mut procs).await;
    }
    println!(
        "tempora-bench: {} jobs firing every second ({}) running `{}` for {} s on {}, {} slots",
        o.jobs,
        if o.burst {
            "all at the same instant"
        } else {
            "phases spread over the second"
        },
        what_runs(&o),
        o.duration.as_secs(),
        topology(&o),
        o.slots
    );
    // `@every 1s` is anchored at each job's creation: creating the jobs evenly over one second
    // spreads their phases, as independent jobs' are. `--burst` makes them all fire at .000.
    let schedule = if o.burst { "* * * * * ?" } else { "@every 1s" };
    let step = Duration::from_secs(1) / o.jobs.max(1) as u32;
    for i in 0..o.jobs {
        let name = format!("bench-{i:05}");
        let t = Instant::now();
        let r = http
            .put(format!("{base}/api/v1/jobs/{name}"))
            .json(&job_body(
                &o,
                json!({"schedule": schedule, "concurrency": "allow"}),
            ))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("creating {name}: {} {}", r.status(), r.text().await?);
        }
        if !o.burst {
            tokio::time::sleep(step.saturating_sub(t.elapsed())).await;
        }
    }
    let created = Timestamp::now();
    let ticks = 100.0; // USER_HZ
    let pids: Vec<u32> = procs.iter().map(|p| p.1.child.id()).collect();
    let (cpu0, rss0) = cpu_and_rss_all(&pids);
    let w0 = Instant::now();
    let mut rss_max = rss0;
    let mut failover: Option<Duration> = None;
    // After a failover the window goes on at least 5 s, so the new leader's catch-up of the
    // occurrences due during the gap is inside it (pausing the jobs earlier would drop them).
    let mut end = o.duration;
    // RSS every 1/10 of the run (every minute or more on long runs), to show whether it is flat.
    let sample_every = (o.duration / 10).max(Duration::from_secs(1));
    let mut next_sample = sample_every;
    // (seconds, RSS KiB, SQLite's memory KiB as the server reports it, when it does)
    let mut timeline: Vec<(u64, u64, Option<u64>)> = Vec::new();
    while w0.elapsed() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_now = cpu_and_rss_all(&pids).1;
        rss_max = rss_max.max(rss_now);
        if w0.elapsed() >= next_sample {
            let sqlite = sqlite_memory_kib(&http, &base).await;
            timeline.push((w0.elapsed().as_secs(), rss_now, sqlite));
            next_sample += sample_every;
        }
        if o.failover && failover.is_none() && w0.elapsed() >= o.duration / 2 {
            failover = Some(kill_leader(&http, &base, &mut procs).await?);
            end = end.max(w0.elapsed() + Duration::from_secs(5));
        }
    }
    let (cpu1, rss1) = cpu_and_rss_all(&pids);
    let wall = w0.elapsed().as_secs_f64();
    let window_end = Timestamp::now();
    // Stop firing, let the last runs finish, then read the ledger.
    for i in 0..o.jobs {
        let name = format!("bench-{i:05}");
        http.post(format!("{base}/api/v1/jobs/{name}/pause"))
            .send()
            .await?;
    }
    // Wait for the runs to end (the ledger is read afterwards).
    let t_end = Instant::now();
    while t_end.elapsed() < Duration::from_secs(60) {
        let v: Value = http
            .get(format!("{base}/api/v1/status"))
            .send()
            .await?
            .json()
            .await?;
        if v["counts"]["queued"] == 0 && v["counts"]["running"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The window: whole seconds from 2 s after creation to 2 s before the end.
    let from = created.as_second() + 2;
    let to = window_end.as_second() - 2;
    let mut lags = Vec::new();
    let mut missed = 0u64;
    let mut duplicates = 0u64;
    let mut not_succeeded = 0u64;
    let mut states: std::collections::BTreeMap<String, u64> = Default::default();
    for i in 0..o.jobs {
        let name = format!("bench-{i:05}");
        // Every run of the job, page by page (a long run has more than one page).
        let mut runs: Vec<Value> = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let url = match before {
                Some(b) => format!("{base}/api/v1/jobs/{name}/runs?limit=1000&before={b}"),
                None => format!("{base}/api/v1/jobs/{name}/runs?limit=1000"),
            };
            let mut v: Value = http.get(url).send().await?.json().await?;
            if let Some(page) = v["runs"].as_array_mut() {
                runs.append(page);
            }
            match v["next_before"].as_i64() {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        let mut per_sec: HashMap<i64, u32> = HashMap::new();
        // Bucket occurrences by the second in which they fall.
        for r in &runs {
            if r["attempt"] != 1 {
                continue;
            }
            let sched: Timestamp = r["scheduled_for"].as_str().unwrap_or("").parse()?;
            let sec = sched.as_second();
            // A folded `skipped` row stands for `occurrences` of them, evenly spaced up to
            // `last_scheduled_for`.
            let n = r["occurrences"].as_i64().unwrap_or(1).max(1);
            let last = match r["last_scheduled_for"].as_str() {
                Some(l) => l.parse::<Timestamp>()?.as_second(),
                None => sec,
            };
            let step = if n > 1 { (last - sec) / (n - 1) } else { 0 };
            let secs: Vec<i64> = (0..n)
                .map(|k| sec + k * step)
                .filter(|s| (from..=to).contains(s))
                .collect();
            if secs.is_empty() {
                continue;
            }
            for s in &secs {
                *per_sec.entry(*s).or_default() += 1;
            }
            if r["state"] != "succeeded" {
                not_succeeded += secs.len() as u64;
                let n = states
                    .entry(r["state"].as_str().unwrap_or("?").to_owned())
                    .or_default();
                if *n == 0 {
                    println!("e.g. a {} run: {}", r["state"], r["error"]);
                }
                *n += 1;
            }
            if let Some(st) = r["started_at"].as_str() {
                let st: Timestamp = st.parse()?;
                lags.push(st.duration_since(sched).as_secs_f64() * 1000.0);
            }
        }
        for sec in from..=to {
            match per_sec.get(&sec).copied().unwrap_or(0) {
                0 => missed += 1,
                1 => {}
                n => duplicates += u64::from(n - 1),
            }
        }
    }
    lags.sort_by(|a, b| a.total_cmp(b));
    let cpu_pct = (cpu1 - cpu0) as f64 / ticks / wall * 100.0;
    let expected = (to - from + 1).max(0) as u64 * o.jobs as u64;
    println!(
        "occurrences in window: {expected} expected, {} started",
        lags.len()
    );
    println!(
        "start lag ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&lags, 50.0),
        percentile(&lags, 90.0),
        percentile(&lags, 99.0),
        lags.last().copied().unwrap_or(f64::NAN)
    );
    let ratios = limit.as_ref().map(|m| {
        let r = |p: f64| percentile(&lags, p) / percentile(&m.lag_ms, p);
        (r(50.0), r(99.0))
    });
    if let Some((r50, r99)) = ratios {
        println!(
            "start lag / the machine's spawn limit for {} processes: p50 {r50:.2}x  p99 {r99:.2}x",
            o.jobs
        );
    }
    println!(
        "missed: {missed}  duplicates: {duplicates}  not succeeded: {not_succeeded} {states:?}"
    );
    if let Some(f) = failover {
        println!(
            "failover after kill -9 of the leader: {:.2} s without a leader",
            f.as_secs_f64()
        );
    }
    println!(
        "server CPU (own, without children; all processes): {cpu_pct:.1}% of one core; RSS start {} MiB, end {} MiB, max {} MiB",
        rss0 / 1024,
        rss1 / 1024,
        rss_max / 1024
    );
    let line: Vec<String> = timeline
        .iter()
        .map(|(t, r, q)| match q {
            Some(q) => format!(
                "{t} s: {:.1} MiB (SQLite {:.1} MiB)",
                *r as f64 / 1024.0,
                *q as f64 / 1024.0
            ),
            None => format!("{t} s: {:.1} MiB", *r as f64 / 1024.0),
        })
        .collect();
    println!("RSS over time: {}", line.join(", "));
    if o.json {
        println!(
            "{}",
            json!({
                "jobs": o.jobs, "seconds": o.duration.as_secs(), "expected": expected,
                "lag_ms": {"p50": percentile(&lags, 50.0), "p90": percentile(&lags, 90.0),
                           "p99": percentile(&lags, 99.0), "max": lags.last()},
                "missed": missed, "duplicates": duplicates, "not_succeeded": not_succeeded,
                "cpu_percent": cpu_pct, "rss_kib": {"start": rss0, "end": rss1, "max": rss_max},
                "rss_timeline": timeline.iter().map(|(t, r, q)| json!({"seconds": t, "kib": r, "sqlite_kib": q})).collect::<Vec<_>>(),
                "failover_seconds": failover.map(|f| f.as_secs_f64()),
                "spawn_limit": limit.as_ref().map(|m| spawn_limit_json(m)["spawn_limit"].clone()),
                "ratio_to_spawn_limit": ratios.map(|(p50, p99)| json!({"p50": p50, "p99": p99})),
            })
        );
    }
    // With --failover, occurrences due while no node led are collapsed by the jobs' misfire
    // policy (`run_once`): "missed" seconds are expected then; duplicates never are.
    // An error (not `process::exit`), so the servers are stopped on the way out.
    if duplicates > 0 || (missed > 0 && failover.is_none()) {
        bail!("{missed} occurrences missed, {duplicates} ran twice");
    }
    Ok(())
}
