//! The remote worker protocol under `/api/v1/workers` as it goes over the wire: what
//! `tempora worker` sends and what the server answers, and the limits the server holds requests
//! to. The server's handlers (`tempora_http::workers`) and the worker's client use these same
//! types.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tempora_core::job::JobSpec;
use tempora_core::run::Run;
use tempora_store::{ClaimedRun, RunResult, WorkerInfo, WorkerStatus};

/// Largest body of a worker request. Output goes in chunks of at most this; a result carries
/// at most [`MAX_LOG_TAIL`] of output (base64), and a worker splits a batch of results into
/// requests below this.
pub const MAX_WORKER_BODY: usize = 1024 * 1024;
/// Most output one result may carry (the worker keeps at most 512 KiB of unshipped output).
pub const MAX_LOG_TAIL: usize = 640 * 1024;
/// Most runs named in one claim (`held`), heartbeat or finish request: far more than a
/// worker's slots, far fewer than would make the request costly.
pub const MAX_LISTED_RUNS: usize = 10_000;
/// Longest a claim request is held waiting for work.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(30);

/// The header every worker-protocol answer carries: the server's time (RFC 3339, on the
/// database's clock in a cluster). A worker follows it, so the times it reports are the
/// cluster's whatever its own clock says.
pub const TIME_HEADER: &str = "tempora-time";

/// Answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisterResponse {
    /// The worker id, as recorded.
    pub worker: String,
    /// The node that answered.
    pub node: String,
    /// Lease of a claimed run: heartbeat well within it (milliseconds).
    pub lease_ttl_ms: u64,
    /// Suggested heartbeat interval (milliseconds).
    pub heartbeat_ms: u64,
}

/// A claim request: who claims (refreshes the registry too), how many runs, how long to wait.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimRequest {
    /// The claiming worker.
    pub worker: WorkerInfo,
    /// Most runs to hand out.
    pub max: usize,
    /// Hold the request up to this long while no run is available (milliseconds, capped).
    #[serde(default)]
    pub wait_ms: u64,
    /// Runs the worker holds (executing, or with a result not yet accepted). Runs the store
    /// has on this worker that are not listed here were claimed by a request whose answer was
    /// lost: they are handed out again.
    #[serde(default)]
    pub held: Vec<i64>,
}

/// A claimed run on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WireClaim {
    /// The run (state `running`, on this worker).
    pub run: Run,
    /// The job spec it runs under.
    pub spec: JobSpec,
    /// Lease expiry.
    #[schema(value_type = String, format = DateTime)]
    pub lease_expires_at: Timestamp,
}

impl From<ClaimedRun> for WireClaim {
    fn from(c: ClaimedRun) -> Self {
        Self {
            run: c.run,
            spec: c.spec,
            lease_expires_at: c.lease_expires_at,
        }
    }
}

impl From<WireClaim> for ClaimedRun {
    fn from(c: WireClaim) -> Self {
        Self {
            run: c.run,
            spec: c.spec,
            lease_expires_at: c.lease_expires_at,
        }
    }
}

/// Answer to a claim.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimResponse {
    /// Claimed runs, oldest first (empty when the wait ran out).
    pub runs: Vec<WireClaim>,
}

/// A heartbeat: the runs the worker is executing.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatRequest {
    /// The worker (refreshes the registry).
    pub worker: WorkerInfo,
    /// Run ids whose leases to renew.
    pub runs: Vec<i64>,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatResponse {
    /// Runs that must stop (cancelled, deleted, or not this worker's).
    pub stop: Vec<i64>,
}

/// A batch of results.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FinishRequest {
    /// The results.
    pub results: Vec<RunResult>,
}

/// Answer of `GET /api/v1/workers`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerList {
    /// Registered workers by id (stale ones included, marked `stale`).
    pub workers: Vec<WorkerStatus>,
}
