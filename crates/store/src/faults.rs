//! Failure points on the store's write path, for tests: [`Faulty`] wraps any [`Store`] and
//! makes the n-th write of a kind fail before anything is written, fail after it was committed
//! (the caller sees an error, as when a connection drops before the answer arrives), or hang
//! for a while before it is made (a stalled database, a process stopped past its lease).
//!
//! Reads pass through untouched. Because the wrapper sits on the trait, one set of failure
//! points serves every backend; the contract suite (`faults`) and the scheduler's tests use it
//! to check that fire, claim and finish stay exactly-once through such failures.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use tempora_core::job::JobSpec;
use tempora_core::run::{Run, RunOverrides, RunState};

use crate::{
    AuditEntry, AuditQuery, ClaimedRun, ClusterView, Fence, FireOutcome, FireRequest, JobChange,
    JobMetrics, JobRecord, Lease, LogSlice, NewAudit, NewToken, PutMode, PutOutcome, Retention,
    RunFilter, RunResult, ScheduleEntry, Store, StoreCounts, StoreError, StoreResult, TokenRecord,
    WorkerInfo, WorkerStatus,
};

/// A kind of write, counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Write {
    /// [`Store::fire`].
    Fire,
    /// [`Store::trigger_run`], [`Store::backfill`] and [`Store::mark_success`].
    Trigger,
    /// [`Store::claim_runs_labeled`] (and so [`Store::claim_runs`]).
    Claim,
    /// [`Store::heartbeat`].
    Heartbeat,
    /// [`Store::append_log`].
    AppendLog,
    /// [`Store::finish_runs`] and [`Store::complete_run`].
    Finish,
    /// [`Store::reap_expired`] and [`Store::recover_worker`].
    Reap,
    /// [`Store::request_cancel`].
    Cancel,
    /// Job definitions: [`Store::put_job`], [`Store::delete_job`], [`Store::set_paused`],
    /// [`Store::apply_jobs`].
    Job,
    /// The lease and node records: [`Store::acquire_leadership`],
    /// [`Store::release_leadership`], [`Store::node_heartbeat`].
    Lease,
    /// [`Store::upsert_worker`].
    Worker,
    /// [`Store::prune_runs`] and [`Store::prune_audit`].
    Prune,
    /// Tokens and the audit log.
    Auth,
    /// [`Store::due_notifications`] and [`Store::record_notification`].
    Notify,
}

/// What happens to a write at a failure point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing is written; the caller gets [`StoreError::Unavailable`].
    FailBefore,
    /// The write is made and committed; the caller gets [`StoreError::Unavailable`] instead of
    /// its answer.
    FailAfter,
    /// The write waits this long (tokio time, so a paused test clock controls it), then is made.
    Hang(Duration),
}

/// The failure points of a [`Faulty`] store: which write of which kind fails how, and how many
/// of each kind were made.
#[derive(Debug, Default)]
pub struct FailPoints {
    state: Mutex<Points>,
}

#[derive(Debug, Default)]
struct Points {
    /// Writes seen so far, by kind.
    seen: HashMap<Write, u64>,
    /// (kind, n-th write of that kind counted from the store's start, fault).
    planned: Vec<(Write, u64, Fault)>,
}

impl FailPoints {
    /// Make the `nth` write of `kind` (1-based, counted since the store was wrapped) fail with
    /// `fault`. Several points may be set for one kind.
    pub fn inject(&self, kind: Write, nth: u64, fault: Fault) {
        self.lock().planned.push((kind, nth, fault));
    }

    /// Make the next write of `kind` fail with `fault`.
    pub fn next(&self, kind: Write, fault: Fault) {
        let mut p = self.lock();
        let n = p.seen.get(&kind).copied().unwrap_or(0) + 1;
        p.planned.push((kind, n, fault));
    }

    /// How many writes of `kind` were attempted.
    pub fn count(&self, kind: Write) -> u64 {
        self.lock().seen.get(&kind).copied().unwrap_or(0)
    }

