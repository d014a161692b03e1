//! Run-history retention (`--keep-runs`, `--keep-days`): while this node leads, finished runs the
//! [`Retention`] policy lets go are deleted in small batches, each one short store transaction
//! ([`Store::prune_runs`]), with a pause between batches so scheduling writes (fires, claims,
//! results) are never held up for long — SQLite has a single writer. Audit entries older than
//! `--keep-days` go at the end of each pass ([`Store::prune_audit`]).

use std::sync::Arc;
use std::time::Duration;

use tempora_store::clock::Clock;
use tempora_store::{Retention, Store};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::leader::Leadership;

/// Retention settings.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// What may be deleted.
    pub policy: Retention,
    /// Most runs deleted per store call (one transaction).
    pub batch: u32,
    /// Pause between the end of one pass over all jobs and the next.
    pub every: Duration,
    /// Least pause between two batches.
    pub min_pause: Duration,
    /// The pause after a batch is also at least this many times as long as the batch took, so
    /// deleting takes at most about `1 / (1 + pause_factor)` of the store's time.
    pub pause_factor: u32,
    /// What "now" is (the process clock; tests pass one they control).
    pub clock: Arc<dyn Clock>,
}

impl RetentionConfig {
    /// The defaults for `policy`: batches of 200 runs, 60 s between passes, pauses between
    /// batches of at least 10 ms and three times the batch's duration.
    pub fn new(policy: Retention) -> RetentionConfig {
        RetentionConfig {
            policy,
            batch: 200,
            every: Duration::from_secs(60),
            min_pause: Duration::from_millis(10),
            pause_factor: 3,
            clock: tempora_store::clock::system(),
        }
    }
}

/// Prune as soon as this node leads, then `config.every` after the end of each pass, until
/// `shutdown`; nothing while another node leads. A pass deletes batch
/// after batch until a batch comes back short (every job visited), leadership is lost, or
/// shutdown; it is logged with what it deleted and how long it took, and every deleted run
/// counts in `tempora_runs_pruned_total`.
pub async fn run_retention(
    store: Arc<dyn Store>,
    config: RetentionConfig,
    mut leadership: Leadership,
    shutdown: CancellationToken,
) {
    if !config.policy.is_enabled() {
        return;
    }
    loop {
        // Wait until this node leads.
        while leadership.borrow().is_none() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = leadership.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
        prune_pass(store.as_ref(), &config, &leadership, &shutdown).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.every) => {}
        }
    }
}

/// One pass: batches until a short one. Returns the number of runs deleted.
async fn prune_pass(
    store: &dyn Store,
    config: &RetentionConfig,
    leadership: &Leadership,
    shutdown: &CancellationToken,
) -> u64 {
    let started = Instant::now();
    let mut deleted = 0u64;
    let mut batches = 0u32;
    let mut busy = Duration::ZERO;
    let mut outcome = "done";
    loop {
        let t = Instant::now();
        let n = match store
            .prune_runs(&config.policy, config.clock.now(), config.batch)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(message = "retention: pruning failed", error = %e);
                outcome = "failed";
                break;
            }
        };
        let took = t.elapsed();
        busy += took;
        batches += 1;
        deleted += n;
        metrics::counter!("tempora_runs_pruned_total").increment(n);
        if n < u64::from(config.batch) {
            break;
        }
        if leadership.borrow().is_none() {
            outcome = "no longer leader";
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                outcome = "shutdown";
                break;
            }
            _ = tokio::time::sleep((took * config.pause_factor).max(config.min_pause)) => {}
        }
    }
    // The audit log follows the age limit (not the per-job count).
    if let Some(before) = config.policy.cutoff(config.clock.now()) {
        loop {
            match store.prune_audit(before, config.batch).await {
                Ok(n) if n == u64::from(config.batch) && !shutdown.is_cancelled() => {}
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(message = "retention: pruning the audit log failed", error = %e);
                    break;
                }
            }
        }
    }
    let duration = started.elapsed();
    tracing::info!(
        message = "retention pass",
        deleted,
        batches,
        outcome,
        duration_ms = duration.as_millis() as u64,
        store_ms = busy.as_millis() as u64,
        runs_per_second = (deleted as f64 / duration.as_secs_f64().max(1e-3)).round(),
        keep_runs = config.policy.keep_runs,
        keep_days = config.policy.keep_days,
    );
    deleted
}
