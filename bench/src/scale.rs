//! `--scale N`: N stored cron jobs with varied schedules on one SQLite node.
//!
//! Seeds a data directory through the store itself (`tempora-store-sqlite`, the same
//! validation and cursor computation as the API; many writes in flight so the writer thread
//! commits them in groups), then starts the real server on it and measures: cold start to
//! `/ready` and to every job being in the scheduler's timer heap, RSS, idle CPU, `GET
//! /api/v1/jobs/{name}` latency at a fixed request rate (open loop: latency counts from the
//! instant a request was due, so a stall is not hidden by sending fewer requests), and creating
//! 10,000 more jobs over HTTP with 8 concurrent clients.
//!
//! The schedules never fire during the benchmark (every one names a month at least one month
//! ahead), so "idle" is idle: the figure is the cost of holding N jobs, not of running them.
//! The seeded directory is kept under `target/bench-scale-<N>-<yyyymm>/` and reused by later
//! runs in the same month.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::Timestamp;
use serde_json::{Value, json};
use tempora_core::job::JobSpec;
use tempora_store::{PutMode, Store, StoreOptions};
use tempora_store_sqlite::SqliteStore;

use crate::history::{Rng, dir_size};
use crate::{Proc, cpu_and_rss, percentile};

/// Zones the seeded jobs use, with and without DST, both hemispheres.
const ZONES: [&str; 8] = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Pacific/Chatham",
];

/// The `i`-th seeded job: varied cron forms (5-field, Quartz 6- and 7-field, names, ranges,
/// steps, `L`, `W`, `#`), all in a month at least one month after `month` (1–12), so none fires
/// while the benchmark runs.
fn seeded_job(i: usize, month: u64, rng: &mut Rng) -> anyhow::Result<JobSpec> {
    // A month 1..=10 months after the current one.
    let m = (month - 1 + 1 + rng.below(10)) % 12 + 1;
    let (min, hour, day) = (rng.below(60), rng.below(24), 1 + rng.below(28));
    let schedule = match i % 8 {
        0 => format!("{min} {hour} {day} {m} *"),
        1 => format!("0 {min} {hour} {day} {m} ?"),
        2 => format!("{min} {hour} * {m} MON-FRI"),
        3 => format!("0 {min} {hour} L {m} ?"),
        4 => format!("0 {min} {hour} ? {m} MON#2"),
        5 => format!("{min} {hour}-{} {day} {m} *", (hour + 2).min(23)),
        6 => format!("0 0/15 {hour} {day}W {m} ? *"),
        _ => format!("*/10 {hour} {day},{} {m} *", 1 + (day + 7) % 28),
    };
    let zone = ZONES[(rng.below(ZONES.len() as u64)) as usize];
    let spec = json!({
        "name": format!("scale-{i:07}"),
        "command": "true",
        "schedule": schedule,
        "timezone": zone,
        "retries": rng.below(3),
        "description": format!("seeded job {i}"),
    });
    serde_json::from_value(spec).context("seeded job spec")
}

