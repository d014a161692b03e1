//! `tempora worker`: a remote worker agent. It claims runs from any of its `--server`s over
//! HTTP (long poll; no database credentials), executes them with the same pool and process
//! executor as a server's local workers, renews leases by heartbeat, ships output while a run
//! goes, and reports results — re-sending a result until a server accepts it. When a server is
//! unreachable it fails over to the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tempora_client::wire::{
    ClaimRequest, ClaimResponse, FinishRequest, HeartbeatRequest, HeartbeatResponse,
    RegisterResponse, TIME_HEADER,
};
use tempora_core::kind::Kind;
use tempora_store::{ClaimedRun, RunResult, WorkerInfo};
use tempora_worker::pool::{PoolConfig, WorkerPool};
use tempora_worker::source::{RunSource, SourceError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::server::{LogFormat, hostname, init_logging, parse_labels, wait_for_signal};

fn parse_duration(s: &str) -> Result<Duration, String> {
    tempora_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Flags of `tempora worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Base URL of a tempora server; repeat (or separate with commas) for fail-over.
    #[arg(
        long = "server",
        env = "TEMPORA_SERVER",
        value_delimiter = ',',
        required = true
    )]
    pub servers: Vec<String>,
    /// Runs executed at once (default: the number of CPUs).
    #[arg(long, env = "TEMPORA_WORKER_SLOTS")]
    pub slots: Option<usize>,
    /// Labels matched against job selectors, `k=v,k2=v2`.
    #[arg(long, env = "TEMPORA_WORKER_LABELS", default_value = "", value_parser = parse_labels)]
    pub labels: BTreeMap<String, String>,
    /// The kinds of job this worker runs: `auto` (default: commands and HTTP requests, and
    /// containers when the Docker engine at --docker-socket answers) or a list of `command`,
    /// `http`, `container` (e.g. `container` alone: a worker that runs nothing on its host).
    #[arg(long, env = "TEMPORA_WORKER_CAPABILITIES", default_value = "auto")]
    pub capabilities: String,
    /// The Docker engine's Unix socket, for container jobs.
    #[arg(long, env = "TEMPORA_DOCKER_SOCKET", default_value = tempora_worker::docker::DEFAULT_SOCKET)]
    pub docker_socket: String,
    /// Where artifacts (uploaded scripts and binaries) are kept between runs (default
    /// `/var/tmp/tempora-artifacts-<uid>`; made 0700, refused if others may write to it).
    #[arg(long, env = "TEMPORA_ARTIFACT_CACHE", value_name = "DIR")]
    pub artifact_cache: Option<std::path::PathBuf>,
    /// Most bytes the artifact cache keeps (least recently used ones go first).
    #[arg(long, env = "TEMPORA_ARTIFACT_CACHE_MAX", default_value_t = 1 << 30)]
    pub artifact_cache_max: u64,
    /// This worker's id, recorded on its runs (default: `<hostname>-<6 random hex digits>`).
    #[arg(long, env = "TEMPORA_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Between SIGTERM and SIGKILL when a run times out or is cancelled.
    #[arg(long, env = "TEMPORA_KILL_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub kill_grace: Duration,
    /// On SIGTERM/SIGINT, how long running runs may go on before they are killed (and reported
    /// lost).
    #[arg(long, env = "TEMPORA_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Log format.
    #[arg(long, env = "TEMPORA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The worker's token (role `worker`; `tempora token create --role worker`).
    #[arg(
        long,
        env = "TEMPORA_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the worker's token (mode 0600), read at start.
    #[arg(long, env = "TEMPORA_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// More variables of the worker's environment that runs inherit, besides PATH, HOME, LANG
    /// and TZ. Comma-separated.
    #[arg(long, env = "TEMPORA_PASS_ENV", value_delimiter = ',', value_name = "NAME", value_parser = crate::server::parse_pass_env)]
    pub pass_env: Vec<String>,
    /// How every process a run starts is ended with it: `auto` (a cgroup v2 per run where
    /// possible, else `sweep`), `cgroup` (refuse to start without), `sweep`.
    #[arg(long, env = "TEMPORA_CONTAINMENT", value_name = "auto|cgroup|sweep", default_value = "auto", value_parser = crate::server::parse_containment)]
    pub containment: tempora_worker::contain::Mode,
    /// TLS options for `https://` servers.
    #[command(flatten)]
    pub tls: crate::tls::ClientTls,
}

/// The worker's token from `--token` or `--token-file`.
fn worker_token(args: &WorkerArgs) -> Result<String, String> {
    if let Some(t) = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Ok(t.to_owned());
    }
    match &args.token_file {
        Some(f) => tempora_http::auth::bootstrap::read_token_file(f).map_err(|e| e.to_string()),
        None => Err(
            "a token is needed: --token-file FILE or --token (TEMPORA_TOKEN); make one with \
             `tempora token create --name NAME --role worker`"
                .into(),
        ),
    }
}

