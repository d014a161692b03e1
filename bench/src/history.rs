//! `tempora-bench --history N`: the run history at scale, on one SQLite node.
//!
//! 1. **Seed** a data directory with N finished runs spread over `--history-jobs` jobs (their
//!    scheduled occurrences spread over the last `--history-span-days` days, 3% failed, each
//!    with a short output chunk). The store is opened once through `tempora-store-sqlite` (so the
//!    migrations run) and the jobs are created through it; the run and output rows are then
//!    written **directly into the schema** with `rusqlite` (prepared statements, 100,000 runs per
//!    transaction) — this is a benchmark fixture, not a supported way to write a store. Job
//!    counters are set to match. The seeded database is cached in `--history-cache`
//!    (default `<target>/bench-history/`) and copied for each bench run, since seeding 10M
//!    rows takes minutes.
//! 2. **Read**: start the real `tempora server` on the copy and time
//!    `GET /api/v1/jobs/{name}/runs?limit=50` at random jobs (one client, sequential) and
//!    `GET /api/v1/status` (counts runs by state).
//! 3. **Retention under load**: `--history-lag-jobs` jobs `@every 1s` (command `true`). First a
//!    control window without retention; then the server restarts with `--keep-runs K` and the
//!    same window length is measured while retention deletes the backlog. Reported for each
//!    window: fire lag (`queued_at − scheduled_for`) and start lag (`started_at −
//!    scheduled_for`) percentiles; for the retention window, rows deleted per second (from
//!    `tempora_runs_pruned_total`).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::Timestamp;
use serde_json::{Value, json};

/// Options of the history mode (flattened into the bench's options).
#[derive(Debug, clap::Args)]
pub struct HistoryOpts {
    /// History mode: seed this many runs into SQLite, time the run list and status API at that
    /// size, then measure scheduling lag while retention deletes the backlog.
    #[arg(long = "history", value_name = "RUNS")]
    pub runs: Option<u64>,
    /// Jobs the seeded runs are spread over.
    #[arg(long = "history-jobs", default_value_t = 1000)]
    pub seed_jobs: usize,
    /// The seeded occurrences cover this many days up to now.
    #[arg(long = "history-span-days", default_value_t = 30)]
    pub span_days: u32,
    /// Timed requests of the run list (and a quarter as many of status).
    #[arg(long = "history-requests", default_value_t = 1000)]
    pub requests: usize,
    /// `--keep-runs` of the retention phase.
    #[arg(long = "history-keep-runs", default_value_t = 100)]
    pub keep_runs: u32,
    /// `--retention-batch` of the retention phase (default: the server's).
    #[arg(long = "history-retention-batch")]
    pub retention_batch: Option<u32>,
    /// Jobs `@every 1s` whose lag is measured in the retention phase (0: skip the phase).
    #[arg(long = "history-lag-jobs", default_value_t = 100)]
    pub lag_jobs: usize,
    /// Length of each lag window (control, then with retention), in seconds.
    #[arg(long = "history-window", default_value = "60", value_parser = crate::parse_secs)]
    pub window: Duration,
    /// After the retention window, wait until the backlog is deleted (report the total time).
    #[arg(long = "history-drain")]
    pub drain_backlog: bool,
    /// Where seeded databases are cached (default: `bench-history` next to the target's
    /// profile directory).
    #[arg(long = "history-cache")]
    pub cache: Option<PathBuf>,
    /// Seed again even if a cached database exists.
    #[arg(long = "history-reseed")]
    pub reseed: bool,
}

/// Runs per seeding transaction.
const SEED_TX: u64 = 100_000;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `tempora server` on a data directory.
struct Server {
    proc: Proc,
    base: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// p50/p90/p99/max of `v` (sorted in place) as JSON and as a line.
fn summary(v: &mut [f64]) -> (Value, String) {
    v.sort_by(|a, b| a.total_cmp(b));
    let (p50, p90, p99) = (
        percentile(v, 50.0),
        percentile(v, 90.0),
        percentile(v, 99.0),
    );
    let max = v.last().copied().unwrap_or(f64::NAN);
    (
        json!({"n": v.len(), "p50": p50, "p90": p90, "p99": p99, "max": max}),
        format!(
            "p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}  (n = {})",
            v.len()
        ),
    )
}

/// xorshift64*: enough randomness to pick jobs (and to seed varied jobs, deterministically).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn job_name(i: usize) -> String {
    format!("hist-{i:05}")
}

