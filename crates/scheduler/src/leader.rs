//! Leader election: one lease row in the store with a fencing epoch. Every node runs the
//! elector; the node holding the lease runs the scheduler and the reaper, and passes its
//! [`Fence`] with every scheduling write, so a node that lost the lease (paused, partitioned)
//! cannot fire anything even before it notices.
//!
//! The elector renews every `renew_every`. This node considers itself leader only until
//! `ttl − renew_every` after the start of its last successful renewal (measured on the
//! monotonic clock), which is before the lease can lapse in the store; a missed renewal or a
//! pause therefore makes it step down by itself.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tempora_store::{Fence, Store};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Elector settings.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// This node's id.
    pub node: String,
    /// Its API address (`host:port`), shown to clients asking who leads.
    pub address: String,
    /// Lease length.
    pub ttl: Duration,
    /// How often the lease is renewed (and taken when free).
    pub renew_every: Duration,
    /// False for a node that must never lead (it still reports itself alive).
    pub eligible: bool,
}

/// This node's view of its leadership: `Some(fence)` while it leads.
pub type Leadership = watch::Receiver<Option<Fence>>;

/// A leadership channel for a store that is never shared (tests, embedded use): this node
/// always leads, with no fencing.
pub fn always_leader() -> (watch::Sender<Option<Fence>>, Leadership) {
    watch::channel(Some(Fence {
        node: String::new(),
        epoch: 0,
    }))
}

/// Whether a fence is the placeholder of [`always_leader`] (no fencing to apply).
pub fn is_unfenced(f: &Fence) -> bool {
    f.node.is_empty() && f.epoch == 0
}

/// Run the elector until `shutdown`; publishes leadership changes on `tx`. Gives the lease up
/// on shutdown so another node can take over at once.
pub async fn run_elector(
    store: Arc<dyn Store>,
    config: LeaderConfig,
    tx: watch::Sender<Option<Fence>>,
    shutdown: CancellationToken,
) {
    let margin = config.renew_every.min(config.ttl / 2);
    let mut valid_until: Option<Instant> = None;
    let mut tick = tokio::time::interval(config.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        if let Err(e) = store
            .node_heartbeat(&config.node, &config.address, Timestamp::now())
            .await
        {
            tracing::warn!(message = "node heartbeat failed", error = %e);
        }
        if !config.eligible {
            continue;
        }
        match store
            .acquire_leadership(&config.node, &config.address, config.ttl, Timestamp::now())
            .await
        {
            Ok(lease) if lease.node == config.node => {
                valid_until = Some(started + config.ttl.saturating_sub(margin));
                let fence = Fence {
                    node: config.node.clone(),
                    epoch: lease.epoch,
                };
                if tx.borrow().as_ref() != Some(&fence) {
                    tracing::info!(message = "this node is the leader", node = %config.node, epoch = lease.epoch);
                    metrics::counter!("tempora_leader_elections_total").increment(1);
                    let _ = tx.send(Some(fence));
                }
            }
            Ok(lease) => {
                valid_until = None;
                if tx.borrow().is_some() {
                    tracing::warn!(message = "leadership lost", node = %config.node, leader = %lease.node, epoch = lease.epoch);
                }
                let _ = tx.send_if_modified(|v| v.take().is_some());
            }
            Err(e) => {
                tracing::warn!(message = "cannot renew the leader lease", error = %e);
            }
        }
        // Step down when the lease may have lapsed (renewals failing, or this process paused).
        if valid_until.is_some_and(|u| Instant::now() >= u) {
            valid_until = None;
            tracing::warn!(message = "leader lease not renewed in time; stepping down", node = %config.node);
            let _ = tx.send_if_modified(|v| v.take().is_some());
        }
        metrics::gauge!("tempora_is_leader").set(if tx.borrow().is_some() { 1.0 } else { 0.0 });
    }
    let held = tx.borrow().clone();
    let _ = tx.send(None);
    if let Some(f) = held
        && let Err(e) = store.release_leadership(&f.node, f.epoch).await
    {
        tracing::warn!(message = "cannot release the leader lease", error = %e);
    }
}
