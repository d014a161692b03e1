//! `tempora-store-postgres`: the PostgreSQL implementation of [`tempora_store::Store`], for
//! several tempora nodes sharing one database.
//!
//! - The decisions are the shared scripts of `tempora_store::txn`; [`ops`] holds this backend's
//!   steps and queries, in files named as the SQLite store's.
//! - Every operation is one transaction (READ COMMITTED with explicit row locks; retried on a
//!   serialization failure or deadlock). A scheduled occurrence is unique per attempt
//!   (`ON CONFLICT DO NOTHING`), so two nodes firing it create one run; claims use
//!   `FOR UPDATE SKIP LOCKED`, so two workers never claim the same run.
//! - Migrations run at [`PostgresStore::connect`] under an advisory lock.
//! - Connections come from a small built-in pool; plain TCP (no TLS).

mod artifacts;
mod auth;
mod notify;
mod open;
mod ops;
mod pool;
mod rows;
mod schema;
pub mod tls;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use tempora_core::job::JobSpec;
use tempora_core::run::{Run, RunOverrides, RunState};
use tempora_store::{
    AuditEntry, AuditQuery, ClaimedRun, ClusterView, Fence, FireOutcome, FireRequest, JobChange,
    JobRecord, Lease, LogSlice, NewAudit, NewToken, PutMode, PutOutcome, Retention, RunFilter,
    RunResult, ScheduleEntry, Store, StoreCounts, StoreResult, TokenRecord, WorkerInfo,
    WorkerStatus,
};

use rows::{JOB_COLS, RUN_COLS, count, job_from_row, load_job, load_run, run_from_row};

