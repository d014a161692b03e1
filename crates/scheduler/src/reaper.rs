//! The reaper: runs whose worker stopped renewing the lease become `lost`, then are retried
//! per the job's policy (the store queues the retry in the same transaction).

use std::sync::Arc;
use std::time::Duration;

use tempora_store::clock::Clock;
use tempora_store::{Fence, Store};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::leader::{Leadership, is_unfenced};

/// Check for expired leases every `every` until `shutdown`, while this node leads (with its
/// fence).
///
/// Runs are reaped only once the store has been reachable, and this node the leader, for
/// `grace` without a break (the run lease TTL): after a database outage or a change of leader,
/// workers first get the time to renew their leases and deliver the results they kept, so a run
/// that finished during the outage is recorded, not marked lost and run again.
pub async fn run_reaper(
    store: Arc<dyn Store>,
    every: Duration,
    grace: Duration,
    work_ready: Arc<Notify>,
    clock: Arc<dyn Clock>,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when the store has answered with this fence leading.
    let mut healthy: Option<(Instant, Fence)> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let Some(fence) = leadership.borrow().clone() else {
            healthy = None;
            continue;
        };
        if let Err(e) = store.ping().await {
            tracing::warn!(message = "reaper: store unreachable", error = %e);
            healthy = None;
            continue;
        }
        let since = match &healthy {
            Some((at, f)) if *f == fence => *at,
            _ => {
                healthy = Some((Instant::now(), fence.clone()));
                continue;
            }
        };
        if since.elapsed() < grace {
            continue;
        }
        let fence = (!is_unfenced(&fence)).then_some(fence);
        match store.reap_expired(clock.now(), fence.as_ref()).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(message = "runs lost: their worker stopped renewing its lease", runs = ?ids);
                metrics::counter!("tempora_runs_reaped_total").increment(ids.len() as u64);
                work_ready.notify_one();
            }
            Ok(_) => {}
            Err(e) => {
                healthy = None;
                tracing::warn!(message = "reaper failed", error = %e);
            }
        }
    }
}
