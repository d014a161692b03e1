//! `tempora-store`: the one [`Store`] trait every backend implements (SQLite now, PostgreSQL
//! next), the records it returns, and — behind the `contract-tests` feature — the contract test
//! suite every backend must pass ([`contract`]).
//!
//! All scheduling writes are transactional and idempotent: a scheduled occurrence is a unique
//! `(job, scheduled_for, attempt)` row, so firing it twice cannot create a second run. Policy
//! decisions (retry, overlap) are the pure functions of `tempora_core::policy`, applied by the
//! backend inside its transactions.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tempora_core::job::{JobSpec, TimerSpec, ValidationError};
use tempora_core::policy::PlannedOccurrence;
use tempora_core::run::{Run, RunOverrides, RunState, Trigger};

pub mod artifacts;
pub mod auth;
pub mod clock;
#[cfg(feature = "contract-tests")]
pub mod contract;
#[cfg(feature = "contract-tests")]
pub mod contract_auth;
#[cfg(feature = "faults")]
pub mod faults;
pub mod notify;
mod rules;
pub mod secrets;
pub mod txn;
pub mod waiting;

pub use rules::{compute_cursor, first_occurrence, run_environment};

pub use auth::{AuditEntry, AuditQuery, NewAudit, NewToken, TokenRecord};

/// Errors of store operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No job has this name.
    #[error("job `{0}` not found")]
    JobNotFound(String),
    /// A job with this name exists (create-only write).
    #[error("job `{0}` already exists")]
    JobExists(String),
    /// No run has this id.
    #[error("run {0} not found")]
    RunNotFound(i64),
    /// No active token has this id or name.
    #[error("token `{0}` not found")]
    TokenNotFound(String),
    /// The write was refused by validation; nothing was stored.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The operation does not apply to the current state (e.g. cancelling a finished run).
    #[error("{0}")]
    Conflict(String),
    /// The database is unreachable or shutting down; the operation may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Any other backend failure.
    #[error("store error: {0}")]
    Backend(String),
    /// A scheduling write by a node that is no longer the leader (its epoch is stale); nothing
    /// was written. The node must step down.
    #[error("fenced: {0}")]
    Fenced(String),
}

/// Proof of leadership carried by scheduling writes: the writer's node id and lease epoch. The
/// store refuses the write ([`StoreError::Fenced`]) unless the lease row still names this node
/// with this epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The leader's node id.
    pub node: String,
    /// The epoch of its lease.
    pub epoch: u64,
}

/// The leader lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The node holding it.
    pub node: String,
    /// Its API address (`host:port`).
    pub address: String,
    /// Increases by one at every change of holder.
    pub epoch: u64,
    /// When it lapses unless renewed (store clock).
    pub expires_at: Timestamp,
}

/// A node that has reported itself alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// Node id.
    pub id: String,
    /// API address (`host:port`).
    pub address: String,
    /// Last heartbeat (store clock).
    pub last_seen: Timestamp,
    /// Its clock's offset to the store's at that heartbeat (`None`: not measured).
    pub clock_offset: Option<SignedDuration>,
}

/// The leader lease and the known nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// The lease, if any node ever held it.
    pub lease: Option<Lease>,
    /// Nodes, by id.
    pub nodes: Vec<NodeInfo>,
    /// The store's clock when this was read.
    pub now: Timestamp,
}

/// A job whose definition changed (see [`Store::changed_jobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobChange {
    /// Job name.
    pub name: String,
    /// Its version now.
    pub version: i64,
    /// When it was last written.
    pub updated_at: Timestamp,
}

/// Timestamps as integer microseconds, the stores' column format.
pub mod micros {
    use jiff::Timestamp;

    /// Timestamp → microseconds.
    pub fn us(t: Timestamp) -> i64 {
        t.as_microsecond()
    }

