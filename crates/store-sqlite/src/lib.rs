//! `tempora-store-sqlite`: the embedded SQLite implementation of [`tempora_store::Store`].
//!
//! - One file in WAL mode with `synchronous=FULL` by default: every commit is on disk before
//!   its caller hears of it, so not even a power loss undoes a recorded fire or result
//!   (`NORMAL` is an opt-out: a process crash loses nothing, a power loss may lose the last
//!   commits).
//! - Writes go through one writer thread with group commit ([`writer`]); the claim query, the
//!   fire and the result path are in [`ops`].
//! - Reads use a small pool of read-only connections on blocking threads (WAL readers never
//!   block the writer).
//! - WAL checkpoints run on their own thread and connection ([`checkpointer`]), not in the
//!   writer's commits: a checkpoint after a large write (e.g. history retention deleting a
//!   batch of scattered runs) copies thousands of pages and syncs the file, which would
//!   otherwise hold up the fires and results committed behind it.

mod artifacts;
mod auth;
mod checkpointer;
mod notify;
mod open;
mod ops;
mod rows;
mod schema;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;
use tempora_core::job::JobSpec;
use tempora_core::run::{Run, RunOverrides, RunState};
use tempora_store::{
    AuditEntry, AuditQuery, ClaimedRun, ClusterView, Fence, FireOutcome, FireRequest, JobChange,
    JobRecord, Lease, LogSlice, NewAudit, NewToken, PutMode, PutOutcome, Retention, RunFilter,
    RunResult, ScheduleEntry, Store, StoreCounts, StoreError, StoreResult, TokenRecord, WorkerInfo,
    WorkerStatus,
};

use rows::{JOB_COLS, RUN_COLS, db, job_from_row, job_record, load_job, load_run, run_from_row};