/// How long a claim request waits at the server for work. Short enough that a worker whose
/// server hangs (paused, overloaded) moves to another one within seconds.
const CLAIM_WAIT: Duration = Duration::from_secs(5);
/// Timeout of requests other than claims. A healthy server answers in milliseconds; one that
/// does not answer in this time is treated as away and the next `--server` is tried, so a
/// paused node cannot hold up heartbeats or results for longer (they are kept and re-sent).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A [`RunSource`] over the worker protocol of one or more servers (`/api/v1/workers`).
///
/// Requests go to the current server; on a transport failure or a 5xx answer the next server is
/// tried, round the list, and the one that answered becomes current. A run's output for a run
/// the server says this worker no longer holds is dropped (the run was cancelled, reaped or
/// deleted); results that cannot be delivered make `finish` fail, and the pool keeps and
/// re-sends them.
pub struct HttpSource {
    servers: Vec<String>,
    current: AtomicUsize,
    info: WorkerInfo,
    http: reqwest::Client,
    /// Runs handed to this worker whose result no server has accepted yet (sent with claims,
    /// so a server hands out again only runs whose claim answer was lost).
    held: Mutex<BTreeSet<i64>>,
}

/// Failure of one request to one server.
enum Attempt {
    /// Try the next server.
    Unreachable(String),
    /// The server answered with a refusal; other servers would answer the same.
    Refused(StatusCode, String),
}

impl HttpSource {
    /// A source for worker `info` talking to `servers` (base URLs).
    pub fn new(
        servers: Vec<String>,
        info: WorkerInfo,
        token: &str,
        tls: &crate::tls::ClientTls,
    ) -> Result<Self, String> {
        // `host:port` alone means `http://host:port`, as for the client commands.
        let servers: Vec<String> = servers
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| crate::client::server_base(&s))
            .collect();
        if servers.is_empty() {
            return Err("at least one --server is needed".into());
        }
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token has characters a header cannot carry".to_owned())?;
        auth.set_sensitive(true);
        let headers =
            reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, auth)]);
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .default_headers(headers);
        let http = tls.apply(builder)?.build().map_err(|e| {
            format!(
                "cannot create the HTTP client: {}",
                crate::client::causes(&e)
            )
        })?;
        // Workers start on different servers (by a hash of their id), spreading their requests
        // over the nodes.
        let first = info.id.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        }) % servers.len();
        Ok(Self {
            servers,
            current: AtomicUsize::new(first),
            info,
            http,
            held: Mutex::new(BTreeSet::new()),
        })
    }

    /// POST `body` (JSON, or raw bytes) to `path` (or GET it) on the current server, failing
    /// over.
    async fn post(
        &self,
        path: &str,
        body: Body<'_>,
        timeout: Duration,
    ) -> Result<reqwest::Response, Attempt> {
        let n = self.servers.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let url = format!("{}/api/v1/workers{path}", self.servers[idx]);
            let req = match &body {
                Body::Get => self.http.get(&url),
                _ => self.http.post(&url),
            }
            .timeout(timeout);
            let req = match &body {
                Body::Json(v) => req
                    .header("content-type", "application/json")
                    .body(v.clone()),
                Body::Raw(b) => req
                    .header("content-type", "application/octet-stream")
                    .body(b.to_vec()),
                Body::Get => req,
            };
            let sent = std::time::Instant::now();
            let answer = req.send().await;
            if let Ok(resp) = &answer {
                follow_server_clock(resp, sent);
            }
            // Every request and its outcome, for post-mortems of a worker that stalls.
            tracing::debug!(
                message = "worker request",
                url = %url,
                outcome = %answer.as_ref().map_or_else(|e| e.to_string(), |r| r.status().to_string()),
                ms = sent.elapsed().as_millis() as u64,
            );
            match answer {
                Ok(resp) if resp.status().is_server_error() => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    last = format!("{url}: {status} {text}");
                }
                Ok(resp) if !resp.status().is_success() => {
                    self.switch_to(start, idx);
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    return Err(Attempt::Refused(status, text));
                }
                Ok(resp) => {
                    self.switch_to(start, idx);
                    return Ok(resp);
                }
                Err(e) => last = format!("{url}: {}", crate::client::causes(&e)),
            }
            if n > 1 {
                tracing::warn!(message = "server unavailable; trying the next", error = %last);
            }
        }
        Err(Attempt::Unreachable(last))
    }

    fn switch_to(&self, was: usize, idx: usize) {
        if idx != was {
            tracing::info!(message = "now using server", server = %self.servers[idx]);
            self.current.store(idx, Ordering::Relaxed);
        }
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, SourceError> {
        let body = serde_json::to_vec(req)
            .map_err(|e| SourceError::Transport(format!("cannot encode request: {e}")))?;
        let resp = self
            .post(path, Body::Json(body), timeout)
            .await
            .map_err(attempt_error)?;
        resp.json::<Resp>()
            .await
            .map_err(|e| SourceError::Transport(format!("bad answer from server: {e}")))
    }

    /// Register with a server; returns its answer (lease TTL, heartbeat interval). `Err(true,
    /// …)`: refused for good (the token is not accepted, or the id is another token's).
    pub async fn register(&self) -> Result<RegisterResponse, (bool, String)> {
        let body = serde_json::to_vec(&self.info()).map_err(|e| (true, e.to_string()))?;
        match self
            .post("/register", Body::Json(body), REQUEST_TIMEOUT)
            .await
        {
            Ok(resp) => resp
                .json::<RegisterResponse>()
                .await
                .map_err(|e| (false, format!("bad answer from server: {e}"))),
            Err(Attempt::Refused(s, m))
                if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN =>
            {
                Err((true, format!("the server refused this worker ({s}): {m}")))
            }
            Err(a) => Err((false, attempt_error(a).to_string())),
        }
    }

    /// What this worker reports of itself, with its clock's offset to the servers' now
    /// (capped at the ±366 days the servers accept: a machine that booted without a real-time
    /// clock, say in 1970, still registers, runs, and shows the cap).
    fn info(&self) -> WorkerInfo {
        let max = tempora_store::clock::MAX_REPORTED_OFFSET;
        WorkerInfo {
            clock_offset: tempora_store::clock::offset().map(|o| o.clamp(-max, max)),
            ..self.info.clone()
        }
    }

    fn path_id(&self) -> String {
        tempora_client::encode_segment(&self.info.id)
    }
}