    /// Microseconds → timestamp (out-of-range values clamp to the epoch).
    pub fn ts(v: i64) -> Timestamp {
        Timestamp::from_microsecond(v).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Optional microseconds → optional timestamp.
    pub fn ots(v: Option<i64>) -> Option<Timestamp> {
        v.map(ts)
    }
}

/// Result alias of this crate.
pub type StoreResult<T> = Result<T, StoreError>;

/// A stored job: its spec plus scheduling state and Chronos-style counters.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobRecord {
    /// The job as defined.
    pub spec: JobSpec,
    /// When the job was first created (origin of `@every` and of ISO intervals without start).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When the job was last changed.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// Incremented by every change of spec or pause state; the scheduler's fire is conditional on it.
    pub version: i64,
    /// The next occurrence not yet fired (None: no further occurrence, or no schedule).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_fire_at: Option<Timestamp>,
    /// Successful runs.
    pub success_count: u64,
    /// Failed, timed-out or lost runs.
    pub error_count: u64,
    /// End of the last successful run.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<Timestamp>,
    /// End of the last failed run.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_error_at: Option<Timestamp>,
    /// Failed runs since the last successful one (Chronos's `errorsSinceLastSuccess`).
    pub errors_since_success: u64,
}

/// How [`Store::put_job`] treats an existing job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Refuse with [`StoreError::JobExists`] if the name is taken.
    Create,
    /// Create or replace.
    Upsert,
}

/// Result of [`Store::put_job`].
#[derive(Debug, Clone)]
pub struct PutOutcome {
    /// The job as stored.
    pub record: JobRecord,
    /// True when the job did not exist before.
    pub created: bool,
}

/// What the scheduler needs to keep a job in its timer heap.
#[derive(Debug, Clone)]
pub struct ScheduleEntry {
    /// Job name.
    pub name: String,
    /// Job version at load time.
    pub version: i64,
    /// The next occurrence not yet fired.
    pub next_fire_at: Timestamp,
    /// The fields of the job's spec the timer needs.
    pub spec: TimerSpec,
    /// The job's creation instant (schedule anchor).
    pub created_at: Timestamp,
}

/// One job's share of a fire batch.
#[derive(Debug, Clone)]
pub struct FireRequest {
    /// Job name.
    pub job: String,
    /// The version the plan was made from; the fire is refused if the job changed since.
    pub version: i64,
    /// The cursor the plan was made from; the fire is refused if it moved since.
    pub expected_cursor: Timestamp,
    /// The due occurrences and what to do with each.
    pub occurrences: Vec<PlannedOccurrence>,
    /// Extra note stored on the oldest skipped run (e.g. how many older occurrences were not
    /// recorded one by one).
    pub skipped_note: Option<String>,
    /// The new cursor: the first occurrence after the planned ones.
    pub next_cursor: Option<Timestamp>,
}

/// What [`Store::backfill`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Backfilled {
    /// The runs created, oldest occurrence first.
    pub created: Vec<i64>,
    /// Occurrences that had a run already (scheduled or backfilled): none was created.
    pub existing: u64,
    /// Occurrences at or before the newest one whose run retention deleted: tempora no longer
    /// knows whether they ran, so none was created.
    pub pruned: u64,
}

/// Outcome of one job's fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// Runs were recorded (ids of queued runs, count of skipped ones).
    Fired {
        /// Job name.
        job: String,
        /// Runs created in `queued` state.
        queued: Vec<i64>,
        /// Occurrences recorded as `skipped`.
        skipped: usize,
    },
    /// The job changed, was paused or deleted since the plan: nothing was written.
    Stale {
        /// Job name.
        job: String,
    },
}

/// A run handed to a worker, with the job spec it runs under.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    /// The run (state `running`).
    pub run: Run,
    /// The job's spec at claim time.
    pub spec: JobSpec,
    /// The job's owner etc. are in `spec`; this is the lease expiry.
    pub lease_expires_at: Timestamp,
}