/// Bytes of the files in `dir` (a database and its WAL).
pub(crate) fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Seed `dir` with `n` runs over `jobs` jobs. Returns the seconds it took.
async fn seed(dir: &Path, n: u64, jobs: usize, span_days: u32) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let now = Timestamp::now();
    let span_us = i64::from(span_days) * 86_400 * 1_000_000;
    let start_us = now.as_microsecond() - span_us;
    // The store creates the schema (migrations) and the jobs.
    {
        use tempora_store::Store;
        let store = tempora_store_sqlite::SqliteStore::open(dir, Default::default())
            .context("open the store to seed")?;
        let created = Timestamp::from_microsecond(start_us)?;
        for i in 0..jobs {
            let spec: tempora_core::job::JobSpec = serde_json::from_value(json!({
                "name": job_name(i), "command": "echo seeded", "concurrency": "allow",
            }))?;
            store
                .put_job(spec, tempora_store::PutMode::Create, created)
                .await?;
        }
    }
    let db = dir.join("tempora.db");
    let dbs = db.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut c = rusqlite::Connection::open(&dbs)?;
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA cache_size = -1048576; \
             PRAGMA temp_store = MEMORY;",
        )?;
        // Runs are written round-robin over the jobs (run i is round i / jobs of job
        // i % jobs), so ids interleave as in a real history; a job's occurrence k is at
        // start + k * step, phases spread over the step.
        let rounds = n.div_ceil(jobs as u64);
        let step_us = span_us / rounds.max(1) as i64;
        let mut counts = vec![(0i64, 0i64, 0i64, 0i64); jobs];
        let progress = Instant::now();
        let mut written = 0u64;
        while written < n {
            let tx = c.transaction()?;
            {
                let mut run = tx.prepare_cached(
                    "INSERT INTO runs (job, trigger, origin, scheduled_for, attempt, state, hold, \
                     queued_at, not_before, started_at, finished_at, exit_code, worker, error, \
                     log_size) VALUES (?1, 'schedule', 'schedule', ?2, 1, ?3, 0, ?2, ?2, ?4, ?5, \
                     ?6, 'bench/local', ?7, ?8)",
                )?;
                let mut log = tx.prepare_cached(
                    "INSERT INTO run_logs (run_id, offset, data) VALUES (?1, 0, ?2)",
                )?;
                let end = (written + SEED_TX).min(n);
                for i in written..end {
                    let job = (i % jobs as u64) as usize;
                    let round = i / jobs as u64;
                    let name = job_name(job);
                    let sf =
                        start_us + round as i64 * step_us + (job as i64 * step_us) / jobs as i64;
                    let failed = (round * 31 + job as u64) % 100 < 3;
                    let (state, exit, error) = if failed {
                        ("failed", 1, Some("exit status 1"))
                    } else {
                        ("succeeded", 0, None)
                    };
                    let out = format!("seeded run {round} of {name}\n");
                    run.execute(rusqlite::params![
                        name,
                        sf,
                        state,
                        sf + 5_000,
                        sf + 1_000_000,
                        exit,
                        error,
                        out.len() as i64
                    ])?;
                    let id = tx.last_insert_rowid();
                    log.execute(rusqlite::params![id, out.as_bytes()])?;
                    let cnt = &mut counts[job];
                    if failed {
                        cnt.1 += 1;
                        cnt.3 = sf + 1_000_000;
                    } else {
                        cnt.0 += 1;
                        cnt.2 = sf + 1_000_000;
                    }
                }
                written = end;
            }
            tx.commit()?;
            let rate = written as f64 / progress.elapsed().as_secs_f64().max(1e-3);
            eprint!("\rseeding: {written} of {n} runs ({rate:.0} runs/s)            ");
        }
        eprintln!();
        // The counters a real history would have produced.
        let tx = c.transaction()?;
        {
            let mut up = tx.prepare(
                "UPDATE jobs SET success_count = ?2, error_count = ?3, \
                 last_success_at = NULLIF(?4, 0), last_error_at = NULLIF(?5, 0) WHERE name = ?1",
            )?;
            for (i, (ok, err, last_ok, last_err)) in counts.iter().enumerate() {
                up.execute(rusqlite::params![job_name(i), ok, err, last_ok, last_err])?;
            }
        }
        tx.commit()?;
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    })
    .await??;
    Ok(t0.elapsed().as_secs_f64())
}

