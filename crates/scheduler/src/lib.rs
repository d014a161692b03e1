//! `tempora-scheduler`: the leader's loop that turns due occurrences into runs, and the reaper.
//!
//! No HTTP here. The loop keeps a timer heap of each job's next occurrence (O(log n) per fire),
//! sleeps until the earliest one or until told that a job changed ([`SchedulerHandle`]), then
//! fires every due job in one store transaction ([`tempora_store::Store::fire`]): the run rows
//! and the advanced cursors commit together, and the store's unique `(job, scheduled_for,
//! attempt)` makes a replay harmless. Missed occurrences (after downtime) go through
//! [`tempora_core::policy::plan_misfire`].

pub mod leader;
pub mod reaper;
pub mod retention;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tempora_core::job::Misfire;
use tempora_core::policy::{Disposition, plan_misfire};
use tempora_core::schedule::{Schedule, parse_timezone};
use tempora_store::clock::Clock;
use tempora_store::{Fence, FireOutcome, FireRequest, ScheduleEntry, Store, StoreError};

use crate::leader::{Leadership, is_unfenced};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Most missed occurrences of one job recorded one by one in a catch-up; older ones are
/// summarised in a note on the oldest recorded one.
pub const MAX_RECORDED_MISSED: usize = 1000;
/// Stale occurrences (later than `epsilon`) the planner walks one by one before it jumps to
/// `now − epsilon`.
pub const STALE_WALK_LIMIT: usize = 10_000;

/// Jobs read per page when the schedules are loaded.
const LOAD_PAGE: u32 = 10_000;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Most jobs fired in one transaction.
    pub batch_max: usize,
    /// Pause after a store error before trying again.
    pub error_backoff: Duration,
    /// How often the leader looks for jobs changed through other nodes.
    pub poll_changes_every: Duration,
    /// What "now" is (the process clock; tests pass one they control).
    pub clock: Arc<dyn Clock>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            batch_max: 2000,
            error_backoff: Duration::from_secs(1),
            poll_changes_every: Duration::from_secs(1),
            clock: tempora_store::clock::system(),
        }
    }
}

/// Errors that stop the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Loading the schedule failed.
    #[error("cannot load schedules: {0}")]
    Load(#[from] StoreError),
}

/// Tells the scheduler that a job was created, changed, paused, resumed or deleted.
#[derive(Clone, Debug)]
pub struct SchedulerHandle {
    changes: mpsc::UnboundedSender<String>,
}

impl SchedulerHandle {
    /// The job `name` changed in the store; the scheduler reloads it.
    pub fn job_changed(&self, name: &str) {
        let _ = self.changes.send(name.to_owned());
    }
}

/// What the loop keeps per scheduled job: only what planning a fire needs (not the job's spec,
/// which the store has), so a million jobs fit in a few hundred MiB.
struct Entry {
    generation: u64,
    version: i64,
    cursor: Timestamp,
    schedule: Schedule,
    tz: TimeZone,
    anchor: Timestamp,
    misfire: Misfire,
    epsilon: Duration,
}

/// The scheduler loop.
pub struct Scheduler {
    store: Arc<dyn Store>,
    config: SchedulerConfig,
    work_ready: Arc<Notify>,
    changes: mpsc::UnboundedReceiver<String>,
    /// Job name → entry; the name is shared with the heap's items.
    entries: HashMap<Arc<str>, Entry>,
    heap: BinaryHeap<Reverse<(Timestamp, u64, Arc<str>)>>,
    /// Zones by name, shared by the entries.
    zones: HashMap<String, TimeZone>,
    generation: u64,
    /// This node's clock when the last [`load`](Self::load) began: the first change poll reads
    /// from there (less the overlap).
    loaded_from: Timestamp,
}

impl Scheduler {
    /// Build a scheduler and the handle through which job changes reach it. `work_ready` is
    /// notified whenever runs were queued.
    pub fn new(
        store: Arc<dyn Store>,
        config: SchedulerConfig,
        work_ready: Arc<Notify>,
    ) -> (Scheduler, SchedulerHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let loaded_from = config.clock.now();
        (
            Scheduler {
                store,
                config,
                work_ready,
                changes: rx,
                entries: HashMap::new(),
                heap: BinaryHeap::new(),
                zones: HashMap::new(),
                generation: 0,
                loaded_from,
            },
            SchedulerHandle { changes: tx },
        )
    }