pub use open::{DEFAULT_CACHE_MIB, OpenError, SqliteStore, SqliteTuning, Synchronous};

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db))
            .await
    }

    async fn acquire_leadership(
        &self,
        node: &str,
        address: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreResult<Lease> {
        let (node, address) = (node.to_owned(), address.to_owned());
        self.writer
            .write(move |c| ops::acquire_leadership(c, &node, &address, ttl, now))
            .await
    }

    async fn release_leadership(&self, node: &str, epoch: u64) -> StoreResult<()> {
        let node = node.to_owned();
        self.writer
            .write(move |c| ops::release_leadership(c, &node, epoch))
            .await
    }

    async fn node_heartbeat(
        &self,
        node: &str,
        address: &str,
        clock_offset: Option<SignedDuration>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (node, address) = (node.to_owned(), address.to_owned());
        self.writer
            .write(move |c| ops::node_heartbeat(c, &node, &address, clock_offset, now))
            .await
    }

    async fn reference_time(&self) -> StoreResult<Option<Timestamp>> {
        // One process owns the file: there is no clock to agree with.
        Ok(None)
    }

    async fn cluster_view(&self, now: Timestamp) -> StoreResult<ClusterView> {
        self.read(move |c| ops::cluster_view(c, now)).await
    }

    async fn changed_jobs(&self, since: Timestamp) -> StoreResult<Vec<JobChange>> {
        self.read(move |c| ops::changed_jobs(c, since)).await
    }

    async fn put_job(
        &self,
        spec: JobSpec,
        mode: PutMode,
        now: Timestamp,
    ) -> StoreResult<PutOutcome> {
        // Validate before queueing, so bad input never reaches the writer.
        spec.validate()?;
        self.writer
            .write(move |c| ops::put_job(c, spec, mode, now))
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
        // One writer operation: its savepoint is rolled back whole if any step fails.
        self.writer
            .write(move |c| {
                let mut out = Vec::with_capacity(puts.len());
                for spec in puts {
                    out.push(ops::put_job(c, spec, PutMode::Upsert, now)?);
                }
                for name in &deletes {
                    ops::delete_job(c, name, true, now)?;
                }
                Ok(out)
            })
            .await
    }

    async fn get_job(&self, name: &str) -> StoreResult<Option<JobRecord>> {
        let name = name.to_owned();
        self.read(move |c| load_job(c, &name)).await
    }

    async fn list_jobs(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<JobRecord>> {
        let after = after.unwrap_or("").to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE name > ?1 ORDER BY name LIMIT ?2"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(params![after, limit], job_from_row)
                .map_err(db)?;
            let mut out = Vec::new();
            for r in rows {
                let (spec, parts) = r.map_err(db)?;
                out.push(job_record(&spec, parts)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_job(&self, name: &str, force: bool) -> StoreResult<bool> {
        let name = name.to_owned();
        let now = tempora_store::clock::now();
        self.writer
            .write(move |c| ops::delete_job(c, &name, force, now))
            .await
    }

    async fn dependency_edges(&self) -> StoreResult<Vec<(String, String)>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT parent, child FROM job_parents ORDER BY parent, child")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
        .await
    }

    async fn set_paused(&self, name: &str, paused: bool, now: Timestamp) -> StoreResult<JobRecord> {
        let name = name.to_owned();
        self.writer
            .write(move |c| ops::set_paused(c, &name, paused, now))
            .await
    }

    async fn schedule_entries(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ScheduleEntry>> {
        // An empty name sorts before every job name; `name > ?1` then seeks the primary key
        // (an `?1 IS NULL OR …` condition would scan from the start on every page).
        let after = after.unwrap_or("").to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT name, version, next_fire_at, spec, created_at FROM jobs \
                     WHERE name > ?1 AND paused = 0 AND next_fire_at IS NOT NULL \
                     ORDER BY name LIMIT ?2",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(rusqlite::params![after, limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for r in rows {
                let (name, version, next, spec, created) = r.map_err(db)?;
                out.push(ScheduleEntry {
                    name,
                    version,
                    next_fire_at: rows::ts(next),
                    spec: rows::parse_spec(&spec)?,
                    created_at: rows::ts(created),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn fire(
        &self,
        requests: Vec<FireRequest>,
        now: Timestamp,
        fence: Option<&Fence>,
    ) -> StoreResult<Vec<FireOutcome>> {
        let fence = fence.cloned();
        self.writer
            .write(move |c| {
                ops::check_fence(c, fence.as_ref())?;
                ops::fire(c, requests, now)
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
        let job = job.to_owned();
        self.writer
            .write(move |c| ops::trigger_run(c, &job, overrides, force, now))
            .await
    }

    async fn backfill(
        &self,
        job: &str,
        occurrences: Vec<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<tempora_store::Backfilled> {
        let job = job.to_owned();
        self.writer
            .write(move |c| ops::backfill(c, &job, &occurrences, now))
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
        let worker = worker.to_owned();
        let ids = run_ids.to_vec();
        self.writer
            .write(move |c| ops::heartbeat(c, &worker, &ids, now, lease))
            .await
    }

    async fn append_log(&self, run_id: i64, data: Vec<u8>) -> StoreResult<()> {
        let max = self.options.max_log_bytes;
        self.writer
            .write(move |c| ops::append_log(c, run_id, &data, max))
            .await
    }

    async fn finish_runs(&self, worker: &str, results: Vec<RunResult>) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        let worker = worker.to_owned();
        let max = self.options.max_log_bytes;
        let now = tempora_store::clock::now();
        self.writer
            .write(move |c| ops::finish_runs(c, &worker, results, max, now))
            .await
    }

    async fn complete_run(
        &self,
        run_id: i64,
        state: RunState,
        error: Option<String>,
        now: Timestamp,
    ) -> StoreResult<Run> {
        self.writer
            .write(move |c| ops::complete_run(c, run_id, state, error.as_deref(), now))
            .await
    }

    async fn mark_success(&self, job: &str, now: Timestamp) -> StoreResult<Run> {
        let job = job.to_owned();
        self.writer
            .write(move |c| ops::mark_success(c, &job, now))
            .await
    }

    async fn recover_worker(
        &self,
        worker: &str,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        let worker = worker.to_owned();
        let reason = reason.to_owned();
        self.writer
            .write(move |c| ops::recover_worker(c, &worker, &reason, now))
            .await
    }

    async fn reap_expired(&self, now: Timestamp, fence: Option<&Fence>) -> StoreResult<Vec<i64>> {
        let fence = fence.cloned();
        self.writer
            .write(move |c| {
                ops::check_fence(c, fence.as_ref())?;
                ops::reap_expired(c, now)
            })
            .await
    }

    async fn request_cancel(&self, run_id: i64, now: Timestamp) -> StoreResult<Run> {
        self.writer
            .write(move |c| ops::request_cancel(c, run_id, now))
            .await
    }

    async fn get_run(&self, id: i64) -> StoreResult<Option<Run>> {
        self.read(move |c| load_run(c, id)).await
    }

    async fn list_runs(&self, job: &str, before: Option<i64>, limit: u32) -> StoreResult<Vec<Run>> {
        let job = job.to_owned();
        let before = before.unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {RUN_COLS} FROM runs WHERE job = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(params![job, before, limit], run_from_row)
                .map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
        .await
    }

    async fn search_runs(
        &self,
        filter: &RunFilter,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Run>> {
        let f = filter.clone();
        let before = before.unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {RUN_COLS} FROM runs WHERE id < ?1 \
                     AND (?2 IS NULL OR job = ?2) AND (?3 IS NULL OR state = ?3) \
                     AND (?4 IS NULL OR trigger = ?4) AND (?5 IS NULL OR scheduled_for >= ?5) \
                     AND (?6 IS NULL OR scheduled_for < ?6) ORDER BY id DESC LIMIT ?7"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    params![
                        before,
                        f.job,
                        f.state.map(|s| s.as_str()),
                        f.trigger.map(|t| t.as_str()),
                        f.since.map(tempora_store::micros::us),
                        f.until.map(tempora_store::micros::us),
                        limit
                    ],
                    run_from_row,
                )
                .map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
        .await
    }

    async fn read_log(
        &self,
        run_id: i64,
        offset: u64,
        max: usize,
    ) -> StoreResult<Option<LogSlice>> {
        self.read(move |c| ops::read_log(c, run_id, offset, max))
            .await
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        self.read(|c| {
            let (jobs, paused): (i64, i64) = c
                .query_row(
                    "SELECT total, paused FROM job_counts WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db)?;
            let (queued, running): (i64, i64) = c
                .query_row(
                    "SELECT COALESCE(SUM(state = 'queued'), 0), COALESCE(SUM(state = 'running'), 0) \
                     FROM runs WHERE state IN ('queued', 'running')",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db)?;
            Ok(StoreCounts {
                jobs: jobs.max(0) as u64,
                paused_jobs: paused.max(0) as u64,
                queued: queued.max(0) as u64,
                running: running.max(0) as u64,
            })
        })
        .await
    }

    async fn storage_rows(&self) -> StoreResult<tempora_store::StorageRows> {
        self.read(|c| {
            c.query_row(
                "SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM run_logs), \
                 (SELECT COUNT(*) FROM run_logs l WHERE NOT EXISTS \
                  (SELECT 1 FROM runs r WHERE r.id = l.run_id))",
                [],
                |r| {
                    let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                    Ok(tempora_store::StorageRows {
                        runs: n(0)?,
                        log_chunks: n(1)?,
                        orphan_log_chunks: n(2)?,
                    })
                },
            )
            .map_err(db)
        })
        .await
    }

    async fn job_metrics(&self, limit: u32) -> StoreResult<Vec<tempora_store::JobMetrics>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT j.name, j.success_count, j.error_count, j.last_success_at, \
                     (SELECT r.state FROM runs r WHERE r.job = j.name AND r.state IN \
                      ('succeeded', 'failed', 'timed_out', 'cancelled', 'lost') \
                      ORDER BY r.id DESC LIMIT 1) \
                     FROM jobs j WHERE json_extract(j.spec, '$.labels.metrics') = 'true' \
                     ORDER BY j.name LIMIT ?1",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([i64::from(limit)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (job, ok, failed, last_ok, state) = row.map_err(db)?;
                out.push(tempora_store::JobMetrics {
                    job,
                    succeeded: ok.max(0) as u64,
                    failed: failed.max(0) as u64,
                    last_success_at: last_ok.map(crate::rows::ts),
                    last_state: state.and_then(|s| s.parse().ok()),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn queued_by_selector(
        &self,
        now: Timestamp,
    ) -> StoreResult<Vec<(BTreeMap<String, String>, u64)>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT json_set(COALESCE(json_extract(j.spec, '$.selector'), '{{}}'), \
                         '$.\"' || {} || '\"', 'yes'), COUNT(*) \
                         FROM runs r JOIN jobs j ON j.name = r.job \
                         WHERE r.state = 'queued' AND r.hold = 0 AND r.not_before <= ?1 \
                         GROUP BY 1",
                    crate::ops::KIND_LABEL
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map([crate::rows::us(now)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (selector, n) = row.map_err(db)?;
                let selector = serde_json::from_str(&selector)
                    .map_err(|e| StoreError::Backend(format!("stored selector: {e}")))?;
                out.push((selector, n.max(0) as u64));
            }
            Ok(out)
        })
        .await
    }

    async fn backup(&self) -> StoreResult<PathBuf> {
        let Ok(guard) = self.backup_running.clone().try_lock_owned() else {
            return Err(StoreError::Conflict(
                "a backup is already being written; try again when it is done".into(),
            ));
        };
        let dir = self
            .readers
            .path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default();
        let dest = dir.join(format!(
            "backup-{}-{}.db",
            std::process::id(),
            tempora_store::clock::now().as_microsecond()
        ));
        let target = dest.clone();
        // VACUUM INTO on a reader: one read transaction, so the copy is one consistent
        // snapshot, and the writer goes on (WAL readers never block it).
        let r = self
            .read(move |c| {
                c.execute("VACUUM INTO ?1", [target.to_string_lossy().as_ref()])
                    .map_err(db)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| StoreError::Backend(format!("backup file: {e}")))
            })
            .await;
        drop(guard);
        if let Err(e) = r {
            let _ = std::fs::remove_file(&dest);
            return Err(e);
        }
        Ok(dest)
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
        // Choose on a reader (a snapshot; choosing can take a while over many jobs), delete in
        // one short write: the writer thread is held only for the deletion itself.
        let t = std::time::Instant::now();
        let (ids, next) = self
            .read(move |c| ops::prune_candidates(c, &policy, now, max_rows, start.as_deref()))
            .await?;
        let chosen = t.elapsed();
        if let Ok(mut g) = self.prune_next.lock() {
            *g = next;
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let candidates = ids.len();
        let t = std::time::Instant::now();
        let deleted = self
            .writer
            .write(move |c| {
                let t = std::time::Instant::now();
                let n = ops::delete_finished_runs(c, &ids)?;
                Ok((n, t.elapsed()))
            })
            .await;
        let (deleted, in_writer) = deleted?;
        tracing::debug!(
            message = "pruned a batch",
            candidates,
            deleted,
            choose_us = chosen.as_micros() as u64,
            delete_us = in_writer.as_micros() as u64,
            commit_wait_us = t.elapsed().as_micros() as u64,
        );
        Ok(deleted)
    }

    async fn any_claimable(
        &self,
        labels: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let labels = labels.clone();
        self.read(move |c| ops::any_claimable(c, &labels, now))
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
        let worker = worker.to_owned();
        let labels = labels.clone();
        self.writer
            .write(move |c| ops::claim_runs(c, &worker, &labels, max, now, lease))
            .await
    }

    async fn upsert_worker(&self, info: WorkerInfo, now: Timestamp) -> StoreResult<()> {
        self.writer
            .write(move |c| ops::upsert_worker(c, &info, now))
            .await
    }

    async fn list_workers(&self, now: Timestamp) -> StoreResult<Vec<WorkerStatus>> {
        self.read(move |c| ops::list_workers(c, now)).await
    }

    async fn worker_runs(&self, worker: &str) -> StoreResult<Vec<ClaimedRun>> {
        let worker = worker.to_owned();
        self.read(move |c| ops::worker_runs(c, &worker)).await
    }

    async fn create_token(&self, token: NewToken) -> StoreResult<TokenRecord> {
        self.writer
            .write(move |c| auth::create_token(c, &token))
            .await
    }

    async fn bootstrap_token(&self, token: NewToken) -> StoreResult<bool> {
        self.writer
            .write(move |c| auth::bootstrap_token(c, &token))
            .await
    }

    async fn ensure_token(&self, token: NewToken) -> StoreResult<bool> {
        self.writer
            .write(move |c| auth::ensure_token(c, &token))
            .await
    }

    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenRecord>> {
        let hash = hash.to_owned();
        self.read(move |c| auth::token_by_hash(c, &hash)).await
    }

    async fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        self.read(auth::list_tokens).await
    }

    async fn revoke_token(&self, id_or_name: &str, now: Timestamp) -> StoreResult<TokenRecord> {
        let key = id_or_name.to_owned();
        self.writer
            .write(move |c| auth::revoke_token(c, &key, now))
            .await
    }

    async fn touch_token(&self, id: &str, at: Timestamp) -> StoreResult<()> {
        let id = id.to_owned();
        self.writer
            .write(move |c| auth::touch_token(c, &id, at))
            .await
    }

    async fn bind_worker(&self, worker: &str, token_id: &str, now: Timestamp) -> StoreResult<bool> {
        let (worker, token_id) = (worker.to_owned(), token_id.to_owned());
        self.writer
            .write(move |c| auth::bind_worker(c, &worker, &token_id, now))
            .await
    }

    async fn worker_token(&self, worker: &str) -> StoreResult<Option<String>> {
        let worker = worker.to_owned();
        self.read(move |c| auth::worker_token(c, &worker)).await
    }

    async fn append_audit(&self, entry: NewAudit) -> StoreResult<()> {
        self.writer
            .write(move |c| auth::append_audit(c, &entry))
            .await
    }

    async fn list_audit(&self, query: AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        self.read(move |c| auth::list_audit(c, &query)).await
    }

    async fn prune_audit(&self, before: Timestamp, max_rows: u32) -> StoreResult<u64> {
        self.writer
            .write(move |c| auth::prune_audit(c, before, max_rows))
            .await
    }

    async fn due_notifications(
        &self,
        now: Timestamp,
        max: u32,
        lease: Duration,
    ) -> StoreResult<Vec<tempora_store::notify::Notification>> {
        self.writer
            .write(move |c| notify::due(c, now, max, lease))
            .await
    }

    async fn record_notification(
        &self,
        id: i64,
        attempt: tempora_store::notify::NotificationAttempt,
        outcome: tempora_store::notify::AttemptOutcome,
    ) -> StoreResult<()> {
        self.writer
            .write(move |c| notify::record(c, id, &attempt, outcome))
            .await
    }

    async fn run_notifications(
        &self,
        run_id: i64,
    ) -> StoreResult<Vec<tempora_store::notify::Notification>> {
        self.read(move |c| notify::of_run(c, run_id)).await
    }

    async fn put_artifact(
        &self,
        sha256: &str,
        data: Vec<u8>,
        now: Timestamp,
    ) -> StoreResult<tempora_store::artifacts::ArtifactInfo> {
        let sha = sha256.to_owned();
        self.writer
            .write(move |c| artifacts::put(c, &sha, &data, now))
            .await
    }

    async fn artifact_info(
        &self,
        sha256: &str,
    ) -> StoreResult<Option<tempora_store::artifacts::ArtifactInfo>> {
        let sha = sha256.to_owned();
        self.read(move |c| artifacts::info(c, &sha)).await
    }

    async fn list_artifacts(
        &self,
        limit: u32,
    ) -> StoreResult<Vec<tempora_store::artifacts::ArtifactInfo>> {
        self.read(move |c| artifacts::list(c, limit)).await
    }

    async fn read_artifact(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        let sha = sha256.to_owned();
        self.read(move |c| artifacts::read(c, &sha)).await
    }

    async fn delete_artifact(&self, sha256: &str) -> StoreResult<bool> {
        let sha = sha256.to_owned();
        self.writer.write(move |c| artifacts::delete(c, &sha)).await
    }
}