/// Longest request whose answer is taken as a reading of the server's clock. A held claim
/// (long poll) is stamped when it ends, up to 30 s after it was sent: the middle of that
/// window says nothing useful, so such answers are passed over (a claim answered at once
/// counts).
const MAX_CLOCK_SAMPLE_ROUND_TRIP: Duration = Duration::from_millis(500);

/// Take the server's time in an answer ([`TIME_HEADER`]) as a reading of the reference clock:
/// the runs' times this worker reports follow the cluster's clock, not its own.
fn follow_server_clock(resp: &reqwest::Response, sent: std::time::Instant) {
    let received = std::time::Instant::now();
    if received.duration_since(sent) > MAX_CLOCK_SAMPLE_ROUND_TRIP {
        return;
    }
    let Some(reference) = resp
        .headers()
        .get(TIME_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<jiff::Timestamp>().ok())
    else {
        return;
    };
    tempora_store::clock::observe(tempora_core::clock::Sample {
        sent,
        received,
        reference,
    });
}

enum Body<'a> {
    Json(Vec<u8>),
    Raw(&'a [u8]),
    /// A GET (no body).
    Get,
}

fn attempt_error(a: Attempt) -> SourceError {
    match a {
        Attempt::Unreachable(m) => SourceError::Transport(format!("no server reachable: {m}")),
        Attempt::Refused(s, m) => SourceError::Transport(format!("server refused ({s}): {m}")),
    }
}

#[async_trait]
impl RunSource for HttpSource {
    fn worker_id(&self) -> &str {
        &self.info.id
    }

    async fn claim(&self, max: usize) -> Result<Vec<ClaimedRun>, SourceError> {
        let held: Vec<i64> = self
            .held
            .lock()
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        let req = ClaimRequest {
            worker: self.info(),
            max,
            wait_ms: CLAIM_WAIT.as_millis() as u64,
            held,
        };
        let resp: ClaimResponse = self
            .call(
                &format!("/{}/claim", self.path_id()),
                &req,
                CLAIM_WAIT + REQUEST_TIMEOUT,
            )
            .await?;
        if let Ok(mut h) = self.held.lock() {
            h.extend(resp.runs.iter().map(|c| c.run.id));
        }
        Ok(resp.runs.into_iter().map(ClaimedRun::from).collect())
    }

