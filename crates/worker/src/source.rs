//! Where a worker gets runs from and reports to.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tempora_core::secret::SecretKey;
use tempora_store::{ClaimedRun, RunResult, Store, StoreError, WorkerInfo};

/// Errors talking to the run source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport (e.g. HTTP to a server) failed.
    #[error("transport: {0}")]
    Transport(String),
}

/// The claim/lease interface of a worker. Implemented over the store (local pool) and, for
/// remote agents, over HTTP.
#[async_trait]
pub trait RunSource: Send + Sync + 'static {
    /// This worker's id, as recorded on the runs it executes.
    fn worker_id(&self) -> &str;
    /// Claim up to `max` runs.
    async fn claim(&self, max: usize) -> Result<Vec<ClaimedRun>, SourceError>;
    /// Renew the leases of these runs; returns those that must stop.
    async fn heartbeat(&self, run_ids: &[i64]) -> Result<Vec<i64>, SourceError>;
    /// Ship output of a running run.
    async fn append_log(&self, run_id: i64, data: Vec<u8>) -> Result<(), SourceError>;
    /// Report finished runs.
    async fn finish(&self, results: Vec<RunResult>) -> Result<(), SourceError>;
    /// The bytes of artifact `sha256` (None: no such artifact).
    async fn fetch_artifact(&self, sha256: &str) -> Result<Option<Vec<u8>>, SourceError>;
}

/// A run source backed directly by the store (the server's local pool).
pub struct StoreSource {
    store: Arc<dyn Store>,
    worker_id: String,
    lease: Duration,
    labels: BTreeMap<String, String>,
    /// The kinds of job it claims.
    capabilities: Vec<tempora_core::kind::Kind>,
    /// What to record in the worker registry, and when it was last recorded.
    registration: Option<(WorkerInfo, Mutex<Option<Instant>>)>,
    /// Opens the jobs' sealed secrets (None: a run with secrets fails, saying why).
    secret_key: Option<Arc<SecretKey>>,
}

/// How often a [`StoreSource`] with a registration refreshes it.
const REGISTRY_REFRESH: Duration = Duration::from_secs(10);

impl StoreSource {
    /// A source claiming as `worker_id` with leases of `lease`.
    pub fn new(store: Arc<dyn Store>, worker_id: String, lease: Duration) -> Self {
        Self {
            store,
            worker_id,
            lease,
            labels: BTreeMap::new(),
            capabilities: vec![
                tempora_core::kind::Kind::Command,
                tempora_core::kind::Kind::Http,
            ],
            registration: None,
            secret_key: None,
        }
    }

    /// Open the jobs' sealed secrets with this key.
    pub fn with_secret_key(mut self, key: Arc<SecretKey>) -> Self {
        self.secret_key = Some(key);
        self
    }

    /// Keep this worker's entry in the store's worker registry fresh (at most every 10 s, on
    /// claims), so the local pool is listed like remote workers. `info.id` should be this
    /// source's worker id.
    pub fn with_registration(mut self, info: WorkerInfo) -> Self {
        self.registration = Some((info, Mutex::new(None)));
        self
    }

    async fn refresh_registration(&self) {
        let Some((info, last)) = &self.registration else {
            return;
        };
        let due = last
            .lock()
            .map(|l| l.is_none_or(|t| t.elapsed() >= REGISTRY_REFRESH))
            .unwrap_or(false);
        if !due {
            return;
        }
        // The pool runs on this node's clock: its offset is the node's.
        let info = WorkerInfo {
            clock_offset: tempora_store::clock::offset(),
            ..info.clone()
        };
        match self
            .store
            .upsert_worker(info, tempora_store::clock::now())
            .await
        {
            Ok(()) => {
                if let Ok(mut l) = last.lock() {
                    *l = Some(Instant::now());
                }
            }
            Err(e) => tracing::warn!(message = "cannot refresh the worker registry", error = %e),
        }
    }

    /// Claim only runs whose job `selector` these labels satisfy (default: no labels, so only
    /// jobs without a selector).
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// Claim only runs of these kinds (default: commands and HTTP requests).
    pub fn with_capabilities(mut self, caps: Vec<tempora_core::kind::Kind>) -> Self {
        self.capabilities = caps;
        self
    }
}

#[async_trait]
impl RunSource for StoreSource {
    fn worker_id(&self) -> &str {
        &self.worker_id
    }

    async fn claim(&self, max: usize) -> Result<Vec<ClaimedRun>, SourceError> {
        self.refresh_registration().await;
        let runs = self
            .store
            .claim_runs_labeled(
                &self.worker_id,
                &tempora_core::kind::claim_labels(&self.labels, &self.capabilities),
                max,
                tempora_store::clock::now(),
                self.lease,
            )
            .await?;
        let (runs, failed) = tempora_store::secrets::open_secrets(self.secret_key.as_deref(), runs);
        if !failed.is_empty() {
            self.store.finish_runs(&self.worker_id, failed).await?;
        }
        Ok(runs)
    }

    async fn heartbeat(&self, run_ids: &[i64]) -> Result<Vec<i64>, SourceError> {
        Ok(self
            .store
            .heartbeat(
                &self.worker_id,
                run_ids,
                tempora_store::clock::now(),
                self.lease,
            )
            .await?)
    }

    async fn append_log(&self, run_id: i64, data: Vec<u8>) -> Result<(), SourceError> {
        Ok(self.store.append_log(run_id, data).await?)
    }

    async fn finish(&self, results: Vec<RunResult>) -> Result<(), SourceError> {
        Ok(self.store.finish_runs(&self.worker_id, results).await?)
    }

    async fn fetch_artifact(&self, sha256: &str) -> Result<Option<Vec<u8>>, SourceError> {
        Ok(self.store.read_artifact(sha256).await?)
    }
}
