//! The machine's own limit for starting jobs: N `/bin/sh -c <command>` started at once from 8
//! threads (std's `Command`, which uses `posix_spawn`), with no bookkeeping at all — what a
//! scheduler that did nothing else could reach. `--burst` measures it in the same run (5 bursts,
//! before the servers start) and reports tempora's start lags as ratios to it.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Threads that spawn (as many as tempora's spawner threads).
pub const THREADS: usize = 8;

/// One measurement: each process's start, from the common instant, sorted (ms).
pub struct SpawnLimit {
    /// Processes started.
    pub n: usize,
    /// When each `spawn` returned (the process exists and runs its program), ms after the start.
    pub lag_ms: Vec<f64>,
    /// Until the last spawn returned.
    pub total: Duration,
}

/// Start `n` `/bin/sh -c command` at once from [`THREADS`] threads; wait for them all.
pub fn measure(n: usize, command: &str) -> anyhow::Result<SpawnLimit> {
    let t0 = Instant::now();
    let command = Arc::new(command.to_owned());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let command = command.clone();
            std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, Vec<Child>)> {
                let mut lags = Vec::new();
                let mut children = Vec::new();
                for _ in (t..n).step_by(THREADS) {
                    let child = Command::new("/bin/sh")
                        .arg("-c")
                        .arg(command.as_str())
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .context("spawn /bin/sh")?;
                    lags.push(t0.elapsed().as_secs_f64() * 1000.0);
                    children.push(child);
                }
                Ok((lags, children))
            })
        })
        .collect();
    let mut lag_ms = Vec::with_capacity(n);
    let mut children = Vec::with_capacity(n);
    for h in handles {
        let (lags, kids) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a spawning thread panicked"))??;
        lag_ms.extend(lags);
        children.extend(kids);
    }
    let total = Duration::from_secs_f64(lag_ms.iter().copied().fold(0.0, f64::max) / 1000.0);
    for mut c in children {
        c.wait().context("wait for /bin/sh")?;
    }
    lag_ms.sort_by(|a, b| a.total_cmp(b));
    Ok(SpawnLimit { n, lag_ms, total })
}

/// [`measure`] `bursts` times, 200 ms apart; the start offsets of every burst together.
pub fn measure_bursts(n: usize, command: &str, bursts: usize) -> anyhow::Result<SpawnLimit> {
    let mut all = SpawnLimit {
        n,
        lag_ms: Vec::with_capacity(n * bursts),
        total: Duration::ZERO,
    };
    for i in 0..bursts.max(1) {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let m = measure(n, command)?;
        all.lag_ms.extend(m.lag_ms);
        all.total = all.total.max(m.total);
    }
    all.lag_ms.sort_by(|a, b| a.total_cmp(b));
    Ok(all)
}
