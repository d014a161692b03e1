//! `tempora-bench`: starts the real `tempora server` (SQLite in a temporary directory), creates
//! N jobs firing every second, lets them run, then reads the run ledger back over the API and
//! prints start lag percentiles (`started_at − scheduled_for`), missed and duplicate occurrences,
//! and the server's own CPU (without its children) and RSS.
//!
//! Run it with `bench/run.sh` (builds the release binaries first).

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
    let dir = tempfile::tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = Command::new(&bin)
        .args(["server", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--local-slots", &o.slots.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let server = Proc { child };
    let pid = server.child.id();
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("server not ready after 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "tempora-bench: {} jobs firing every second ({}) running `{}` for {} s on one node (SQLite), {} local slots",
        o.jobs,
        if o.burst {
            "all at the same instant"
        } else {
            "phases spread over the second"
        },
        o.command,
        o.duration.as_secs(),
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
            .json(&json!({"command": o.command, "schedule": schedule, "concurrency": "allow"}))
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
    let (cpu0, rss0) = cpu_and_rss(pid)?;
    let w0 = Instant::now();
    let mut rss_max = rss0;
    while w0.elapsed() < o.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(cpu_and_rss(pid)?.1);
    }
    let (cpu1, rss1) = cpu_and_rss(pid)?;
    let wall = w0.elapsed().as_secs_f64();
    let window_end = Timestamp::now();
    // Stop firing, let the last runs finish, then read the ledger.
    for i in 0..o.jobs {
        let name = format!("bench-{i:05}");
        http.post(format!("{base}/api/v1/jobs/{name}/pause"))
            .send()
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The window: whole seconds from 2 s after creation to 2 s before the end.
    let from = created.as_second() + 2;
    let to = window_end.as_second() - 2;
    let mut lags = Vec::new();
    let mut missed = 0u64;
    let mut duplicates = 0u64;
    let mut not_succeeded = 0u64;
    for i in 0..o.jobs {
        let name = format!("bench-{i:05}");
        let v: Value = http
            .get(format!("{base}/api/v1/jobs/{name}/runs?limit=1000"))
            .send()
            .await?
            .json()
            .await?;
        let mut per_sec: HashMap<i64, u32> = HashMap::new();
        // Bucket occurrences by the second in which they fall.
        for r in v["runs"].as_array().into_iter().flatten() {
            if r["attempt"] != 1 {
                continue;
            }
            let sched: Timestamp = r["scheduled_for"].as_str().unwrap_or("").parse()?;
            let sec = sched.as_second();
            if sec < from || sec > to {
                continue;
            }
            *per_sec.entry(sec).or_default() += 1;
            if r["state"] != "succeeded" {
                not_succeeded += 1;
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
    println!("missed: {missed}  duplicates: {duplicates}  not succeeded: {not_succeeded}");
    println!(
        "server CPU (own, without children): {cpu_pct:.1}% of one core; RSS start {} MiB, end {} MiB, max {} MiB",
        rss0 / 1024,
        rss1 / 1024,
        rss_max / 1024
    );
    if o.json {
        println!(
            "{}",
            json!({
                "jobs": o.jobs, "seconds": o.duration.as_secs(), "expected": expected,
                "lag_ms": {"p50": percentile(&lags, 50.0), "p90": percentile(&lags, 90.0),
                           "p99": percentile(&lags, 99.0), "max": lags.last()},
                "missed": missed, "duplicates": duplicates, "not_succeeded": not_succeeded,
                "cpu_percent": cpu_pct, "rss_kib": {"start": rss0, "end": rss1, "max": rss_max},
            })
        );
    }
    if missed > 0 || duplicates > 0 {
        std::process::exit(1);
    }
    Ok(())
}