    /// Count a write of `kind` and return the fault planned for it, if any.
    fn hit(&self, kind: Write) -> (u64, Option<Fault>) {
        let mut p = self.lock();
        let n = {
            let seen = p.seen.entry(kind).or_insert(0);
            *seen += 1;
            *seen
        };
        let fault = p
            .planned
            .iter()
            .position(|(k, at, _)| *k == kind && *at == n)
            .map(|i| p.planned.swap_remove(i).2);
        (n, fault)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Points> {
        // The state stays consistent under a panic (plain counters), so a poisoned lock is used.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`Store`] with failure points on its writes (see the module docs).
pub struct Faulty {
    inner: Arc<dyn Store>,
    points: Arc<FailPoints>,
}

impl Faulty {
    /// Wrap `inner`; returns the store and its failure points.
    pub fn wrap(inner: Arc<dyn Store>) -> (Arc<dyn Store>, Arc<FailPoints>) {
        let points = Arc::new(FailPoints::default());
        let store = Arc::new(Self {
            inner,
            points: points.clone(),
        });
        (store, points)
    }

    async fn write<T>(
        &self,
        kind: Write,
        op: impl Future<Output = StoreResult<T>> + Send,
    ) -> StoreResult<T> {
        let (n, fault) = self.points.hit(kind);
        match fault {
            None => op.await,
            Some(Fault::FailBefore) => Err(StoreError::Unavailable(format!(
                "failure point: {kind:?} write #{n} failed before writing"
            ))),
            Some(Fault::FailAfter) => {
                op.await?;
                Err(StoreError::Unavailable(format!(
                    "failure point: {kind:?} write #{n} failed after writing"
                )))
            }
            Some(Fault::Hang(d)) => {
                tokio::time::sleep(d).await;
                op.await
            }
        }
    }
}

#[async_trait]
impl Store for Faulty {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn acquire_leadership(
        &self,
        node: &str,
        address: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease> {
        self.write(
            Write::Lease,
            self.inner.acquire_leadership(node, address, ttl, now),
        )
        .await
    }

    async fn release_leadership(&self, node: &str, epoch: u64) -> StoreResult<()> {
        self.write(Write::Lease, self.inner.release_leadership(node, epoch))
            .await
    }

    async fn node_heartbeat(
        &self,
        node: &str,
        address: &str,
        clock_offset: Option<SignedDuration>,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.write(
            Write::Lease,
            self.inner.node_heartbeat(node, address, clock_offset, now),
        )
        .await
    }

    async fn reference_time(&self) -> StoreResult<Option<Timestamp>> {
        self.inner.reference_time().await
    }

    async fn cluster_view(&self, now: Timestamp) -> StoreResult<ClusterView> {
        self.inner.cluster_view(now).await
    }

    async fn changed_jobs(&self, since: Timestamp) -> StoreResult<Vec<JobChange>> {
        self.inner.changed_jobs(since).await
    }

    async fn put_job(
        &self,
        spec: JobSpec,
        mode: PutMode,
        now: Timestamp,
    ) -> StoreResult<PutOutcome> {
        self.write(Write::Job, self.inner.put_job(spec, mode, now))
            .await
    }

    async fn get_job(&self, name: &str) -> StoreResult<Option<JobRecord>> {
        self.inner.get_job(name).await
    }

    async fn list_jobs(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<JobRecord>> {
        self.inner.list_jobs(after, limit).await
    }

    async fn delete_job(&self, name: &str, force: bool) -> StoreResult<bool> {
        self.write(Write::Job, self.inner.delete_job(name, force))
            .await
    }

    async fn dependency_edges(&self) -> StoreResult<Vec<(String, String)>> {
        self.inner.dependency_edges().await
    }

    async fn set_paused(&self, name: &str, paused: bool, now: Timestamp) -> StoreResult<JobRecord> {
        self.write(Write::Job, self.inner.set_paused(name, paused, now))
            .await
    }

    async fn schedule_entries(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ScheduleEntry>> {
        self.inner.schedule_entries(after, limit).await
    }

    async fn fire(
        &self,
        requests: Vec<FireRequest>,
        now: Timestamp,
        fence: Option<&Fence>,
    ) -> StoreResult<Vec<FireOutcome>> {
        self.write(Write::Fire, self.inner.fire(requests, now, fence))
            .await
    }

    async fn trigger_run(
        &self,
        job: &str,
        overrides: RunOverrides,
        force: bool,
        now: Timestamp,
    ) -> StoreResult<Run> {
        self.write(
            Write::Trigger,
            self.inner.trigger_run(job, overrides, force, now),
        )
        .await
    }

    async fn backfill(
        &self,
        job: &str,
        occurrences: Vec<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<crate::Backfilled> {
        self.write(Write::Trigger, self.inner.backfill(job, occurrences, now))
            .await
    }

    async fn heartbeat(
        &self,
        worker: &str,
        run_ids: &[i64],
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Vec<i64>> {
        self.write(
            Write::Heartbeat,
            self.inner.heartbeat(worker, run_ids, now, lease),
        )
        .await
    }

    async fn append_log(&self, run_id: i64, data: Vec<u8>) -> StoreResult<()> {
        self.write(Write::AppendLog, self.inner.append_log(run_id, data))
            .await
    }

    async fn finish_runs(&self, worker: &str, results: Vec<RunResult>) -> StoreResult<()> {
        self.write(Write::Finish, self.inner.finish_runs(worker, results))
            .await
    }

    async fn complete_run(
        &self,
        run_id: i64,
        state: RunState,
        error: Option<String>,
        now: Timestamp,
    ) -> StoreResult<Run> {
        self.write(
            Write::Finish,
            self.inner.complete_run(run_id, state, error, now),
        )
        .await
    }

    async fn mark_success(&self, job: &str, now: Timestamp) -> StoreResult<Run> {
        self.write(Write::Trigger, self.inner.mark_success(job, now))
            .await
    }

    async fn recover_worker(
        &self,
        worker: &str,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        self.write(Write::Reap, self.inner.recover_worker(worker, reason, now))
            .await
    }

    async fn reap_expired(&self, now: Timestamp, fence: Option<&Fence>) -> StoreResult<Vec<i64>> {
        self.write(Write::Reap, self.inner.reap_expired(now, fence))
            .await
    }

    async fn request_cancel(&self, run_id: i64, now: Timestamp) -> StoreResult<Run> {
        self.write(Write::Cancel, self.inner.request_cancel(run_id, now))
            .await
    }

    async fn get_run(&self, id: i64) -> StoreResult<Option<Run>> {
        self.inner.get_run(id).await
    }

    async fn list_runs(&self, job: &str, before: Option<i64>, limit: u32) -> StoreResult<Vec<Run>> {
        self.inner.list_runs(job, before, limit).await
    }

    async fn search_runs(
        &self,
        filter: &RunFilter,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Run>> {
        self.inner.search_runs(filter, before, limit).await
    }

    async fn read_log(
        &self,
        run_id: i64,
        offset: u64,
        max: usize,
    ) -> StoreResult<Option<LogSlice>> {
        self.inner.read_log(run_id, offset, max).await
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        self.inner.counts().await
    }

    async fn storage_rows(&self) -> StoreResult<crate::StorageRows> {
        self.inner.storage_rows().await
    }

    async fn apply_jobs(
        &self,
        puts: Vec<JobSpec>,
        deletes: Vec<String>,
        now: Timestamp,
    ) -> StoreResult<Vec<PutOutcome>> {
        self.write(Write::Job, self.inner.apply_jobs(puts, deletes, now))
            .await
    }

    async fn job_metrics(&self, limit: u32) -> StoreResult<Vec<JobMetrics>> {
        self.inner.job_metrics(limit).await
    }

    async fn queued_by_selector(
        &self,
        now: Timestamp,
    ) -> StoreResult<Vec<(BTreeMap<String, String>, u64)>> {
        self.inner.queued_by_selector(now).await
    }

    async fn backup(&self) -> StoreResult<std::path::PathBuf> {
        self.inner.backup().await
    }

    async fn prune_runs(
        &self,
        policy: &Retention,
        now: Timestamp,
        max_rows: u32,
    ) -> StoreResult<u64> {
        self.write(Write::Prune, self.inner.prune_runs(policy, now, max_rows))
            .await
    }

    async fn any_claimable(
        &self,
        labels: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.inner.any_claimable(labels, now).await
    }

    async fn claim_runs_labeled(
        &self,
        worker: &str,
        labels: &BTreeMap<String, String>,
        max: usize,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedRun>> {
        self.write(
            Write::Claim,
            self.inner
                .claim_runs_labeled(worker, labels, max, now, lease),
        )
        .await
    }

    async fn upsert_worker(&self, info: WorkerInfo, now: Timestamp) -> StoreResult<()> {
        self.write(Write::Worker, self.inner.upsert_worker(info, now))
            .await
    }

    async fn list_workers(&self, now: Timestamp) -> StoreResult<Vec<WorkerStatus>> {
        self.inner.list_workers(now).await
    }

    async fn worker_runs(&self, worker: &str) -> StoreResult<Vec<ClaimedRun>> {
        self.inner.worker_runs(worker).await
    }

    async fn create_token(&self, token: NewToken) -> StoreResult<TokenRecord> {
        self.write(Write::Auth, self.inner.create_token(token))
            .await
    }

    async fn bootstrap_token(&self, token: NewToken) -> StoreResult<bool> {
        self.write(Write::Auth, self.inner.bootstrap_token(token))
            .await
    }

    async fn ensure_token(&self, token: NewToken) -> StoreResult<bool> {
        self.write(Write::Auth, self.inner.ensure_token(token))
            .await
    }

    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        self.inner.token_by_hash(hash).await
    }

    async fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        self.inner.list_tokens().await
    }

    async fn revoke_token(&self, id_or_name: &str, now: Timestamp) -> StoreResult<TokenRecord> {
        self.write(Write::Auth, self.inner.revoke_token(id_or_name, now))
            .await
    }

    async fn touch_token(&self, id: &str, at: Timestamp) -> StoreResult<()> {
        self.write(Write::Auth, self.inner.touch_token(id, at))
            .await
    }

    async fn bind_worker(&self, worker: &str, token_id: &str, now: Timestamp) -> StoreResult<bool> {
        self.write(Write::Auth, self.inner.bind_worker(worker, token_id, now))
            .await
    }

    async fn worker_token(&self, worker: &str) -> StoreResult<Option<String>> {
        self.inner.worker_token(worker).await
    }

    async fn append_audit(&self, entry: NewAudit) -> StoreResult<()> {
        self.write(Write::Auth, self.inner.append_audit(entry))
            .await
    }

    async fn list_audit(&self, query: AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        self.inner.list_audit(query).await
    }

    async fn prune_audit(&self, before: Timestamp, max_rows: u32) -> StoreResult<u64> {
        self.write(Write::Prune, self.inner.prune_audit(before, max_rows))
            .await
    }

    async fn due_notifications(
        &self,
        now: Timestamp,
        max: u32,
        lease: Duration,
    ) -> StoreResult<Vec<crate::notify::Notification>> {
        self.write(Write::Notify, self.inner.due_notifications(now, max, lease))
            .await
    }

    async fn record_notification(
        &self,
        id: i64,
        attempt: crate::notify::NotificationAttempt,
        outcome: crate::notify::AttemptOutcome,
    ) -> StoreResult<()> {
        self.write(
            Write::Notify,
            self.inner.record_notification(id, attempt, outcome),
        )
        .await
    }

    async fn run_notifications(
        &self,
        run_id: i64,
    ) -> StoreResult<Vec<crate::notify::Notification>> {
        self.inner.run_notifications(run_id).await
    }

    async fn put_artifact(
        &self,
        sha256: &str,
        data: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<crate::artifacts::ArtifactInfo> {
        self.write(Write::Job, self.inner.put_artifact(sha256, data, now))
            .await
    }

    async fn artifact_info(
        &self,
        sha256: &str,
    ) -> StoreResult<Option<crate::artifacts::ArtifactInfo>> {
        self.inner.artifact_info(sha256).await
    }

    async fn list_artifacts(&self, limit: u32) -> StoreResult<Vec<crate::artifacts::ArtifactInfo>> {
        self.inner.list_artifacts(limit).await
    }

    async fn read_artifact(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.read_artifact(sha256).await
    }

    async fn delete_artifact(&self, sha256: &str) -> StoreResult<bool> {
        self.write(Write::Job, self.inner.delete_artifact(sha256))
            .await
    }
}
