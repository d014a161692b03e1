//! Leader election: one lease row in the store with a fencing epoch. Every node runs the
//! elector; the node holding the lease runs the scheduler and the reaper, and passes its
//! [`Fence`] with every scheduling write, so a node that lost the lease (paused, partitioned)
//! cannot fire anything even before it notices.
//!
//! The elector renews every `renew_every`. This node considers itself leader only until
//! `ttl − renew_every` after the start of its last successful renewal (measured on the
//! monotonic clock), which is before the lease can lapse in the store; a missed renewal or a
//! pause therefore makes it step down by itself.
//!
//! Each renewal first reads the store's clock (PostgreSQL's), which `tempora_store::clock`
//! follows from then on: the whole node fires, leases and reports on the database's time. A
//! node whose own clock is further off than `max_clock_offset`, or whose offset cannot be
//! measured, does not take the lease, and a leader whose offset grows past it steps down, so
//! the nodes with the best clocks lead.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use tempora_core::clock::Sample;
use tempora_store::clock::{self, Clock};
use tempora_store::{Fence, Store, StoreResult};
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
    /// Largest offset of this node's clock to the store's at which it may lead (where the
    /// store has a clock of its own, see [`Store::reference_time`]).
    pub max_clock_offset: Duration,
    /// What "now" is for the store's writes (the process clock; tests pass one they control).
    pub clock: Arc<dyn Clock>,
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

/// Whether this node's clock lets it lead, from one reading of the store's clock.
#[derive(Debug, Clone, PartialEq)]
enum ClockCheck {
    /// The store has no clock of its own (SQLite): nothing to agree with.
    NoReference,
    /// Measured: the offset (store minus this node) is within the limit.
    Within(SignedDuration),
    /// Measured beyond the limit.
    Beyond(SignedDuration),
    /// The store's clock could not be read, or not precisely enough.
    Unmeasured(String),
}

/// Read the store's clock once into the process clock. False where the store has no clock
/// of its own.
async fn read_store_clock(store: &dyn Store) -> StoreResult<bool> {
    let sent = std::time::Instant::now();
    let reading = store.reference_time().await?;
    let received = std::time::Instant::now();
    let Some(reference) = reading else {
        return Ok(false);
    };
    clock::observe(Sample {
        sent,
        received,
        reference,
    });
    Ok(true)
}

/// Read the store's clock once and judge the offset.
async fn check_clock(store: &dyn Store, max: Duration) -> ClockCheck {
    match read_store_clock(store).await {
        Ok(false) => return ClockCheck::NoReference,
        Ok(true) => {}
        Err(e) => return ClockCheck::Unmeasured(format!("cannot read the database's clock: {e}")),
    }
    let (Some(offset), Some(uncertainty)) = (clock::offset(), clock::uncertainty()) else {
        return ClockCheck::Unmeasured("no reading of the database's clock".into());
    };
    if uncertainty > max / 2 {
        return ClockCheck::Unmeasured(format!(
            "the database answers too slowly to measure the offset (±{uncertainty:?})"
        ));
    }
    if offset.unsigned_abs() > max {
        ClockCheck::Beyond(offset)
    } else {
        ClockCheck::Within(offset)
    }
}

/// Read the store's clock a few times, before the node does anything else, so it starts on
/// the database's time. Returns the offset found; `None` where the store has no clock of its
/// own (SQLite) or could not be read (the elector keeps trying at each renewal).
pub async fn sync_clock(store: &dyn Store) -> Option<SignedDuration> {
    for _ in 0..3 {
        match read_store_clock(store).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(message = "cannot read the database's clock", error = %e);
                return None;
            }
        }
    }
    clock::offset()
}

/// Publish the offset (gauge, heartbeat value) and log when it crosses half the limit.
fn report_clock(check: &ClockCheck, max: Duration, warned: &mut bool) -> Option<SignedDuration> {
    let offset = match check {
        ClockCheck::Within(o) | ClockCheck::Beyond(o) => *o,
        ClockCheck::NoReference | ClockCheck::Unmeasured(_) => return None,
    };
    metrics::gauge!("tempora_clock_offset_seconds").set(offset.as_secs_f64());
    let high = offset.unsigned_abs() > max / 2;
    if high && !*warned {
        tracing::warn!(
            message = "this node's clock is off the database's",
            offset_ms = clock::millis(offset),
            max_clock_offset_ms = max.as_millis() as u64,
        );
    } else if !high && *warned {
        tracing::info!(
            message = "this node's clock is back near the database's",
            offset_ms = clock::millis(offset)
        );
    }
    *warned = high;
    Some(offset)
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
    let mut warned = false;
    let mut refusing = false;
    let mut tick = tokio::time::interval(config.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        let check = check_clock(&*store, config.max_clock_offset).await;
        let offset = report_clock(&check, config.max_clock_offset, &mut warned);
        if let Err(e) = store
            .node_heartbeat(&config.node, &config.address, offset, config.clock.now())
            .await
        {
            tracing::warn!(message = "node heartbeat failed", error = %e);
        }
        if !config.eligible {
            continue;
        }
        if let ClockCheck::Beyond(_) | ClockCheck::Unmeasured(_) = check {
            let why = match &check {
                ClockCheck::Beyond(o) => format!(
                    "the clock is {} ms off the database's (--max-clock-offset {} ms)",
                    clock::millis(*o),
                    config.max_clock_offset.as_millis()
                ),
                ClockCheck::Unmeasured(m) => m.clone(),
                _ => String::new(),
            };
            valid_until = None;
            let held = tx.borrow().clone();
            if let Some(f) = held {
                tracing::warn!(message = "stepping down: this node may not lead", node = %config.node, reason = %why);
                let _ = tx.send(None);
                if let Err(e) = store.release_leadership(&f.node, f.epoch).await {
                    tracing::warn!(message = "cannot release the leader lease", error = %e);
                }
            } else if !refusing {
                tracing::warn!(message = "not taking the leader lease", node = %config.node, reason = %why);
            }
            refusing = true;
            metrics::gauge!("tempora_is_leader").set(0.0);
            continue;
        }
        refusing = false;
        match store
            .acquire_leadership(
                &config.node,
                &config.address,
                config.ttl,
                config.clock.now(),
            )
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