/// The seeded database for (n, jobs, span), from the cache or seeded now. Returns its directory
/// and the seeding record.
async fn seeded(o: &HistoryOpts, n: u64, cache: &Path) -> anyhow::Result<(PathBuf, Value)> {
    let dir = cache.join(format!(
        "runs-{n}-jobs-{}-days-{}",
        o.seed_jobs, o.span_days
    ));
    let marker = dir.join("seeded.json");
    if !o.reseed
        && let Ok(text) = std::fs::read_to_string(&marker)
        && let Ok(v) = serde_json::from_str::<Value>(&text)
    {
        println!(
            "seeded database cached in {} (seeded in {:.1} s, {:.0} MiB); --history-reseed seeds again",
            dir.display(),
            v["seed_seconds"].as_f64().unwrap_or(f64::NAN),
            v["db_mib"].as_f64().unwrap_or(f64::NAN)
        );
        return Ok((dir, v));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    println!(
        "seeding {n} runs over {} jobs ({} days) into {} …",
        o.seed_jobs,
        o.span_days,
        dir.display()
    );
    let secs = seed(&dir, n, o.seed_jobs, o.span_days).await?;
    let size = dir_size(&dir);
    let v = json!({
        "runs": n, "jobs": o.seed_jobs, "span_days": o.span_days, "seed_seconds": secs,
        "db_mib": mib(size), "seeded_at": Timestamp::now(),
    });
    std::fs::write(&marker, v.to_string())?;
    println!(
        "seeded {n} runs in {secs:.1} s ({:.0} runs/s); database {:.0} MiB ({:.0} bytes per run with its output row and indexes)",
        n as f64 / secs,
        mib(size),
        size as f64 / n.max(1) as f64
    );
    Ok((dir, v))
}

/// Start `tempora server` on `data` with `extra` flags and wait until it is ready.
async fn start(
    bin: &Path,
    data: &Path,
    log: &Path,
    extra: &[String],
    http: &reqwest::Client,
) -> anyhow::Result<(Server, Duration)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let child = Command::new(bin)
        .arg("server")
        .args(crate::auth::server_args())
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--node-id", "bench"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let server = Server {
        proc: Proc(child),
        base: crate::auth::base(port),
    };
    let t0 = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{}/ready", server.base)).send().await
            && r.status().is_success()
        {
            return Ok((server, t0.elapsed()));
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("{} not ready after 300 s", server.base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stop a server with SIGTERM (clean shutdown), SIGKILL after 30 s.
async fn stop(mut s: Server) -> anyhow::Result<()> {
    let pid = s.proc.0.id();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if s.proc.0.try_wait()?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Time `n` GETs of `path(i)`, sequentially, in milliseconds.
async fn time_gets(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    mut path: impl FnMut() -> String,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let p = path();
        let t = Instant::now();
        let r = http.get(format!("{base}{p}")).send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            bail!("GET {p}: {status} {}", String::from_utf8_lossy(&body));
        }
        let v: Value = serde_json::from_slice(&body)?;
        if !check(&v) {
            bail!("GET {p}: unexpected answer {v}");
        }
        out.push(ms);
    }
    Ok(out)
}

/// The value of a counter in a Prometheus text page (0 when absent).
async fn counter(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("{base}/metrics?format=prometheus"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

/// Lag samples of the lag jobs' runs scheduled in `[from, to]` (whole seconds), collected into
/// `seen` (by run id) from each job's newest 100 runs.
async fn collect_lags(
    http: &reqwest::Client,
    base: &str,
    jobs: usize,
    seen: &mut HashMap<i64, Sample>,
    from: i64,
    to: i64,
) -> anyhow::Result<()> {
    for i in 0..jobs {
        let v: Value = http
            .get(format!("{base}/api/v1/jobs/lag-{i:04}/runs?limit=100"))
            .send()
            .await?
            .json()
            .await?;
        for r in v["runs"].as_array().into_iter().flatten() {
            let (Some(id), Some(sf), Some(q)) = (
                r["id"].as_i64(),
                r["scheduled_for"].as_str(),
                r["queued_at"].as_str(),
            ) else {
                continue;
            };
            if r["trigger"] != "schedule" {
                continue;
            }
            let sf: Timestamp = sf.parse()?;
            if sf.as_second() < from || sf.as_second() > to {
                continue;
            }
            let q: Timestamp = q.parse()?;
            let fire = q.duration_since(sf).as_secs_f64() * 1000.0;
            let start = match r["started_at"].as_str() {
                Some(st) => {
                    Some(st.parse::<Timestamp>()?.duration_since(sf).as_secs_f64() * 1000.0)
                }
                None => None,
            };
            if start.is_some() || !seen.contains_key(&id) {
                seen.insert(
                    id,
                    Sample {
                        at: sf,
                        fire,
                        start,
                    },
                );
            }
        }
    }
    Ok(())
}

/// One occurrence of a lag job.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When it was due.
    at: Timestamp,
    /// `queued_at − scheduled_for`, ms.
    fire: f64,
    /// `started_at − scheduled_for`, ms (None: not started when read).
    start: Option<f64>,
}

/// Measure the lag jobs for `window`, reading their runs every 20 s. Returns the occurrences
/// due in the window (from 2 s after its start to 2 s before its end) and how many were
/// expected.
async fn lag_window(
    http: &reqwest::Client,
    base: &str,
    jobs: usize,
    window: Duration,
) -> anyhow::Result<(Vec<Sample>, u64)> {
    let start = Timestamp::now();
    let t0 = Instant::now();
    let mut seen = HashMap::new();
    let from = start.as_second() + 2;
    while t0.elapsed() < window {
        let left = window.saturating_sub(t0.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(20))).await;
        let to = Timestamp::now().as_second() - 2;
        collect_lags(http, base, jobs, &mut seen, from, to).await?;
    }
    let to = Timestamp::now().as_second() - 2;
    // Let the last runs start, then read once more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    collect_lags(http, base, jobs, &mut seen, from, to).await?;
    let expected = (to - from + 1).max(0) as u64 * jobs as u64;
    Ok((seen.into_values().collect(), expected))
}

/// Fire and start lag summaries of `samples`.
fn lags(samples: &[Sample]) -> ((Value, String), (Value, String)) {
    let mut fire: Vec<f64> = samples.iter().map(|s| s.fire).collect();
    let mut start: Vec<f64> = samples.iter().filter_map(|s| s.start).collect();
    (summary(&mut fire), summary(&mut start))
}

/// Sample a counter every 500 ms until `stop` is set.
async fn sample_counter(
    http: reqwest::Client,
    base: String,
    name: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<(Timestamp, f64)> {
    let mut out = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Ok(v) = counter(&http, &base, name).await {
            out.push((Timestamp::now(), v));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out
}

/// The server log's `retention pass` lines.
fn retention_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("retention pass"))
        .map(str::to_owned)
        .collect()
}

/// Run the history benchmark with the `tempora` binary `bin`.
pub async fn run(bin: &Path, o: &HistoryOpts, print_json: bool) -> anyhow::Result<()> {
    let Some(n) = o.runs else {
        bail!("--history RUNS is required");
    };
    if o.seed_jobs == 0 || n < o.seed_jobs as u64 {
        bail!(
            "--history needs at least one run per job (--history-jobs {})",
            o.seed_jobs
        );
    }
    let cache = match &o.cache {
        Some(c) => c.clone(),
        None => bin
            .parent()
            .and_then(Path::parent)
            .context("no directory above the binary")?
            .join("bench-history"),
    };
    println!(
        "tempora-bench --history: {n} runs over {} jobs, one node (SQLite)",
        o.seed_jobs
    );
    let (seed_dir, seed_info) = seeded(o, n, &cache).await?;

    // Work on a copy next to the cache (same file system), so the cached one stays intact.
    let work = tempfile::tempdir_in(&cache)?;
    let data = work.path().join("data");
    std::fs::create_dir_all(&data)?;
    let t = Instant::now();
    std::fs::copy(seed_dir.join("tempora.db"), data.join("tempora.db"))?;
    println!(
        "copied the seeded database in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let db_mib = mib(dir_size(&data));
    let log = work.path().join("server.log");
    let http = crate::auth::client()?;

    // ---- read latency at size ----
    // Retention off while the seeded history is measured (it is on by default, and a seed
    // cached for up to a month holds runs older than its 30 days).
    let (server, ready) = start(
        bin,
        &data,
        &log,
        &[
            "--local-slots".into(),
            "0".into(),
            "--keep-runs".into(),
            "0".into(),
            "--keep-days".into(),
            "0".into(),
        ],
        &http,
    )
    .await?;
    println!(
        "server ready after {:.2} s on {db_mib:.0} MiB of history",
        ready.as_secs_f64()
    );
    let base = server.base.clone();
    let mut rng = Rng(Timestamp::now().as_nanosecond() as u64 | 1);
    let jobs = o.seed_jobs;
    let list_path = |rng: &mut Rng| {
        format!(
            "/api/v1/jobs/{}/runs?limit=50",
            job_name((rng.next() % jobs as u64) as usize)
        )
    };
    let mut first = time_gets(&http, &base, 1, || list_path(&mut rng), |_| true).await?;
    // Warm-up (connections, statement caches), not counted.
    time_gets(&http, &base, 50, || list_path(&mut rng), |_| true).await?;
    let want = (n / jobs as u64).min(50) as usize;
    let full = |v: &Value| v["runs"].as_array().is_some_and(|a| a.len() == want);
    let mut list = time_gets(&http, &base, o.requests, || list_path(&mut rng), full).await?;
    let (list_json, list_line) = summary(&mut list);
    let mut status = time_gets(
        &http,
        &base,
        (o.requests / 4).max(100),
        || "/api/v1/status".to_owned(),
        |v| v["counts"]["jobs"].as_u64() == Some(jobs as u64),
    )
    .await?;
    let (status_json, status_line) = summary(&mut status);
    // Deep pages: `before` near the oldest runs of a job.
    let mut deep = time_gets(
        &http,
        &base,
        (o.requests / 4).max(100),
        || {
            format!(
                "/api/v1/jobs/{}/runs?limit=50&before={}",
                job_name((rng.next() % jobs as u64) as usize),
                n / 10 + 1
            )
        },
        |v| v["runs"].is_array(),
    )
    .await?;
    let (deep_json, deep_line) = summary(&mut deep);
    println!(
        "GET /api/v1/jobs/{{name}}/runs?limit=50 ms: {list_line}; first (cold) request {:.2}",
        first[0]
    );
    println!("GET /api/v1/jobs/{{name}}/runs?limit=50&before=<old id> ms: {deep_line}");
    println!("GET /api/v1/status ms: {status_line}");
    first.clear();

    // ---- retention under load ----
    let mut lag_json = Value::Null;
    if o.lag_jobs > 0 {
        // Lag jobs `@every 1s`, phases spread over the second by creating them over a second.
        let step = Duration::from_secs(1) / o.lag_jobs as u32;
        for i in 0..o.lag_jobs {
            let t = Instant::now();
            let r = http
                .put(format!("{base}/api/v1/jobs/lag-{i:04}"))
                .json(&json!({"command": "true", "schedule": "@every 1s", "concurrency": "allow"}))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("creating lag-{i:04}: {} {}", r.status(), r.text().await?);
            }
            tokio::time::sleep(step.saturating_sub(t.elapsed())).await;
        }
        stop(server).await?;
        // The seeded runs are old: keep them all in the control window, and in the retention
        // window let `--keep-runs` alone decide.
        let slots = [
            "--local-slots".to_owned(),
            "256".to_owned(),
            "--keep-days".to_owned(),
            "0".to_owned(),
        ];
        println!(
            "control: {} jobs @every 1s for {} s, no retention",
            o.lag_jobs,
            o.window.as_secs()
        );
        let mut control_flags = slots.to_vec();
        control_flags.extend(["--keep-runs".to_owned(), "0".to_owned()]);
        let (s1, _) = start(bin, &data, &log, &control_flags, &http).await?;
        let (control, exp0) = lag_window(&http, &s1.base, o.lag_jobs, o.window).await?;
        stop(s1).await?;
        let ((f0j, f0l), (s0j, s0l)) = lags(&control);
        println!("  fire lag ms (queued_at − scheduled_for): {f0l}");
        println!("  start lag ms (started_at − scheduled_for): {s0l}; {exp0} occurrences expected");

        let mut flags = slots.to_vec();
        flags.extend(["--keep-runs".to_owned(), o.keep_runs.to_string()]);
        if let Some(b) = o.retention_batch {
            flags.extend(["--retention-batch".to_owned(), b.to_string()]);
        }
        let backlog = n.saturating_sub(o.keep_runs as u64 * jobs as u64);
        println!(
            "retention: restart with --keep-runs {} ({backlog} seeded runs to delete), same jobs for {} s",
            o.keep_runs,
            o.window.as_secs()
        );
        let (s2, _) = start(bin, &data, &log, &flags, &http).await?;
        let stop_sampler = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = tokio::spawn(sample_counter(
            http.clone(),
            s2.base.clone(),
            "tempora_runs_pruned_total",
            stop_sampler.clone(),
        ));
        let (during, exp1) = lag_window(&http, &s2.base, o.lag_jobs, o.window).await?;
        if o.drain_backlog {
            // Until the counter has not moved for 5 s.
            let mut last = (Instant::now(), -1.0);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let p = counter(&http, &s2.base, "tempora_runs_pruned_total").await?;
                if p > last.1 {
                    last = (Instant::now(), p);
                } else if last.0.elapsed() > Duration::from_secs(5) {
                    break;
                }
            }
        }
        stop_sampler.store(true, std::sync::atomic::Ordering::Relaxed);
        let samples = sampler.await?;
        // The deletion period: from the last sample before the counter first moved to the
        // first sample after it last moved.
        let total = samples.last().map_or(0.0, |s| s.1);
        let first = samples.iter().position(|s| s.1 > 0.0);
        let last = samples.iter().position(|s| s.1 >= total);
        let (del_from, del_to) = match (first, last) {
            (Some(f), Some(l)) if total > 0.0 => (samples[f.saturating_sub(1)].0, samples[l].0),
            _ => (Timestamp::now(), Timestamp::now()),
        };
        let del_secs = del_to.duration_since(del_from).as_secs_f64();
        let rate = if del_secs > 0.0 {
            total / del_secs
        } else {
            0.0
        };
        let finished = total >= backlog as f64;
        let in_del: Vec<Sample> = during
            .iter()
            .filter(|s| s.at >= del_from && s.at <= del_to)
            .copied()
            .collect();
        let ((f1j, f1l), (s1j, s1l)) = lags(&during);
        let ((fdj, fdl), (sdj, sdl)) = lags(&in_del);
        println!("  whole window: fire lag ms: {f1l}");
        println!("                start lag ms: {s1l}; {exp1} occurrences expected");
        println!(
            "  deleting: {total:.0} runs (with their output rows) in {del_secs:.1} s = {rate:.0} runs/s{}",
            if finished {
                ", backlog gone"
            } else {
                " (still going at the end)"
            }
        );
        println!("  occurrences due while deleting: fire lag ms: {fdl}");
        println!("                                  start lag ms: {sdl}");
        if !finished && rate > 0.0 {
            println!(
                "  at that rate the whole backlog takes about {:.0} s",
                backlog as f64 / rate
            );
        }
        for l in retention_lines(&log) {
            println!("  server: {}", l.trim());
        }
        let size_after = mib(dir_size(&data));
        println!(
            "  database file {size_after:.0} MiB (SQLite reuses freed pages; the file does not shrink)"
        );
        stop(s2).await?;
        lag_json = json!({
            "jobs": o.lag_jobs, "window_seconds": o.window.as_secs(), "keep_runs": o.keep_runs,
            "control": {"fire_lag_ms": f0j, "start_lag_ms": s0j, "expected": exp0},
            "retention": {"fire_lag_ms": f1j, "start_lag_ms": s1j, "expected": exp1,
                          "deleted": total, "deleting_seconds": del_secs,
                          "deleted_per_second": rate, "backlog_gone": finished,
                          "while_deleting": {"fire_lag_ms": fdj, "start_lag_ms": sdj}},
        });
    } else {
        stop(server).await?;
    }
    if print_json {
        println!(
            "{}",
            json!({
                "history_runs": n, "jobs": jobs, "seed": seed_info, "db_mib": db_mib,
                "list_ms": list_json, "list_deep_ms": deep_json, "status_ms": status_json,
                "lag": lag_json,
            })
        );
    }
    Ok(())
}