pub use open::{ConnectError, DEFAULT_POOL_SIZE, PostgresStore};

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| {
            Box::pin(async move {
                c.query_one("SELECT 1", &[]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn put_job(
        &self,
        spec: JobSpec,
        mode: PutMode,
        now: Timestamp,
    ) -> StoreResult<PutOutcome> {
        // Validate before the transaction, so bad input never reaches the database.
        spec.validate()?;
        self.write(|c| Box::pin(ops::put_job(c, spec.clone(), mode, now)))
            .await
    }

    async fn apply_jobs(
        &self,
        puts: Vec<JobSpec>,
        deletes: Vec<String>,
        now: Timestamp,
    ) -> StoreResult<Vec<PutOutcome>> {
        for spec in &puts {
            spec.validate()?;
        }
        self.write(|c| {
            let (puts, deletes) = (puts.clone(), deletes.clone());
            Box::pin(async move {
                let mut out = Vec::with_capacity(puts.len());
                for spec in puts {
                    out.push(ops::put_job(c, spec, PutMode::Upsert, now).await?);
                }
                for name in &deletes {
                    ops::delete_job(c, name, true, now).await?;
                }
                Ok(out)
            })
        })
        .await
    }

    async fn get_job(&self, name: &str) -> StoreResult<Option<JobRecord>> {
        self.read(|c| {
            let name = name.to_owned();
            Box::pin(async move { load_job(c, &name).await })
        })
        .await
    }

    async fn list_jobs(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<JobRecord>> {
        let after = after.unwrap_or("").to_owned();
        self.read(|c| {
            let after = after.clone();
            Box::pin(async move {
                c.query(
                    &format!("SELECT {JOB_COLS} FROM jobs WHERE name > $1 ORDER BY name LIMIT $2"),
                    &[&after, &i64::from(limit)],
                )
                .await?
                .iter()
                .map(job_from_row)
                .collect()
            })
        })
        .await
    }

    async fn delete_job(&self, name: &str, force: bool) -> StoreResult<bool> {
        let now = Timestamp::now();
        self.write(|c| {
            let name = name.to_owned();
            Box::pin(async move { ops::delete_job(c, &name, force, now).await })
        })
        .await
    }

    async fn dependency_edges(&self) -> StoreResult<Vec<(String, String)>> {
        self.read(|c| {
            Box::pin(async move {
                c.query(
                    "SELECT parent, child FROM job_parents ORDER BY parent, child",
                    &[],
                )
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
            })
        })
        .await
    }

    async fn set_paused(&self, name: &str, paused: bool, now: Timestamp) -> StoreResult<JobRecord> {
        self.write(|c| {
            let name = name.to_owned();
            Box::pin(async move { ops::set_paused(c, &name, paused, now).await })
        })
        .await
    }

    async fn schedule_entries(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ScheduleEntry>> {
        // An empty name sorts before every job name; `name > $1` then seeks the primary key.
        let after = after.unwrap_or("").to_owned();
        self.read(|c| {
            let after = after.clone();
            Box::pin(async move {
                let limit = i64::from(limit);
                let rows = c
                    .query(
                        "SELECT name, version, next_fire_at, spec, created_at FROM jobs \
                         WHERE name > $1 AND NOT paused AND next_fire_at IS NOT NULL \
                         ORDER BY name LIMIT $2",
                        &[&after, &limit],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let spec: String = r.try_get(3)?;
                    out.push(ScheduleEntry {
                        name: r.try_get(0)?,
                        version: r.try_get(1)?,
                        next_fire_at: rows::ts(r.try_get(2)?),
                        spec: rows::parse_spec(&spec)?,
                        created_at: rows::ts(r.try_get(4)?),
                    });
                }
                Ok(out)
            })
        })
        .await
    }

    async fn fire(
        &self,
        requests: Vec<FireRequest>,
        now: Timestamp,
        fence: Option<&Fence>,
    ) -> StoreResult<Vec<FireOutcome>> {
        self.write(|c| {
            let (requests, fence) = (requests.clone(), fence.cloned());
            Box::pin(async move {
                ops::check_fence(c, fence.as_ref()).await?;
                ops::fire(c, requests, now).await
            })
        })
        .await
    }

    async fn trigger_run(
        &self,
        job: &str,
        overrides: RunOverrides,
        force: bool,
        now: Timestamp,
    ) -> StoreResult<Run> {
        self.write(|c| {
            let job = job.to_owned();
            let overrides = overrides.clone();
            Box::pin(async move { ops::trigger_run(c, &job, overrides, force, now).await })
        })
        .await
    }

    async fn backfill(
        &self,
        job: &str,
        occurrences: Vec<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<tempora_store::Backfilled> {
        self.write(|c| {
            let job = job.to_owned();
            let occurrences = occurrences.clone();
            Box::pin(async move { ops::backfill(c, &job, &occurrences, now).await })
        })
        .await
    }

    async fn heartbeat(
        &self,
        worker: &str,
        run_ids: &[i64],
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Vec<i64>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|c| {
            let worker = worker.to_owned();
            let ids = run_ids.to_vec();
            Box::pin(async move { ops::heartbeat(c, &worker, &ids, now, lease).await })
        })
        .await
    }

    async fn append_log(&self, run_id: i64, data: Vec<u8>) -> StoreResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let max = self.options.max_log_bytes;
        let data = std::sync::Arc::new(data);
        self.write(|c| {
            let data = data.clone();
            Box::pin(async move { ops::append_log(c, run_id, &data, max).await })
        })
        .await
    }

    async fn finish_runs(&self, worker: &str, results: Vec<RunResult>) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        let max = self.options.max_log_bytes;
        let now = Timestamp::now();
        self.write(|c| {
            let worker = worker.to_owned();
            let results = results.clone();
            Box::pin(async move { ops::finish_runs(c, &worker, results, max, now).await })
        })
        .await
    }

    async fn complete_run(
        &self,
        run_id: i64,
        state: RunState,
        error: Option<String>,
        now: Timestamp,
    ) -> StoreResult<Run> {
        self.write(|c| {
            let error = error.clone();
            Box::pin(
                async move { ops::complete_run(c, run_id, state, error.as_deref(), now).await },
            )
        })
        .await
    }

    async fn mark_success(&self, job: &str, now: Timestamp) -> StoreResult<Run> {
        self.write(|c| {
            let job = job.to_owned();
            Box::pin(async move { ops::mark_success(c, &job, now).await })
        })
        .await
    }

    async fn recover_worker(
        &self,
        worker: &str,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        self.write(|c| {
            let worker = worker.to_owned();
            let reason = reason.to_owned();
            Box::pin(async move { ops::recover_worker(c, &worker, &reason, now).await })
        })
        .await
    }

    async fn reap_expired(&self, now: Timestamp, fence: Option<&Fence>) -> StoreResult<Vec<i64>> {
        self.write(|c| {
            let fence = fence.cloned();
            Box::pin(async move {
                ops::check_fence(c, fence.as_ref()).await?;
                ops::reap_expired(c, now).await
            })
        })
        .await
    }

    async fn acquire_leadership(
        &self,
        node: &str,
        address: &str,
        ttl: Duration,
        _now: Timestamp,
    ) -> StoreResult<Lease> {
        self.write(|c| {
            let (node, address) = (node.to_owned(), address.to_owned());
            Box::pin(async move { ops::acquire_leadership(c, &node, &address, ttl).await })
        })
        .await
    }

    async fn release_leadership(&self, node: &str, epoch: u64) -> StoreResult<()> {
        self.write(|c| {
            let node = node.to_owned();
            Box::pin(async move { ops::release_leadership(c, &node, epoch).await })
        })
        .await
    }

    async fn node_heartbeat(
        &self,
        node: &str,
        address: &str,
        clock_offset: Option<SignedDuration>,
        _now: Timestamp,
    ) -> StoreResult<()> {
        self.write(|c| {
            let (node, address) = (node.to_owned(), address.to_owned());
            Box::pin(async move { ops::node_heartbeat(c, &node, &address, clock_offset).await })
        })
        .await
    }

    async fn reference_time(&self) -> StoreResult<Option<Timestamp>> {
        self.read(|c| Box::pin(async move { ops::reference_time(c).await.map(Some) }))
            .await
    }

    async fn cluster_view(&self, _now: Timestamp) -> StoreResult<ClusterView> {
        self.read(|c| Box::pin(ops::cluster_view(c))).await
    }

    async fn changed_jobs(&self, since: Timestamp) -> StoreResult<Vec<JobChange>> {
        self.read(|c| Box::pin(ops::changed_jobs(c, since))).await
    }

    async fn request_cancel(&self, run_id: i64, now: Timestamp) -> StoreResult<Run> {
        self.write(|c| Box::pin(ops::request_cancel(c, run_id, now)))
            .await
    }

    async fn get_run(&self, id: i64) -> StoreResult<Option<Run>> {
        self.read(|c| Box::pin(load_run(c, id))).await
    }

    async fn list_runs(&self, job: &str, before: Option<i64>, limit: u32) -> StoreResult<Vec<Run>> {
        let before = before.unwrap_or(i64::MAX);
        self.read(|c| {
            let job = job.to_owned();
            Box::pin(async move {
                c.query(
                    &format!(
                        "SELECT {RUN_COLS} FROM runs WHERE job = $1 AND id < $2 \
                         ORDER BY id DESC LIMIT $3"
                    ),
                    &[&job, &before, &i64::from(limit)],
                )
                .await?
                .iter()
                .map(run_from_row)
                .collect()
            })
        })
        .await
    }

    async fn search_runs(
        &self,
        filter: &RunFilter,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Run>> {
        let before = before.unwrap_or(i64::MAX);
        self.read(|c| {
            let f = filter.clone();
            Box::pin(async move {
                let state = f.state.map(|s| s.as_str());
                let trigger = f.trigger.map(|t| t.as_str());
                c.query(
                    &format!(
                        "SELECT {RUN_COLS} FROM runs WHERE id < $1 \
                         AND ($2::text IS NULL OR job = $2) AND ($3::text IS NULL OR state = $3) \
                         AND ($4::text IS NULL OR trigger = $4) \
                         AND ($5::bigint IS NULL OR scheduled_for >= $5) \
                         AND ($6::bigint IS NULL OR scheduled_for < $6) ORDER BY id DESC LIMIT $7"
                    ),
                    &[
                        &before,
                        &f.job,
                        &state,
                        &trigger,
                        &f.since.map(tempora_store::micros::us),
                        &f.until.map(tempora_store::micros::us),
                        &i64::from(limit),
                    ],
                )
                .await?
                .iter()
                .map(run_from_row)
                .collect()
            })
        })
        .await
    }

    async fn read_log(
        &self,
        run_id: i64,
        offset: u64,
        max: usize,
    ) -> StoreResult<Option<LogSlice>> {
        self.read(|c| Box::pin(ops::read_log(c, run_id, offset, max)))
            .await
    }

    async fn prune_runs(
        &self,
        policy: &Retention,
        now: Timestamp,
        max_rows: u32,
    ) -> StoreResult<u64> {
        if !policy.is_enabled() || max_rows == 0 {
            return Ok(0);
        }
        let start = self.prune_next.lock().ok().and_then(|g| g.clone());
        let policy = *policy;
        // Choose in a read-only snapshot, delete in one short write transaction.
        let (ids, next) = self
            .read(|c| {
                let start = start.clone();
                Box::pin(async move {
                    ops::prune_candidates(c, &policy, now, max_rows, start.as_deref()).await
                })
            })
            .await?;
        if let Ok(mut g) = self.prune_next.lock() {
            *g = next;
        }
        if ids.is_empty() {
            return Ok(0);
        }
        self.write(|c| {
            let ids = ids.clone();
            Box::pin(async move { ops::delete_finished_runs(c, &ids).await })
        })
        .await
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        self.read(|c| {
            Box::pin(async move {
                let j = c
                    .query_one(
                        "SELECT COUNT(*), COUNT(*) FILTER (WHERE paused) FROM jobs",
                        &[],
                    )
                    .await?;
                let r = c
                    .query_one(
                        "SELECT COUNT(*) FILTER (WHERE state = 'queued'), \
                         COUNT(*) FILTER (WHERE state = 'running') \
                         FROM runs WHERE state IN ('queued', 'running')",
                        &[],
                    )
                    .await?;
                Ok(StoreCounts {
                    jobs: count(j.try_get(0)?),
                    paused_jobs: count(j.try_get(1)?),
                    queued: count(r.try_get(0)?),
                    running: count(r.try_get(1)?),
                })
            })
        })
        .await
    }

    async fn storage_rows(&self) -> StoreResult<tempora_store::StorageRows> {
        self.read(|c| {
            Box::pin(async move {
                let r = c
                    .query_one(
                        "SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM run_logs), \
                         (SELECT COUNT(*) FROM run_logs l WHERE NOT EXISTS \
                          (SELECT 1 FROM runs r WHERE r.id = l.run_id))",
                        &[],
                    )
                    .await?;
                Ok(tempora_store::StorageRows {
                    runs: count(r.try_get(0)?),
                    log_chunks: count(r.try_get(1)?),
                    orphan_log_chunks: count(r.try_get(2)?),
                })
            })
        })
        .await
    }

    async fn job_metrics(&self, limit: u32) -> StoreResult<Vec<tempora_store::JobMetrics>> {
        self.read(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT j.name, j.success_count, j.error_count, j.last_success_at, \
                         (SELECT r.state FROM runs r WHERE r.job = j.name AND r.state IN \
                          ('succeeded', 'failed', 'timed_out', 'cancelled', 'lost') \
                          ORDER BY r.id DESC LIMIT 1) \
                         FROM jobs j WHERE (j.spec::jsonb -> 'labels' ->> 'metrics') = 'true' \
                         ORDER BY j.name LIMIT $1",
                        &[&i64::from(limit)],
                    )
                    .await?;
                let mut out = Vec::new();
                for row in rows {
                    let state: Option<String> = row.try_get(4)?;
                    out.push(tempora_store::JobMetrics {
                        job: row.try_get(0)?,
                        succeeded: count(row.try_get(1)?),
                        failed: count(row.try_get(2)?),
                        last_success_at: row.try_get::<_, Option<i64>>(3)?.map(crate::rows::ts),
                        last_state: state.and_then(|s| s.parse().ok()),
                    });
                }
                Ok(out)
            })
        })
        .await
    }

    async fn queued_by_selector(
        &self,
        now: Timestamp,
    ) -> StoreResult<Vec<(BTreeMap<String, String>, u64)>> {
        self.read(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT COALESCE(j.selector, '{}'::jsonb)::text, COUNT(*) \
                         FROM runs r JOIN jobs j ON j.name = r.job \
                         WHERE r.state = 'queued' AND NOT r.hold AND r.not_before <= $1 \
                         GROUP BY 1",
                        &[&crate::rows::us(now)],
                    )
                    .await?;
                let mut out = Vec::new();
                for row in rows {
                    let selector: String = row.try_get(0)?;
                    let selector = serde_json::from_str(&selector).map_err(crate::rows::corrupt)?;
                    out.push((selector, count(row.try_get(1)?)));
                }
                Ok(out)
            })
        })
        .await
    }

    async fn any_claimable(
        &self,
        labels: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.read(|c| {
            let labels = labels.clone();
            Box::pin(async move { ops::any_claimable(c, &labels, now).await })
        })
        .await
    }

    async fn claim_runs_labeled(
        &self,
        worker: &str,
        labels: &BTreeMap<String, String>,
        max: usize,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedRun>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.write(|c| {
            let worker = worker.to_owned();
            let labels = labels.clone();
            Box::pin(async move { ops::claim_runs(c, &worker, &labels, max, now, lease).await })
        })
        .await
    }

    async fn upsert_worker(&self, info: WorkerInfo, now: Timestamp) -> StoreResult<()> {
        self.write(|c| {
            let info = info.clone();
            Box::pin(async move { ops::upsert_worker(c, &info, now).await })
        })
        .await
    }

    async fn list_workers(&self, now: Timestamp) -> StoreResult<Vec<WorkerStatus>> {
        self.read(|c| Box::pin(ops::list_workers(c, now))).await
    }

    async fn worker_runs(&self, worker: &str) -> StoreResult<Vec<ClaimedRun>> {
        self.read(|c| {
            let worker = worker.to_owned();
            Box::pin(async move { ops::worker_runs(c, &worker).await })
        })
        .await
    }

    async fn create_token(&self, token: NewToken) -> StoreResult<TokenRecord> {
        self.write(|c| {
            let t = token.clone();
            Box::pin(async move { auth::create_token(c, &t).await })
        })
        .await
    }

    async fn bootstrap_token(&self, token: NewToken) -> StoreResult<bool> {
        self.write(|c| {
            let t = token.clone();
            Box::pin(async move { auth::bootstrap_token(c, &t).await })
        })
        .await
    }

    async fn ensure_token(&self, token: NewToken) -> StoreResult<bool> {
        self.write(|c| {
            let t = token.clone();
            Box::pin(async move { auth::ensure_token(c, &t).await })
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        self.read(|c| {
            let h = hash.to_owned();
            Box::pin(async move { auth::token_by_hash(c, &h).await })
        })
        .await
    }

    async fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        self.read(|c| Box::pin(auth::list_tokens(c))).await
    }

    async fn revoke_token(&self, id_or_name: &str, now: Timestamp) -> StoreResult<TokenRecord> {
        self.write(|c| {
            let key = id_or_name.to_owned();
            Box::pin(async move { auth::revoke_token(c, &key, now).await })
        })
        .await
    }

    async fn touch_token(&self, id: &str, at: Timestamp) -> StoreResult<()> {
        self.write(|c| {
            let id = id.to_owned();
            Box::pin(async move { auth::touch_token(c, &id, at).await })
        })
        .await
    }

    async fn bind_worker(&self, worker: &str, token_id: &str, now: Timestamp) -> StoreResult<bool> {
        self.write(|c| {
            let (w, t) = (worker.to_owned(), token_id.to_owned());
            Box::pin(async move { auth::bind_worker(c, &w, &t, now).await })
        })
        .await
    }

    async fn worker_token(&self, worker: &str) -> StoreResult<Option<String>> {
        self.read(|c| {
            let w = worker.to_owned();
            Box::pin(async move { auth::worker_token(c, &w).await })
        })
        .await
    }

    async fn append_audit(&self, entry: NewAudit) -> StoreResult<()> {
        self.write(|c| {
            let e = entry.clone();
            Box::pin(async move { auth::append_audit(c, &e).await })
        })
        .await
    }

    async fn list_audit(&self, query: AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        self.read(|c| {
            let q = query.clone();
            Box::pin(async move { auth::list_audit(c, &q).await })
        })
        .await
    }

    async fn prune_audit(&self, before: Timestamp, max_rows: u32) -> StoreResult<u64> {
        self.write(|c| Box::pin(auth::prune_audit(c, before, max_rows)))
            .await
    }

    async fn due_notifications(
        &self,
        now: Timestamp,
        max: u32,
        lease: Duration,
    ) -> StoreResult<Vec<tempora_store::notify::Notification>> {
        self.write(|c| Box::pin(notify::due(c, now, max, lease)))
            .await
    }

    async fn record_notification(
        &self,
        id: i64,
        attempt: tempora_store::notify::NotificationAttempt,
        outcome: tempora_store::notify::AttemptOutcome,
    ) -> StoreResult<()> {
        self.write(|c| {
            let attempt = attempt.clone();
            Box::pin(async move { notify::record(c, id, &attempt, outcome).await })
        })
        .await
    }

    async fn run_notifications(
        &self,
        run_id: i64,
    ) -> StoreResult<Vec<tempora_store::notify::Notification>> {
        self.read(|c| Box::pin(notify::of_run(c, run_id))).await
    }

    async fn put_artifact(
        &self,
        sha256: &str,
        data: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<tempora_store::artifacts::ArtifactInfo> {
        self.write(|c| {
            let (sha, data) = (sha256.to_owned(), data.clone());
            Box::pin(async move { artifacts::put(c, &sha, &data, now).await })
        })
        .await
    }

    async fn artifact_info(
        &self,
        sha256: &str,
    ) -> StoreResult<Option<tempora_store::artifacts::ArtifactInfo>> {
        self.read(|c| {
            let sha = sha256.to_owned();
            Box::pin(async move { artifacts::info(c, &sha).await })
        })
        .await
    }

    async fn list_artifacts(
        &self,
        limit: u32,
    ) -> StoreResult<Vec<tempora_store::artifacts::ArtifactInfo>> {
        self.read(|c| Box::pin(artifacts::list(c, limit))).await
    }

    async fn read_artifact(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        self.read(|c| {
            let sha = sha256.to_owned();
            Box::pin(async move { artifacts::read(c, &sha).await })
        })
        .await
    }

    async fn delete_artifact(&self, sha256: &str) -> StoreResult<bool> {
        self.write(|c| {
            let sha = sha256.to_owned();
            Box::pin(async move { artifacts::delete(c, &sha).await })
        })
        .await
    }
}
