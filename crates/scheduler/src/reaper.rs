//! The reaper: runs whose worker stopped renewing the lease become `lost`, then are retried
//! per the job's policy (the store queues the retry in the same transaction).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tempora_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::leader::{Leadership, is_unfenced};

/// Check for expired leases every `every` until `shutdown`, while this node leads (with its
/// fence).
pub async fn run_reaper(
    store: Arc<dyn Store>,
    every: Duration,
    work_ready: Arc<Notify>,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let Some(fence) = leadership.borrow().clone() else {
            continue;
        };
        let fence = (!is_unfenced(&fence)).then_some(fence);
        match store.reap_expired(Timestamp::now(), fence.as_ref()).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(message = "runs lost: their worker stopped renewing its lease", runs = ?ids);
                metrics::counter!("tempora_runs_reaped_total").increment(ids.len() as u64);
                work_ready.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(message = "reaper failed", error = %e),
        }
    }
}