/// Whether a new run row folds into the job's newest row instead of being inserted: only a
/// skipped scheduled first attempt does, into a skipped scheduled first attempt of an earlier
/// occurrence (nothing of the job in between). Both backends apply this; only the SQL differs.
pub fn folds_into(
    new: (RunState, Trigger, u32, Timestamp),
    newest: (&str, &str, i64, Timestamp),
) -> bool {
    let (state, origin, attempt, at) = new;
    let (n_state, n_origin, n_attempt, n_last) = newest;
    state == RunState::Skipped
        && origin == Trigger::Schedule
        && attempt == 1
        && n_state == RunState::Skipped.as_str()
        && n_origin == Trigger::Schedule.as_str()
        && n_attempt == 1
        && n_last < at
}

/// Which runs [`Store::search_runs`] lists (every field optional; all given must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Only this job's.
    pub job: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs with this trigger.
    pub trigger: Option<Trigger>,
    /// Only occurrences at or after this instant (`scheduled_for`).
    pub since: Option<Timestamp>,
    /// Only occurrences before this instant.
    pub until: Option<Timestamp>,
}

/// A worker's report of a finished run (also the HTTP worker protocol's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunResult {
    /// Run id.
    pub run_id: i64,
    /// Final state (`succeeded`, `failed`, `timed_out`, `cancelled`, `lost`).
    pub state: RunState,
    /// When the process actually started (None if it never did).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[schema(value_type = String, format = DateTime)]
    pub finished_at: Timestamp,
    /// Exit status.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Killing signal.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Failure explanation.
    #[serde(default)]
    pub error: Option<String>,
    /// Output not yet appended with [`Store::append_log`] (base64 on the wire; an array of
    /// byte values is accepted too).
    #[serde(default, with = "wire_bytes")]
    pub log_tail: Vec<u8>,
    /// The job is `async` and its process exited 0: the run stays `running`, without a lease,
    /// until [`Store::complete_run`] reports its outcome (`state` is then ignored).
    #[serde(default)]
    pub awaits_completion: bool,
}

/// A slice of a run's output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSlice {
    /// Bytes from `offset` on.
    pub data: Vec<u8>,
    /// The stream offset of `data[0]` (greater than the requested one when bytes were dropped).
    pub offset: u64,
    /// Offset to ask for next.
    pub next_offset: u64,
    /// Bytes dropped by the bound before `offset` (0 when nothing was lost).
    pub dropped_before: u64,
    /// State of the run when read.
    pub state: RunState,
}

/// What a job's own metric series show (jobs labelled `metrics: "true"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMetrics {
    /// The job.
    pub job: String,
    /// Occurrences that succeeded (`success_count`).
    pub succeeded: u64,
    /// Occurrences that failed after their retries (`error_count`).
    pub failed: u64,
    /// When a run of it last succeeded.
    pub last_success_at: Option<Timestamp>,
    /// The state of its newest run that ended (skipped ones aside).
    pub last_state: Option<RunState>,
}

/// Label that gives a job its own metric series.
pub const METRICS_LABEL: (&str, &str) = ("metrics", "true");

/// Counts for `/api/v1/status` and the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoreCounts {
    /// Stored jobs.
    pub jobs: u64,
    /// Paused jobs.
    pub paused_jobs: u64,
    /// Runs waiting for a worker (including held ones).
    pub queued: u64,
    /// Runs executing.
    pub running: u64,
}

/// Exact row counts of the history tables, from [`Store::storage_rows`]: for diagnostics and
/// for checking that deleting history leaves nothing behind. Counting is a full scan on large
/// stores, so nothing polls it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StorageRows {
    /// Rows of run history.
    pub runs: u64,
    /// Stored output chunks, over every run.
    pub log_chunks: u64,
    /// Output chunks whose run no longer exists (always 0 in a consistent store).
    pub orphan_log_chunks: u64,
}