    async fn heartbeat(&self, run_ids: &[i64]) -> Result<Vec<i64>, SourceError> {
        let req = HeartbeatRequest {
            worker: self.info(),
            runs: run_ids.to_vec(),
        };
        let resp: HeartbeatResponse = self
            .call(
                &format!("/{}/heartbeat", self.path_id()),
                &req,
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(resp.stop)
    }

    async fn append_log(&self, run_id: i64, data: Vec<u8>) -> Result<(), SourceError> {
        let path = format!("/{}/runs/{run_id}/log", self.path_id());
        match self.post(&path, Body::Raw(&data), REQUEST_TIMEOUT).await {
            Ok(_) => Ok(()),
            // Not ours any more (cancelled, reaped, deleted): the output has nowhere to go.
            Err(Attempt::Refused(StatusCode::CONFLICT | StatusCode::NOT_FOUND, _)) => Ok(()),
            Err(a) => Err(attempt_error(a)),
        }
    }

    async fn fetch_artifact(&self, sha256: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let path = format!("/{}/artifacts/{sha256}", self.path_id());
        match self.post(&path, Body::Get, REQUEST_TIMEOUT * 10).await {
            Ok(resp) => resp
                .bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|e| SourceError::Transport(format!("artifact download: {e}"))),
            Err(Attempt::Refused(StatusCode::NOT_FOUND, _)) => Ok(None),
            Err(a) => Err(attempt_error(a)),
        }
    }

    async fn finish(&self, results: Vec<RunResult>) -> Result<(), SourceError> {
        // Servers take bodies up to 1 MiB: send the results in requests below that. A batch
        // that fails part-way is re-sent whole; the server ignores results it already has.
        for part in finish_requests(results) {
            let ids: Vec<i64> = part.iter().map(|r| r.run_id).collect();
            let body = serde_json::to_vec(&FinishRequest { results: part })
                .map_err(|e| SourceError::Transport(format!("cannot encode results: {e}")))?;
            self.post(
                &format!("/{}/finish", self.path_id()),
                Body::Json(body),
                REQUEST_TIMEOUT * 2,
            )
            .await
            .map_err(attempt_error)?;
            if let Ok(mut h) = self.held.lock() {
                for id in ids {
                    h.remove(&id);
                }
            }
        }
        Ok(())
    }
}

/// Encoded size one finish request stays below (the server's limit is 1 MiB).
const FINISH_BODY_TARGET: usize = 768 * 1024;

/// Split results into finish requests whose bodies stay below [`FINISH_BODY_TARGET`] (each
/// result's output tail is at most 512 KiB, 683 KiB in base64, so one always fits) and name
/// at most 1,000 runs.
fn finish_requests(results: Vec<RunResult>) -> Vec<Vec<RunResult>> {
    let mut parts: Vec<Vec<RunResult>> = Vec::new();
    let mut size = 0usize;
    for r in results {
        let cost = r.log_tail.len().div_ceil(3) * 4 + r.error.as_ref().map_or(0, String::len) + 512;
        match parts.last_mut() {
            Some(p) if p.len() < 1_000 && size + cost <= FINISH_BODY_TARGET => {
                size += cost;
                p.push(r);
            }
            _ => {
                size = cost;
                parts.push(vec![r]);
            }
        }
    }
    parts
}

fn default_worker_id() -> String {
    format!("{}-{}", hostname(), tempora_worker::process::random_hex(3))
}