    /// Number of jobs in the timer heap.
    pub fn scheduled_jobs(&self) -> usize {
        self.entries.len()
    }

    /// The zone named `name`, shared by every job in it (one lookup per zone, not per job).
    fn zone(&mut self, name: &str) -> Result<TimeZone, String> {
        if let Some(tz) = self.zones.get(name) {
            return Ok(tz.clone());
        }
        let tz = parse_timezone(name).map_err(|e| e.message)?;
        self.zones.insert(name.to_owned(), tz.clone());
        Ok(tz)
    }

    fn insert(&mut self, e: ScheduleEntry) {
        let Some(expr) = &e.spec.schedule else {
            self.entries.remove(e.name.as_str());
            return;
        };
        let parsed = Schedule::parse(expr)
            .map_err(|err| err.message)
            .and_then(|s| Ok((s, self.zone(&e.spec.timezone)?)));
        let (schedule, tz) = match parsed {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(message = "stored job is invalid; not scheduled", job = %e.name, error = %err);
                self.entries.remove(e.name.as_str());
                return;
            }
        };
        self.generation += 1;
        let name: Arc<str> = Arc::from(e.name);
        self.heap
            .push(Reverse((e.next_fire_at, self.generation, name.clone())));
        self.entries.insert(
            name,
            Entry {
                generation: self.generation,
                version: e.version,
                cursor: e.next_fire_at,
                schedule,
                tz,
                anchor: e.created_at,
                misfire: e.spec.misfire,
                epsilon: e.spec.epsilon,
            },
        );
    }

    /// Load every scheduled job from the store (called when this node starts leading), page by
    /// page so the specs read never all sit in memory at once.
    pub async fn load(&mut self) -> Result<(), SchedulerError> {
        let started = std::time::Instant::now();
        self.loaded_from = self.config.clock.now();
        self.entries.clear();
        self.heap.clear();
        // The next page is read (on the store's threads) while this one is inserted.
        let read = |store: Arc<dyn Store>, after: Option<String>| {
            tokio::spawn(async move { store.schedule_entries(after.as_deref(), LOAD_PAGE).await })
        };
        let mut next = Some(read(self.store.clone(), None));
        while let Some(reading) = next.take() {
            let page = reading
                .await
                .map_err(|e| StoreError::Backend(format!("schedule loading task failed: {e}")))??;
            if let Some(last) = page.last().filter(|_| page.len() == LOAD_PAGE as usize) {
                next = Some(read(self.store.clone(), Some(last.name.clone())));
            }
            for e in page {
                self.insert(e);
            }
            // Let the API and the other tasks run between pages.
            tokio::task::yield_now().await;
        }
        tracing::info!(
            message = "schedules loaded",
            jobs = self.entries.len(),
            millis = started.elapsed().as_millis() as u64
        );
        metrics::gauge!("tempora_scheduled_jobs").set(self.entries.len() as f64);
        Ok(())
    }

    async fn reload(&mut self, name: &str) {
        match self.store.get_job(name).await {
            Ok(Some(rec)) => match rec.next_fire_at {
                Some(next) if !rec.spec.paused => self.insert(ScheduleEntry {
                    name: name.to_owned(),
                    version: rec.version,
                    next_fire_at: next,
                    spec: rec.spec.timer_spec(),
                    created_at: rec.created_at,
                }),
                _ => {
                    self.entries.remove(name);
                }
            },
            Ok(None) => {
                self.entries.remove(name);
            }
            Err(e) => {
                tracing::warn!(message = "cannot reload job; will retry", job = name, error = %e);
                // Keep what we have; the fire will be refused as stale if it changed.
            }
        }
        metrics::gauge!("tempora_scheduled_jobs").set(self.entries.len() as f64);
    }

    /// Run until `shutdown` fires: while this node leads (`leadership` holds a fence), load the
    /// schedules and fire due occurrences with that fence; step down (and forget the schedules)
    /// when leadership is lost or a write is fenced.
    pub async fn run(
        mut self,
        mut leadership: Leadership,
        shutdown: CancellationToken,
    ) -> Result<(), SchedulerError> {
        loop {
            let fence = loop {
                if let Some(f) = leadership.borrow_and_update().clone() {
                    break f;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        tracing::info!(message = "scheduler stopped");
                        return Ok(());
                    }
                    changed = leadership.changed() => if changed.is_err() {
                        return Ok(());
                    },
                    // Not leading: job changes are the leader's business.
                    Some(_) = self.changes.recv() => {}
                }
            };
            if let Err(e) = self.load().await {
                tracing::error!(message = "cannot load schedules; will retry", error = %e);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(self.config.error_backoff) => {}
                }
                continue;
            }
            self.lead(&fence, &mut leadership, &shutdown).await;
            self.entries.clear();
            self.heap.clear();
            metrics::gauge!("tempora_scheduled_jobs").set(0.0);
            if shutdown.is_cancelled() {
                tracing::info!(message = "scheduler stopped");
                return Ok(());
            }
            tracing::warn!(message = "scheduler stepped down", epoch = fence.epoch);
        }
    }

    /// The leader's loop; returns when leadership ends or on shutdown.
    async fn lead(
        &mut self,
        fence: &Fence,
        leadership: &mut Leadership,
        shutdown: &CancellationToken,
    ) {
        let fence_arg = (!is_unfenced(fence)).then_some(fence);
        // Edits through other nodes: each poll reads the jobs written since a little before the
        // previous poll began (`overlap` covers clocks of nodes that differ and a write stamped
        // before it commits); only changed versions are reloaded. The mark is this node's clock,
        // so once the store is quiet a poll reads nothing. (It used to be the newest `updated_at`
        // seen, which never moved without a new edit: after a burst of N edits every poll re-read
        // the burst's last 10 s — with a million jobs just imported, a third of a core, idle.)
        let overlap = jiff::SignedDuration::from_secs(10);
        let mut polled_from = self.loaded_from;
        let mut next_poll = tokio::time::Instant::now() + self.config.poll_changes_every;
        loop {
            if leadership.borrow().as_ref() != Some(fence) || shutdown.is_cancelled() {
                return;
            }
            while let Ok(name) = self.changes.try_recv() {
                self.reload(&name).await;
            }
            if tokio::time::Instant::now() >= next_poll {
                next_poll = tokio::time::Instant::now() + self.config.poll_changes_every;
                let poll_started = self.config.clock.now();
                match self.store.changed_jobs(polled_from - overlap).await {
                    Ok(changes) => {
                        for c in changes {
                            let known = self.entries.get(c.name.as_str()).map(|e| e.version);
                            if known != Some(c.version) {
                                self.reload(&c.name).await;
                            }
                        }
                        polled_from = poll_started;
                    }
                    Err(e) => tracing::warn!(message = "cannot poll job changes", error = %e),
                }
            }
            let now = self.config.clock.now();
            let due = self.pop_due(now);
            if !due.is_empty() {
                if self.fire(due, now, fence_arg, shutdown).await {
                    return;
                }
                continue;
            }
            let sleep_for = match self.heap.peek() {
                Some(Reverse((at, _, _))) => {
                    Duration::try_from(at.duration_since(self.config.clock.now()))
                        .unwrap_or(Duration::ZERO)
                }
                None => Duration::from_secs(3600),
            };
            let poll_in = next_poll.saturating_duration_since(tokio::time::Instant::now());
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = leadership.changed() => {}
                Some(name) = self.changes.recv() => self.reload(&name).await,
                _ = tokio::time::sleep(sleep_for.min(poll_in)) => {}
            }
        }
    }

    fn pop_due(&mut self, now: Timestamp) -> Vec<Arc<str>> {
        let mut due = Vec::new();
        while let Some(Reverse((at, generation, _))) = self.heap.peek() {
            if *at > now || due.len() >= self.config.batch_max {
                break;
            }
            let generation = *generation;
            let Some(Reverse((_, _, name))) = self.heap.pop() else {
                break;
            };
            if self
                .entries
                .get(&name)
                .is_some_and(|e| e.generation == generation)
            {
                due.push(name);
            }
        }
        due
    }

    fn plan(&self, name: &str, now: Timestamp) -> Option<FireRequest> {
        let e = self.entries.get(name)?;
        let mut due: VecDeque<Timestamp> = VecDeque::new();
        due.push_back(e.cursor);
        let mut omitted = 0u64;
        let mut first_omitted = None;
        // Occurrences before `now − epsilon` are skipped whatever the policy: after a long
        // outage the walk jumps there instead of visiting each of them.
        let stale_until = now
            .checked_sub(jiff::SignedDuration::try_from(e.epsilon).ok()?)
            .ok()
            .filter(|f| *f > e.cursor);
        let mut jumped = false;
        let mut walked = 0usize;
        let mut c = e.cursor;
        let next = loop {
            match e.schedule.next_after(c, &e.tz, e.anchor) {
                Some(n) if n <= now => {
                    due.push_back(n);
                    if due.len() > MAX_RECORDED_MISSED {
                        let dropped = due.pop_front();
                        first_omitted = first_omitted.or(dropped);
                        omitted += 1;
                    }
                    c = n;
                    walked += 1;
                    if let Some(floor) = stale_until
                        && !jumped
                        && walked >= STALE_WALK_LIMIT
                        && n < floor
                    {
                        // Everything walked so far, and what lies between it and `floor`, is
                        // stale: none of it is recorded one by one.
                        jumped = true;
                        first_omitted = Some(e.cursor);
                        omitted += due.len() as u64;
                        due.clear();
                        c = floor - jiff::SignedDuration::from_nanos(1);
                    }
                }
                other => break other,
            }
        };
        let due: Vec<Timestamp> = due.into();
        let occurrences = plan_misfire(e.misfire, e.epsilon, &due, now);
        let skipped_note = first_omitted.map(|first| {
            let more = if jumped { "more than " } else { "" };
            format!(
                "{more}{omitted} older missed occurrences (from {first}) were not recorded one by one"
            )
        });
        Some(FireRequest {
            job: name.to_owned(),
            version: e.version,
            expected_cursor: e.cursor,
            occurrences,
            skipped_note,
            next_cursor: next,
        })
    }

    /// Fire due jobs; true when the write was fenced (this node no longer leads).
    async fn fire(
        &mut self,
        due: Vec<Arc<str>>,
        now: Timestamp,
        fence: Option<&Fence>,
        shutdown: &CancellationToken,
    ) -> bool {
        let requests: Vec<FireRequest> = due.iter().filter_map(|n| self.plan(n, now)).collect();
        let lags: Vec<f64> = requests
            .iter()
            .flat_map(|r| r.occurrences.iter())
            .filter(|o| o.disposition == Disposition::Run)
            .map(|o| now.duration_since(o.at).as_secs_f64())
            .collect();
        let next: HashMap<String, Option<Timestamp>> = requests
            .iter()
            .map(|r| (r.job.clone(), r.next_cursor))
            .collect();
        match self.store.fire(requests, now, fence).await {
            Ok(outcomes) => {
                for l in lags {
                    metrics::histogram!("tempora_schedule_lag_seconds").record(l);
                }
                let mut queued_any = false;
                for o in outcomes {
                    match o {
                        FireOutcome::Fired {
                            job,
                            queued,
                            skipped,
                        } => {
                            queued_any |= !queued.is_empty();
                            metrics::counter!("tempora_occurrences_total", "disposition" => "queued")
                                .increment(queued.len() as u64);
                            metrics::counter!("tempora_occurrences_total", "disposition" => "skipped")
                                .increment(skipped as u64);
                            if skipped > 0 {
                                tracing::info!(message = "occurrences skipped", job = %job, skipped);
                            }
                            self.advance(&job, next.get(&job).copied().flatten());
                        }
                        FireOutcome::Stale { job } => self.reload(&job).await,
                    }
                }
                if queued_any {
                    self.work_ready.notify_one();
                }
                false
            }
            Err(StoreError::Fenced(m)) => {
                tracing::warn!(message = "fire refused: this node is no longer the leader", reason = %m);
                true
            }
            Err(e) => {
                tracing::error!(message = "fire failed; will retry", error = %e, jobs = due.len());
                // Put the jobs back unchanged and wait a little (e.g. database restarting).
                for name in &due {
                    if let Some(en) = self.entries.get(name) {
                        self.heap
                            .push(Reverse((en.cursor, en.generation, name.clone())));
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(self.config.error_backoff) => {}
                }
                false
            }
        }
    }

    fn advance(&mut self, job: &str, next: Option<Timestamp>) {
        match next {
            Some(n) => {
                if let Some(e) = self.entries.get_mut(job) {
                    e.cursor = n;
                    let generation = e.generation;
                    // The entry's own key: one allocation per job, shared with the heap.
                    if let Some((key, _)) = self.entries.get_key_value(job) {
                        self.heap.push(Reverse((n, generation, key.clone())));
                    }
                }
            }
            None => {
                self.entries.remove(job);
            }
        }
    }
}