/// What [`Store::prune_runs`] may delete: run history beyond a count per job or an age.
///
/// A finished run (any state but `queued` and `running`) may go when it is beyond the newest
/// `keep_runs` finished runs of its job, **or** when it finished more than `keep_days` days
/// before `now`. Whatever the settings, these are never deleted: runs still `queued` or
/// `running` (including held runs and `async` runs waiting for their completion call), the
/// newest finished run of each job (the job's last result, shown by the API), and a parent's
/// run recorded in a child's dependency progress (the child's next dependency run names it in
/// `triggered_by`). Job counters (`success_count`, …) are never changed by deleting history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Retention {
    /// Keep this many newest finished runs per job (None: no count limit; 0 acts as 1, the
    /// newest finished run is always kept).
    pub keep_runs: Option<u32>,
    /// Delete finished runs that ended more than this many days ago (None: no age limit).
    pub keep_days: Option<u32>,
}

impl Retention {
    /// Whether any limit is set (otherwise everything is kept and pruning is a no-op).
    pub fn is_enabled(&self) -> bool {
        self.keep_runs.is_some() || self.keep_days.is_some()
    }

    /// Finished runs per job that are never deleted by the count limit (at least 1).
    pub fn keep_newest(&self) -> u32 {
        self.keep_runs.unwrap_or(1).max(1)
    }

    /// Runs that finished before this instant may be deleted (None: no age limit).
    pub fn cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        self.keep_days.map(|d| {
            now.checked_sub(jiff::SignedDuration::from_hours(i64::from(d) * 24))
                .unwrap_or(Timestamp::MIN)
        })
    }
}

/// Settings every backend honours.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Bound on each run's stored output; the tail is kept.
    pub max_log_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_log_bytes: 10 * 1024 * 1024,
        }
    }
}