/// Entry point of `tempora worker`.
pub fn main(args: WorkerArgs) -> ExitCode {
    init_logging(args.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tempora-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(work(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(message = "worker failed", error = %e);
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The kinds of job a worker (or a server's local pool) runs, from `--capabilities`
/// (`auto` or a list), and the Docker engine when it runs containers. `auto` enables containers
/// when the engine answers; naming `container` requires that it does. Containers a previous
/// life of worker `worker` left behind are removed.
pub(crate) async fn capabilities(
    spec: &str,
    socket: &str,
    worker: &str,
) -> Result<(Vec<Kind>, Option<tempora_worker::docker::Engine>), String> {
    let auto = spec.trim() == "auto";
    let mut caps = if auto {
        vec![Kind::Command, Kind::Http, Kind::Container]
    } else {
        tempora_core::kind::parse_capabilities(spec).map_err(|e| format!("--capabilities: {e}"))?
    };
    if caps.is_empty() {
        return Err("--capabilities: name at least one of command, http, container".into());
    }
    let mut engine = None;
    if caps.contains(&Kind::Container) {
        match tempora_worker::docker::Engine::connect(socket).await {
            Ok(e) => {
                e.sweep(worker).await;
                engine = Some(e);
            }
            Err(e) if auto => {
                tracing::info!(message = "container jobs disabled: no Docker engine", reason = %e);
                caps.retain(|k| *k != Kind::Container);
            }
            Err(e) => return Err(format!("--capabilities container: {e}")),
        }
    }
    Ok((caps, engine))
}

async fn work(args: WorkerArgs) -> Result<(), String> {
    let slots = args
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if slots == 0 {
        return Err("--slots must be at least 1".into());
    }
    let id = args.worker_id.clone().unwrap_or_else(default_worker_id);
    let (capabilities, engine) = capabilities(&args.capabilities, &args.docker_socket, &id).await?;
    let info = WorkerInfo {
        id: id.clone(),
        labels: args.labels.clone(),
        capabilities: capabilities.clone(),
        slots: u32::try_from(slots).unwrap_or(u32::MAX),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        address: Some(hostname()),
        clock_offset: None,
    };
    let cache_dir = args.artifact_cache.clone().unwrap_or_else(|| {
        std::path::PathBuf::from(format!(
            "/var/tmp/tempora-artifacts-{}",
            nix::unistd::geteuid().as_raw()
        ))
    });
    let artifacts =
        tempora_worker::artifacts::ArtifactCache::new(&cache_dir, args.artifact_cache_max)?;
    let token = worker_token(&args)?;
    let source = Arc::new(HttpSource::new(
        args.servers.clone(),
        info,
        &token,
        &args.tls,
    )?);
    if let Err(e) = tempora_worker::contain::init(args.containment) {
        return Err(format!("--containment cgroup: no usable cgroup v2: {e}"));
    }
    if let Err(e) = tempora_worker::process::start_group_watchdog() {
        tracing::warn!(message = "cannot start the process-group watchdog", error = %e);
    }

    tokio::spawn(crate::server::sighup_reloads_nothing(
        "a worker reads its certificates at start",
    ));
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(message = "shutting down: no new runs are claimed");
        signals.cancel();
        // A second signal: leave now, whatever is still going.
        wait_for_signal().await;
        tracing::warn!(message = "second signal: exiting at once");
        std::process::exit(1);
    });

    // Register (retrying until a server answers) to learn the lease to heartbeat within.
    let registered = loop {
        match source.register().await {
            Ok(r) => break r,
            Err((true, e)) => return Err(e),
            Err((false, e)) => {
                tracing::warn!(message = "cannot register; retrying", error = %e);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let heartbeat = Duration::from_millis(registered.heartbeat_ms.max(100));
    tracing::info!(
        message = "tempora worker started",
        worker = %id,
        node = %registered.node,
        slots,
        labels = ?args.labels,
        capabilities = %capabilities.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(","),
        lease_ttl_ms = registered.lease_ttl_ms,
        version = env!("CARGO_PKG_VERSION"),
    );
    let config = PoolConfig {
        slots,
        kill_grace: args.kill_grace,
        shutdown_grace: args.shutdown_grace,
        heartbeat_every: heartbeat,
        // Claims wait at the server; between them only a short pause.
        poll_every: Duration::from_millis(50),
        inherited_env: tempora_worker::process::inherited_env(&args.pass_env),
        engine,
        capabilities: capabilities.clone(),
        artifacts: Some(Arc::new(artifacts)),
        ..PoolConfig::default()
    };
    let pool = WorkerPool::new(source, config, Arc::new(Notify::new()));
    pool.run(shutdown).await;
    tracing::info!(message = "tempora worker stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: i64, tail: usize) -> RunResult {
        RunResult {
            run_id: id,
            state: tempora_core::run::RunState::Failed,
            started_at: None,
            finished_at: jiff::Timestamp::UNIX_EPOCH,
            exit_code: Some(1),
            signal: None,
            error: Some("exit 1".into()),
            log_tail: vec![0xff; tail],
            awaits_completion: false,
        }
    }

    /// Results kept through an outage (each with the most output a worker keeps) go in
    /// requests the server accepts: below 1 MiB, in order, none lost.
    #[test]
    fn finish_requests_stay_below_the_servers_body_limit() {
        let mut results: Vec<RunResult> = (0..7).map(|i| result(i, 512 * 1024)).collect();
        results.extend((7..3007).map(|i| result(i, 10)));
        let parts = finish_requests(results);
        let mut ids = Vec::new();
        for p in &parts {
            let body = serde_json::to_vec(&FinishRequest { results: p.clone() }).unwrap();
            assert!(body.len() < 1024 * 1024, "{} bytes", body.len());
            assert!(p.len() <= 1_000);
            ids.extend(p.iter().map(|r| r.run_id));
        }
        assert_eq!(ids, (0..3007).collect::<Vec<i64>>());
        assert!(parts.len() >= 10, "{} parts", parts.len());
    }
}