/// Seed `dir` with `n` jobs (reusing a directory seeded earlier this month).
async fn seed(dir: &Path, n: usize) -> anyhow::Result<()> {
    let done = dir.join("seeded");
    if done.exists() {
        println!("reusing {} (seeded earlier)", dir.display());
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir, StoreOptions::default())?);
    let month = u64::from(
        Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .month()
            .unsigned_abs(),
    );
    let t = Instant::now();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut in_flight = tokio::task::JoinSet::new();
    for i in 0..n {
        let spec = seeded_job(i, month, &mut rng)?;
        let store = store.clone();
        in_flight.spawn(async move {
            store
                .put_job(spec, PutMode::Upsert, Timestamp::now())
                .await
                .map(|_| ())
        });
        // Keep about two writer batches in flight.
        while in_flight.len() >= 1024 {
            if let Some(r) = in_flight.join_next().await {
                r??;
            }
        }
        if (i + 1) % 100_000 == 0 {
            println!(
                "  seeded {} jobs ({:.0} s)",
                i + 1,
                t.elapsed().as_secs_f64()
            );
        }
    }
    while let Some(r) = in_flight.join_next().await {
        r??;
    }
    drop(store);
    // Fold the seed's WAL into the database now, so the server's cold start reads a database
    // without a large WAL to copy back. (The idle CPU seen after a seed was not this but the
    // change poll re-reading the fresh jobs; see the wait before the idle window.)
    rusqlite::Connection::open(dir.join("tempora.db"))?.query_row(
        "PRAGMA wal_checkpoint(TRUNCATE)",
        [],
        |_| Ok(()),
    )?;
    std::fs::write(&done, n.to_string())?;
    println!(
        "seeded {n} jobs through the store in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Peak RSS of `pid` in KiB (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Jobs in the leader's timer heap (`tempora_scheduled_jobs` on `/metrics`).
async fn scheduled_jobs(http: &reqwest::Client, base: &str) -> Option<u64> {
    crate::metric_value(http, base, "tempora_scheduled_jobs")
        .await
        .map(|v| v as u64)
}

/// GET random jobs at `rate` requests/s for `secs` seconds; latencies in ms counted from each
/// request's due instant.
async fn get_at_rate(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    rate: u32,
    secs: u64,
) -> anyhow::Result<Vec<f64>> {
    let total = rate as u64 * secs;
    let period = Duration::from_secs(1) / rate;
    let start = tokio::time::Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..total {
        let due = start + period * k as u32;
        tokio::time::sleep_until(due).await;
        let url = format!("{base}/api/v1/jobs/scale-{:07}", rng.below(n as u64));
        let http = http.clone();
        tasks.spawn(async move {
            let r = http.get(url).send().await?;
            let ok = r.status().is_success();
            let _ = r.bytes().await?;
            if !ok {
                bail!("GET job failed");
            }
            Ok::<f64, anyhow::Error>(due.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let mut lat = Vec::with_capacity(total as usize);
    while let Some(r) = tasks.join_next().await {
        lat.push(r??);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(lat)
}

/// The `--scale N` benchmark.
pub async fn run(bin: &Path, n: usize, json_out: bool) -> anyhow::Result<()> {
    let month = Timestamp::now().strftime("%Y%m").to_string();
    let dir: PathBuf = std::env::current_dir()?
        .join("target")
        .join(format!("bench-scale-{n}-{month}"));
    println!("tempora-bench: {n} stored cron jobs with varied schedules, one node (SQLite)");
    seed(&dir, n).await?;
    println!("database: {} MiB", dir_size(&dir) / (1024 * 1024));

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = crate::auth::base(port);
    let log = std::fs::File::create(dir.join("server.log"))?;
    let t0 = Instant::now();
    let child = std::process::Command::new(bin)
        .arg("server")
        .args(crate::auth::server_args())
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--local-slots",
            "8",
        ])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let server = Proc { child };
    let pid = server.child.id();
    let http = crate::auth::client_builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let ready = loop {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status().is_success()
        {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("server not ready after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let loaded = loop {
        if scheduled_jobs(&http, &base)
            .await
            .is_some_and(|j| j as usize >= n)
        {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("schedules not loaded after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "cold start: ready (API answers) after {:.2} s; all {n} schedules in the timer heap after {:.2} s",
        ready.as_secs_f64(),
        loaded.as_secs_f64()
    );
    // Let start-up allocations settle, then measure idle CPU — from at least 12 s after the
    // seed's last write: the scheduler's change poll re-reads jobs written within 10 s before
    // each poll (its clock-skew overlap), so right after seeding a million jobs it would be
    // measuring the import's aftermath, not the cost of holding them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seeded_at = std::fs::metadata(dir.join("seeded"))
        .and_then(|m| m.modified())
        .ok();
    if let Some(wait) = seeded_at.and_then(|t| {
        (t + Duration::from_secs(12))
            .duration_since(std::time::SystemTime::now())
            .ok()
    }) {
        println!(
            "waiting {:.1} s before the idle window (the seed was written less than 12 s ago)",
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }
    let idle_secs = 20;
    let (c0, rss_loaded) = cpu_and_rss(pid)?;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let (c1, rss_idle) = cpu_and_rss(pid)?;
    let idle_cpu = (c1 - c0) as f64 / 100.0 / idle_secs as f64 * 100.0;
    let peak_loaded = peak_rss(pid);
    println!(
        "RSS after load {} MiB (peak {} MiB); idle CPU over {idle_secs} s: {idle_cpu:.2}% of one core (RSS {} MiB)",
        rss_loaded / 1024,
        peak_loaded / 1024,
        rss_idle / 1024
    );

    let (rate, secs) = (500, 20);
    let lat = get_at_rate(&http, &base, n, rate, secs).await?;
    println!(
        "GET /api/v1/jobs/{{name}} at {rate} req/s for {secs} s: p50 {:.2} ms  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN)
    );

    let ui = crate::ui_pages::measure(&base, "scale-0000042").await?;

    let create = 10_000usize;
    let clients = 8;
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (http, base) = (http.clone(), base.clone());
        tasks.spawn(async move {
            let mut i = c;
            while i < create {
                let r = http
                    .put(format!("{base}/api/v1/jobs/new-{i:05}"))
                    .json(
                        &json!({"command": "true", "schedule": format!("{} 3 * * *", i % 60),
                                  "timezone": ZONES[i % ZONES.len()]}),
                    )
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("creating new-{i:05}: {} {}", r.status(), r.text().await?);
                }
                i += clients;
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let took = t.elapsed().as_secs_f64();
    println!(
        "created {create} jobs over HTTP with {clients} clients in {took:.2} s ({:.0} jobs/s)",
        create as f64 / took
    );
    // Leave the seeded directory as it was: delete the jobs created over HTTP.
    for i in 0..create {
        let _ = http
            .delete(format!("{base}/api/v1/jobs/new-{i:05}"))
            .send()
            .await;
    }
    let (_, rss_end) = cpu_and_rss(pid)?;
    let peak = peak_rss(pid);
    println!(
        "RSS at the end {} MiB (peak over the whole run {} MiB)",
        rss_end / 1024,
        peak / 1024
    );
    if json_out {
        let v: Value = json!({
            "scale": n, "ready_seconds": ready.as_secs_f64(), "loaded_seconds": loaded.as_secs_f64(),
            "rss_kib": {"loaded": rss_loaded, "idle": rss_idle, "end": rss_end,
                        "peak_after_load": peak_loaded, "peak": peak},
            "idle_cpu_percent": idle_cpu,
            "get_ms": {"p50": percentile(&lat, 50.0), "p90": percentile(&lat, 90.0),
                       "p99": percentile(&lat, 99.0), "max": lat.last()},
            "create_10k_seconds": took,
            "ui_ms": ui,
        });
        println!("{v}");
    }
    Ok(())
}