/// The persistence interface of tempora. Implemented by `tempora-store-sqlite` (and later
/// PostgreSQL). Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Check the database answers.
    async fn ping(&self) -> StoreResult<()>;

    // ---- cluster ----

    /// Try to become or stay the leader. The holder renews the lease for `ttl` (same epoch);
    /// once it has lapsed, any node takes it with `epoch + 1`. Returns the lease as it now
    /// stands: this node leads iff `lease.node == node`. PostgreSQL uses the database's clock,
    /// so nodes' clocks need not agree.
    async fn acquire_leadership(
        &self,
        node: &str,
        address: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease>;
    /// Give the lease up if `node` holds it with `epoch` (clean shutdown: another node can take
    /// over at once).
    async fn release_leadership(&self, node: &str, epoch: u64) -> StoreResult<()>;
    /// Record that `node`, serving the API at `address`, is alive, and its clock's offset to
    /// the store's (`None`: not measured).
    async fn node_heartbeat(
        &self,
        node: &str,
        address: &str,
        clock_offset: Option<SignedDuration>,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// The store's own clock where every node shares it (PostgreSQL's `clock_timestamp()`):
    /// the reference [`clock::now`] follows. `None` for a store one process owns (SQLite).
    async fn reference_time(&self) -> StoreResult<Option<Timestamp>>;
    /// The lease and the nodes seen.
    async fn cluster_view(&self, now: Timestamp) -> StoreResult<ClusterView>;
    /// Jobs written (created, replaced, paused, resumed) after `since`: how the leader learns of
    /// edits made through other nodes. Deleted jobs are not listed (their next fire is stale).
    async fn changed_jobs(&self, since: Timestamp) -> StoreResult<Vec<JobChange>>;

    // ---- jobs ----

    /// Validate and store a job, computing its first occurrence after `now` (or keeping the
    /// current cursor when schedule and zone are unchanged). Nothing is stored on error.
    async fn put_job(
        &self,
        spec: JobSpec,
        mode: PutMode,
        now: Timestamp,
    ) -> StoreResult<PutOutcome>;
    /// One job.
    async fn get_job(&self, name: &str) -> StoreResult<Option<JobRecord>>;
    /// Jobs ordered by name, after `after` (exclusive), at most `limit`.
    async fn list_jobs(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<JobRecord>>;
    /// Delete a job with its runs and output; running runs are asked to stop. False if absent.
    /// A job that other jobs depend on is refused ([`StoreError::Conflict`] naming them) unless
    /// `force`, in which case the children drop it from their parents.
    async fn delete_job(&self, name: &str, force: bool) -> StoreResult<bool>;
    /// Dependency edges `(parent, child)` of every job.
    async fn dependency_edges(&self) -> StoreResult<Vec<(String, String)>>;
    /// Pause or resume. Resuming recomputes the cursor from `now` (no backfill of the pause).
    async fn set_paused(&self, name: &str, paused: bool, now: Timestamp) -> StoreResult<JobRecord>;

    // ---- scheduler ----

    /// Unpaused jobs with a next occurrence, ordered by name, after `after` (exclusive), at most
    /// `limit` (the leader loads them page by page).
    async fn schedule_entries(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ScheduleEntry>>;
    /// Record due occurrences for many jobs in one transaction (exactly once per occurrence) and
    /// advance their cursors.
    /// With a `fence`, nothing is written unless the fence's node still holds the lease with
    /// its epoch ([`StoreError::Fenced`]).
    async fn fire(
        &self,
        requests: Vec<FireRequest>,
        now: Timestamp,
        fence: Option<&Fence>,
    ) -> StoreResult<Vec<FireOutcome>>;
    /// Trigger a run now (subject to the overlap policy unless `force`).
    async fn trigger_run(
        &self,
        job: &str,
        overrides: RunOverrides,
        force: bool,
        now: Timestamp,
    ) -> StoreResult<Run>;
    /// Create one run (trigger `backfill`, `scheduled_for` the occurrence) per occurrence of
    /// `occurrences` (oldest first) that has no run yet, in one transaction; they run one after
    /// another (`concurrency: queue` semantics). [`StoreError::JobNotFound`] for an unknown job.
    async fn backfill(
        &self,
        job: &str,
        occurrences: Vec<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<Backfilled>;

    // ---- workers ----

    /// Move up to `max` runnable queued runs to `running` for `worker`, with a lease. A worker
    /// without labels that runs every kind of job: [`Store::claim_runs_labeled`] with only the
    /// capability labels (jobs without a selector only).
    async fn claim_runs(
        &self,
        worker: &str,
        max: usize,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedRun>> {
        let labels =
            tempora_core::kind::claim_labels(&BTreeMap::new(), &tempora_core::kind::Kind::ALL);
        self.claim_runs_labeled(worker, &labels, max, now, lease)
            .await
    }
    /// Renew the leases of `worker`'s runs. Returns the ids among them that must stop
    /// (cancel requested, no longer this worker's, or deleted).
    async fn heartbeat(
        &self,
        worker: &str,
        run_ids: &[i64],
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Vec<i64>>;
    /// Append output to a running run (bounded: the oldest bytes are dropped).
    async fn append_log(&self, run_id: i64, data: Vec<u8>) -> StoreResult<()>;
    /// Record results (only for runs still `running` on `worker`), update counters, queue retries
    /// and release held runs, in one transaction.
    async fn finish_runs(&self, worker: &str, results: Vec<RunResult>) -> StoreResult<()>;
    /// The outcome of an `async` run, reported by the job itself (Chronos's completion call):
    /// `state` is `succeeded` or `failed`. If the process is still going, the outcome is kept
    /// and applied when it exits 0. Refused with `Conflict` once the run has ended.
    async fn complete_run(
        &self,
        run_id: i64,
        state: RunState,
        error: Option<String>,
        now: Timestamp,
    ) -> StoreResult<Run>;
    /// Record a success of `job` without running it (Chronos's `job/success/{name}`): a
    /// `succeeded` manual run, the counters, and the dependents' progress, as a real success.
    /// Returns the run.
    async fn mark_success(&self, job: &str, now: Timestamp) -> StoreResult<Run>;
    /// All `running` runs of `worker` become `lost` (then retried per policy). Used at startup
    /// for the previous incarnation of the local worker.
    async fn recover_worker(
        &self,
        worker: &str,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>>;
    /// Runs whose lease expired become `lost` (then retried per policy). Fenced like
    /// [`Store::fire`].
    async fn reap_expired(&self, now: Timestamp, fence: Option<&Fence>) -> StoreResult<Vec<i64>>;
    /// Cancel a run: a queued one ends `cancelled` at once, a running one is flagged for its
    /// worker. A finished run is a [`StoreError::Conflict`].
    async fn request_cancel(&self, run_id: i64, now: Timestamp) -> StoreResult<Run>;

    // ---- queries ----

    /// One run.
    async fn get_run(&self, id: i64) -> StoreResult<Option<Run>>;
    /// A job's runs, newest first, with ids below `before`, at most `limit`.
    async fn list_runs(&self, job: &str, before: Option<i64>, limit: u32) -> StoreResult<Vec<Run>>;
    /// Runs of every job matching `filter`, newest first, with ids below `before`, at most
    /// `limit`.
    async fn search_runs(
        &self,
        filter: &RunFilter,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Run>>;
    /// Output of a run from `offset`, at most `max` bytes. None if the run does not exist.
    async fn read_log(&self, run_id: i64, offset: u64, max: usize)
    -> StoreResult<Option<LogSlice>>;
    /// Counts for status and gauges.
    async fn counts(&self) -> StoreResult<StoreCounts>;
    /// Exact row counts of the history tables (a full scan: diagnostics and tests only).
    async fn storage_rows(&self) -> StoreResult<StorageRows>;
    /// Create or replace every job of `puts` (in that order: parents first) and delete every job
    /// of `deletes` (as `delete_job` with `force`), all in one transaction: either all of it is
    /// stored or, on any error, none of it.
    async fn apply_jobs(
        &self,
        puts: Vec<JobSpec>,
        deletes: Vec<String>,
        now: Timestamp,
    ) -> StoreResult<Vec<PutOutcome>>;
    /// The jobs labelled `metrics: "true"` ([`METRICS_LABEL`]), by name, at most `limit`, with
    /// their counters and newest ended run.
    async fn job_metrics(&self, limit: u32) -> StoreResult<Vec<JobMetrics>>;
    /// Queued runs a worker may claim now (not held, due), counted by their job's effective
    /// selector ([`JobSpec::effective_selector`]): what waits for which labels and capabilities.
    async fn queued_by_selector(
        &self,
        now: Timestamp,
    ) -> StoreResult<Vec<(BTreeMap<String, String>, u64)>>;

    // ---- backup ----

    /// Write a consistent copy of the whole store to a new file of the store's own choosing
    /// (beside the database, readable by the server's user only) and return its path; the
    /// caller reads it and deletes it. Writes go on meanwhile. One backup at a time
    /// ([`StoreError::Conflict`] while another runs). Backends whose database has its own
    /// backup tools (PostgreSQL: `pg_dump`) refuse with [`StoreError::Conflict`] saying so.
    async fn backup(&self) -> StoreResult<std::path::PathBuf> {
        Err(StoreError::Conflict(
            "this server's store is PostgreSQL: back it up with pg_dump (see the docs)".into(),
        ))
    }

    // ---- retention ----

    /// Delete at most `max_rows` finished runs that `policy` lets go ([`Retention`]: beyond the
    /// newest `keep_runs` of their job, or finished more than `keep_days` before `now`), with
    /// their output; returns how many were deleted. Job counters do not change.
    ///
    /// The deletion is one short transaction, so callers prune a large backlog in bounded
    /// batches without holding up scheduling writes. Jobs are visited in name order, resuming
    /// where the previous call stopped; a call that deletes fewer than `max_rows` has visited
    /// every job (call again while it returns `max_rows`). The runs to delete may be chosen from
    /// a snapshot read before the deleting transaction: every condition that makes a run
    /// deletable stays true once true (more finished runs only push a run further back, a finish
    /// time never changes, and only runs beyond the newest are ever deleted), and the deleting
    /// transaction checks again that the run is finished and not recorded in dependency
    /// progress.
    async fn prune_runs(
        &self,
        policy: &Retention,
        now: Timestamp,
        max_rows: u32,
    ) -> StoreResult<u64>;

    // ---- remote workers and selectors ----

    /// Whether [`Store::claim_runs_labeled`] with `labels` would find a run now — read-only,
    /// so a claim held open while there is no work polls without writing.
    async fn any_claimable(
        &self,
        labels: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Like [`Store::claim_runs`], for a worker with claim `labels` (its own labels and one
    /// reserved label per capability, [`WorkerInfo::claim_labels`]): only runs whose job's
    /// effective selector ([`JobSpec::effective_selector`]: its `selector` and its kind) is
    /// contained in `labels` are claimed (oldest first; a run the worker may not take never
    /// hides a claimable one behind it).
    async fn claim_runs_labeled(
        &self,
        worker: &str,
        labels: &BTreeMap<String, String>,
        max: usize,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedRun>>;
    /// Register a worker or refresh its entry (labels, slots, version, address), marking it seen
    /// at `now`.
    async fn upsert_worker(&self, info: WorkerInfo, now: Timestamp) -> StoreResult<()>;
    /// Registered workers ordered by id, with the number of runs each is running. Workers
    /// unseen for a while are kept (shown with their `last_seen`) until [`WORKER_FORGET_AFTER`].
    async fn list_workers(&self, now: Timestamp) -> StoreResult<Vec<WorkerStatus>>;
    /// The runs `running` on `worker` with a lease (not those waiting for an `async`
    /// completion), oldest first, with their specs: handed out again to a worker whose claim
    /// answer was lost, so no claimed run is left unexecuted.
    async fn worker_runs(&self, worker: &str) -> StoreResult<Vec<ClaimedRun>>;

    // ---- access control (see [`auth`]) ----

    /// Store a new token. An active token with the same name is a [`StoreError::Conflict`]
    /// (an expired one with that name is marked revoked first, freeing the name).
    async fn create_token(&self, token: NewToken) -> StoreResult<TokenRecord>;
    /// Store `token` only if no token was ever stored (first start of a data directory or
    /// cluster). False when there were tokens already, or another node stored its own at the
    /// same moment.
    async fn bootstrap_token(&self, token: NewToken) -> StoreResult<bool>;
    /// Store `token` unless a token with its hash exists (revoked or not: a revocation
    /// sticks). An active token with the same name is revoked first, so that a new token in an
    /// operator's file replaces the old one. True when it was stored.
    async fn ensure_token(&self, token: NewToken) -> StoreResult<bool>;
    /// The token with this hash, active or not.
    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenRecord>>;
    /// Every token, revoked ones included, oldest first.
    async fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>>;
    /// Revoke the active token with this id, or else with this name; it stops working at once
    /// on every node. [`StoreError::TokenNotFound`] when there is none.
    async fn revoke_token(&self, id_or_name: &str, now: Timestamp) -> StoreResult<TokenRecord>;
    /// Record that the token was used at `at`.
    async fn touch_token(&self, id: &str, at: Timestamp) -> StoreResult<()>;
    /// Bind worker id `worker` to token `token_id`: done when the id is unbound, already bound
    /// to this token, or bound to a token that no longer works at `now`. False when another
    /// working token holds the id.
    async fn bind_worker(&self, worker: &str, token_id: &str, now: Timestamp) -> StoreResult<bool>;
    /// The token a worker id is bound to.
    async fn worker_token(&self, worker: &str) -> StoreResult<Option<String>>;
    /// Append a change to the audit log.
    async fn append_audit(&self, entry: NewAudit) -> StoreResult<()>;
    /// Read the audit log, newest first.
    async fn list_audit(&self, query: AuditQuery) -> StoreResult<Vec<AuditEntry>>;
    /// Delete audit entries older than `before`, at most `max_rows`; returns how many went.
    async fn prune_audit(&self, before: Timestamp, max_rows: u32) -> StoreResult<u64>;

    // ---- notifications ----

    /// Claim up to `max` pending notifications due at `now`, oldest first and at most
    /// [`notify::PER_JOB_CLAIM`] of one job: each is held for
    /// `lease` (its `next_at` moves to `now + lease`), so a sender that dies leaves it to be
    /// claimed again, and two senders never hold the same one.
    async fn due_notifications(
        &self,
        now: Timestamp,
        max: u32,
        lease: Duration,
    ) -> StoreResult<Vec<notify::Notification>>;
    /// Append an attempt to notification `id` and move it on as `outcome` says.
    async fn record_notification(
        &self,
        id: i64,
        attempt: notify::NotificationAttempt,
        outcome: notify::AttemptOutcome,
    ) -> StoreResult<()>;
    /// The notifications of run `run_id`, oldest first.
    async fn run_notifications(&self, run_id: i64) -> StoreResult<Vec<notify::Notification>>;

    // ---- artifacts ----

    /// Store `data` as the artifact of digest `sha256` (the caller computed it); storing one
    /// that exists changes nothing. Returns what is stored.
    async fn put_artifact(
        &self,
        sha256: &str,
        data: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<artifacts::ArtifactInfo>;
    /// One artifact's size and upload time.
    async fn artifact_info(&self, sha256: &str) -> StoreResult<Option<artifacts::ArtifactInfo>>;
    /// The artifacts, newest first, at most `limit`.
    async fn list_artifacts(&self, limit: u32) -> StoreResult<Vec<artifacts::ArtifactInfo>>;
    /// An artifact's bytes.
    async fn read_artifact(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Delete an artifact: [`StoreError::Conflict`] naming the jobs that run it, if any (checked
    /// in the same transaction). False when there was none.
    async fn delete_artifact(&self, sha256: &str) -> StoreResult<bool>;
}

/// A worker as it registers ([`Store::upsert_worker`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerInfo {
    /// Worker id, as recorded on the runs it executes.
    pub id: String,
    /// Labels matched against job selectors.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The kinds of job it runs (`command`, `http`, `container`); a worker that does not say
    /// runs commands and HTTP requests.
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<tempora_core::kind::Kind>,
    /// Runs it executes at once.
    pub slots: u32,
    /// Its tempora version.
    #[serde(default)]
    pub version: String,
    /// Where it can be reached, if anywhere (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Its clock's offset to the server's, as it measured it (`None`: not measured yet).
    #[serde(default, rename = "clock_offset_ms", with = "clock::offset_ms")]
    #[schema(value_type = Option<f64>)]
    pub clock_offset: Option<SignedDuration>,
}

fn default_capabilities() -> Vec<tempora_core::kind::Kind> {
    vec![
        tempora_core::kind::Kind::Command,
        tempora_core::kind::Kind::Http,
    ]
}

impl WorkerInfo {
    /// The labels it claims with and that the registry stores: its own plus one reserved label
    /// per capability (see [`tempora_core::kind`]).
    pub fn claim_labels(&self) -> BTreeMap<String, String> {
        tempora_core::kind::claim_labels(&self.labels, &self.capabilities)
    }
}

/// A registered worker as listed by [`Store::list_workers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerStatus {
    /// What it registered.
    #[serde(flatten)]
    pub info: WorkerInfo,
    /// When it registered first.
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: Timestamp,
    /// When it was last heard from (registration, claim or heartbeat).
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: Timestamp,
    /// Runs in state `running` on it.
    pub running: u64,
    /// True when it was not heard from for [`WORKER_STALE_AFTER`].
    pub stale: bool,
}

/// A worker unseen this long is shown as stale by [`Store::list_workers`].
pub const WORKER_STALE_AFTER: Duration = Duration::from_secs(60);
/// A worker unseen this long (and running nothing) is dropped from the registry.
pub const WORKER_FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Bytes as a base64 string in JSON (a third bigger than the bytes, where an array of numbers
/// is up to four times bigger); an array of byte values is read too.
mod wire_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Text(String),
        Array(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Wire::deserialize(d)? {
            Wire::Text(t) => STANDARD
                .decode(t.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("log_tail: invalid base64: {e}"))),
            Wire::Array(a) => Ok(a),
        }
    }
}
