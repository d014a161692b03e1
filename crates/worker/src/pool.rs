//! The worker pool: claims runs into free slots, executes each as a process, ships output while
//! it runs, renews leases, and reports results in batches.
//!
//! Shutdown (the token fires): stop claiming, give running runs `shutdown_grace` to finish,
//! then kill their process groups and report them `lost` ("… shut down"), so the retry
//! policy applies when the server comes back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tempora_core::run::RunState;
use tempora_store::{ClaimedRun, RunResult, run_environment};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::process::{EndReason, ProcessOutcome, ProcessSpec, run_process};
use crate::source::RunSource;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Runs executed at once.
    pub slots: usize,
    /// How often leases are renewed (and cancel requests picked up).
    pub heartbeat_every: Duration,
    /// Claim attempt interval when not woken.
    pub poll_every: Duration,
    /// SIGTERM → SIGKILL grace on timeout and cancel.
    pub kill_grace: Duration,
    /// How long running runs may go on after shutdown is requested.
    pub shutdown_grace: Duration,
    /// Output is shipped at least this often while a run goes.
    pub log_flush_every: Duration,
    /// Output is shipped when this many bytes are buffered.
    pub log_chunk_max: usize,
    /// Most output kept per run while it cannot be shipped (server away); older bytes are
    /// dropped, with a note in the output.
    pub log_buffer_max: usize,
    /// What a run inherits of the worker's environment (see
    /// [`crate::process::inherited_env`]); the job's `env`, the trigger's and tempora's own
    /// variables are added to it.
    pub inherited_env: Vec<(String, String)>,
    /// What a run's `started_at`/`finished_at` are read from (the process clock; tests pass
    /// one they control).
    pub clock: Arc<dyn tempora_store::clock::Clock>,
    /// The Docker engine container jobs run on (None: this worker runs no container job).
    pub engine: Option<crate::docker::Engine>,
    /// The kinds of job it runs; a claimed run of another kind (from a server that did not
    /// filter it) fails without being started.
    pub capabilities: Vec<tempora_core::kind::Kind>,
    /// Where the artifacts runs name are kept (None: a run of an artifact fails, saying why).
    pub artifacts: Option<Arc<crate::artifacts::ArtifactCache>>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            slots: 64,
            heartbeat_every: Duration::from_secs(2),
            poll_every: Duration::from_millis(500),
            kill_grace: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            log_flush_every: Duration::from_millis(250),
            log_chunk_max: 64 * 1024,
            log_buffer_max: 512 * 1024,
            inherited_env: crate::process::inherited_env(&[]),
            clock: tempora_store::clock::system(),
            engine: None,
            capabilities: vec![
                tempora_core::kind::Kind::Command,
                tempora_core::kind::Kind::Http,
            ],
            artifacts: None,
        }
    }
}

type Running = Arc<Mutex<HashMap<i64, CancellationToken>>>;

/// A pool of worker slots fed by a [`RunSource`].
pub struct WorkerPool {
    source: Arc<dyn RunSource>,
    config: PoolConfig,
    wake: Arc<Notify>,
    stops: Arc<Notify>,
}

impl WorkerPool {
    /// A pool on `source`; `wake` is notified when work may be available.
    pub fn new(source: Arc<dyn RunSource>, config: PoolConfig, wake: Arc<Notify>) -> Self {
        Self {
            source,
            config,
            wake,
            stops: Arc::new(Notify::new()),
        }
    }

    /// `stops` is notified when runs were asked to stop (on a server: cancel, kill, delete): the
    /// heartbeat then asks the source at once which runs to stop, instead of at its next tick.
    pub fn with_stop_signal(mut self, stops: Arc<Notify>) -> Self {
        self.stops = stops;
        self
    }

    /// Run until `shutdown` fires and every run has been reported.
    pub async fn run(self, shutdown: CancellationToken) {
        let running: Running = Arc::new(Mutex::new(HashMap::new()));
        let shutting_down = Arc::new(AtomicBool::new(false));
        let slot_freed = Arc::new(Notify::new());
        let (result_tx, result_rx) = mpsc::unbounded_channel::<RunResult>();
        let reporter = tokio::spawn(report_results(self.source.clone(), result_rx));
        let hb_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.source.clone(),
            running.clone(),
            self.config.heartbeat_every,
            self.stops.clone(),
            hb_stop.clone(),
        ));
        let mut tasks = JoinSet::new();

        loop {
            if shutdown.is_cancelled() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            let free = self.config.slots.saturating_sub(lock_len(&running));
            let mut claimed_full = false;
            if free > 0 {
                // A remote source long-polls: do not let it hold up shutdown.
                let claimed = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = self.source.claim(free) => r,
                };
                match claimed {
                    Ok(runs) => {
                        claimed_full = runs.len() == free;
                        for c in runs {
                            let token = CancellationToken::new();
                            if let Ok(mut m) = running.lock() {
                                m.insert(c.run.id, token.clone());
                            }
                            metrics::gauge!("tempora_worker_running").increment(1.0);
                            tasks.spawn(execute(
                                c,
                                self.source.clone(),
                                self.config.clone(),
                                token,
                                shutting_down.clone(),
                                result_tx.clone(),
                                running.clone(),
                                slot_freed.clone(),
                            ));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(message = "claim failed", error = %e);
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                }
            }
            if claimed_full {
                // There may be more: wait only for a free slot.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = slot_freed.notified() => {}
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = slot_freed.notified() => {}
                _ = tokio::time::sleep(self.config.poll_every) => {}
            }
        }

        // Shutdown: no more claims; let running runs finish within the grace period.
        let n = lock_len(&running);
        if n > 0 {
            tracing::info!(message = "waiting for running runs before shutdown", runs = n, grace = ?self.config.shutdown_grace);
        }
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        while !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    shutting_down.store(true, Ordering::SeqCst);
                    let tokens: Vec<CancellationToken> = running
                        .lock()
                        .map(|m| m.values().cloned().collect())
                        .unwrap_or_default();
                    tracing::warn!(message = "grace period over: killing remaining runs", runs = tokens.len());
                    for t in tokens {
                        t.cancel();
                    }
                    while tasks.join_next().await.is_some() {}
                }
            }
        }
        hb_stop.cancel();
        let _ = heartbeat.await;
        drop(result_tx);
        let _ = reporter.await;
        tracing::info!(message = "worker pool stopped");
    }
}

fn lock_len(running: &Running) -> usize {
    running.lock().map(|m| m.len()).unwrap_or(0)
}

/// Renew leases and stop the runs the source says must stop.
async fn heartbeat_loop(
    source: Arc<dyn RunSource>,
    running: Running,
    every: Duration,
    stops: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
            _ = stops.notified() => {}
        }
        let ids: Vec<i64> = running
            .lock()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        if ids.is_empty() {
            continue;
        }
        match source.heartbeat(&ids).await {
            Ok(stops) => {
                if let Ok(m) = running.lock() {
                    for id in stops {
                        if let Some(t) = m.get(&id) {
                            tracing::info!(message = "stopping run on request", run_id = id);
                            t.cancel();
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(message = "heartbeat failed", error = %e),
        }
    }
}

/// Deliver results in batches; a failed delivery is kept and re-sent, never dropped.
async fn report_results(source: Arc<dyn RunSource>, mut rx: mpsc::UnboundedReceiver<RunResult>) {
    let mut pending: Vec<RunResult> = Vec::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(r) => pending.push(r),
                None => break,
            }
        }
        while let Ok(r) = rx.try_recv() {
            pending.push(r);
        }
        let batch = std::mem::take(&mut pending);
        let n = batch.len();
        match source.finish(batch.clone()).await {
            Ok(()) => {
                metrics::histogram!("tempora_result_batch_size").record(n as f64);
                // From the process's end to the source's acknowledgement: how long a result
                // waited to be recorded (seconds under a server or database outage).
                let now = tempora_store::clock::now();
                let mut slowest = 0.0f64;
                for r in &batch {
                    let waited = now.duration_since(r.finished_at).as_secs_f64().max(0.0);
                    slowest = slowest.max(waited);
                    metrics::histogram!("tempora_result_delivery_seconds").record(waited);
                }
                if slowest > 2.0 {
                    tracing::warn!(
                        message = "results delivered late",
                        results = n,
                        slowest_seconds = slowest
                    );
                }
            }
            Err(e) => {
                tracing::warn!(message = "cannot report results; will retry", error = %e, results = n);
                pending = batch;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The process spec of a claimed run.
fn process_spec(c: &ClaimedRun, cfg: &PoolConfig) -> ProcessSpec {
    let spec = &c.spec;
    let mut env: Vec<(String, String)> = cfg.inherited_env.clone();
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(spec.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(
        c.run
            .overrides
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env.extend(run_environment(&c.run, spec));
    // A Chronos start's arguments are appended to the shell command as quoted words: data for
    // the command, never shell syntax of the caller's.
    let command = match (&c.run.overrides.command_suffix, spec.shell) {
        (Some(suffix), true) if !suffix.trim().is_empty() => format!(
            "{} {}",
            spec.command,
            tempora_core::chronos::quote_words(suffix)
        ),
        _ => spec.command.clone(),
    };
    ProcessSpec {
        command,
        shell: spec.shell,
        arguments: c
            .run
            .overrides
            .arguments
            .clone()
            .unwrap_or_else(|| spec.arguments.clone()),
        env,
        workdir: spec.workdir.as_ref().map(PathBuf::from),
        timeout: spec.timeout,
        kill_grace: cfg.kill_grace,
        run_as: spec.run_as.clone(),
    }
}

/// Run the artifact at `path` instead of a command: directly, or as the last word of
/// `interpreter` (`python3 -u`), the job's arguments after it.
fn with_artifact(spec: &mut ProcessSpec, path: &std::path::Path, interpreter: Option<&str>) {
    let file = path.display().to_string();
    spec.shell = false;
    match interpreter.map(|i| i.split_whitespace().map(str::to_owned).collect::<Vec<_>>()) {
        Some(mut words) if !words.is_empty() => {
            spec.command = words.remove(0);
            words.push(file);
            words.append(&mut spec.arguments);
            spec.arguments = words;
        }
        _ => spec.command = file,
    }
}

/// What a container run starts: the process spec's command words and the job's own
/// environment (never the worker's: a container sees only what the job gives it).
fn container_plan(
    c: &ClaimedRun,
    p: &ProcessSpec,
    container: &tempora_core::container::ContainerSpec,
    worker: &str,
) -> crate::docker::ContainerPlan {
    let spec = &c.spec;
    let mut env: Vec<String> = Vec::new();
    let mut push = |k: &str, v: &str| env.push(format!("{k}={v}"));
    for (k, v) in spec
        .env
        .iter()
        .chain(&spec.secrets)
        .chain(&c.run.overrides.env)
    {
        push(k, v);
    }
    for (k, v) in run_environment(&c.run, spec) {
        push(&k, &v);
    }
    let cmd = if p.command.trim().is_empty() {
        (!p.arguments.is_empty()).then(|| p.arguments.clone())
    } else if p.shell {
        let mut words = vec!["/bin/sh".to_owned(), "-c".to_owned(), p.command.clone()];
        if !p.arguments.is_empty() {
            words.push("sh".to_owned());
            words.extend(p.arguments.iter().cloned());
        }
        Some(words)
    } else {
        let mut words = vec![p.command.clone()];
        words.extend(p.arguments.iter().cloned());
        Some(words)
    };
    crate::docker::ContainerPlan {
        spec: container.clone(),
        cmd,
        env,
        workdir: spec.workdir.clone(),
        timeout: spec.timeout,
        kill_grace: p.kill_grace,
        worker: worker.to_owned(),
        run_id: c.run.id,
        job: c.run.job.clone(),
    }
}

/// The final state and explanation of an outcome.
fn classify(
    o: &ProcessOutcome,
    timeout: Option<Duration>,
    shutting_down: bool,
) -> (RunState, Option<String>) {
    if let Some(e) = &o.spawn_error {
        return (RunState::Failed, Some(format!("could not start: {e}")));
    }
    match o.end {
        EndReason::TimedOut => (
            RunState::TimedOut,
            Some(format!(
                "timed out after {}",
                tempora_core::duration::format_duration(timeout.unwrap_or_default())
            )),
        ),
        EndReason::Cancelled if shutting_down => (
            RunState::Lost,
            Some(
                "lost: the worker (or the server running it) shut down while the run was going"
                    .into(),
            ),
        ),
        EndReason::Cancelled => (RunState::Cancelled, Some("cancelled".into())),
        EndReason::Exited => match (o.exit_code, o.signal) {
            (Some(0), _) => (RunState::Succeeded, None),
            (Some(code), _) => (RunState::Failed, Some(format!("exit status {code}"))),
            (None, Some(sig)) => (RunState::Failed, Some(format!("killed by signal {sig}"))),
            (None, None) => (RunState::Failed, Some("ended without status".into())),
        },
    }
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    c: ClaimedRun,
    source: Arc<dyn RunSource>,
    cfg: PoolConfig,
    token: CancellationToken,
    shutting_down: Arc<AtomicBool>,
    results: mpsc::UnboundedSender<RunResult>,
    running: Running,
    slot_freed: Arc<Notify>,
) {
    let run_id = c.run.id;
    let kind = c.spec.kind();
    let unstarted = |error: String| {
        let _ = results.send(RunResult {
            run_id,
            state: RunState::Failed,
            started_at: None,
            finished_at: cfg.clock.now(),
            exit_code: None,
            signal: None,
            error: Some(error),
            log_tail: Vec::new(),
            awaits_completion: false,
        });
        if let Ok(mut m) = running.lock() {
            m.remove(&run_id);
        }
        metrics::gauge!("tempora_worker_running").decrement(1.0);
        slot_freed.notify_one();
    };
    if !cfg.capabilities.contains(&kind) {
        // The server should not have handed it out; running it anyway would break the
        // worker's promise (a container-only worker runs nothing on its host).
        let caps: Vec<&str> = cfg.capabilities.iter().map(|k| k.as_str()).collect();
        tracing::error!(message = "claimed a run of a kind this worker does not run", run_id, kind = %kind);
        unstarted(format!(
            "this worker does not run {kind} jobs (its capabilities: {})",
            caps.join(", ")
        ));
        return;
    }
    let mut spec = process_spec(&c, &cfg);
    if let Some(reference) = &c.spec.artifact {
        let path = match &cfg.artifacts {
            Some(cache) => cache.get(source.as_ref(), reference).await,
            None => Err("this worker keeps no artifacts".to_owned()),
        };
        match path {
            Ok(path) => with_artifact(&mut spec, &path, c.spec.interpreter.as_deref()),
            Err(e) => {
                tracing::warn!(message = "run not started: its artifact", run_id, error = %e);
                unstarted(format!("could not start: {e}"));
                return;
            }
        }
    }
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let masker =
        tempora_core::secret::OutputMasker::new(c.spec.secrets.values().map(String::as_str));
    let pump = tokio::spawn(pump_output(
        source.clone(),
        run_id,
        out_rx,
        masker,
        cfg.log_flush_every,
        cfg.log_chunk_max,
        cfg.log_buffer_max,
    ));
    tracing::debug!(message = "run starting", run_id, job = %c.run.job, attempt = c.run.attempt);
    let shutting = || shutting_down.load(Ordering::SeqCst);
    let (outcome, state, error) = match (&c.spec.http, &c.spec.container) {
        (None, Some(container)) => {
            let plan = container_plan(&c, &spec, container, source.worker_id());
            let o = match &cfg.engine {
                Some(engine) => engine.run(&plan, out_tx, token, cfg.clock.as_ref()).await,
                None => crate::docker::ContainerOutcome {
                    started_at: cfg.clock.now(),
                    end: EndReason::Exited,
                    exit_code: None,
                    oom_killed: false,
                    error: Some("this worker has no Docker engine (capability `container`)".into()),
                },
            };
            let (state, error) = crate::docker::classify(&o, &plan, shutting());
            let outcome = ProcessOutcome {
                started_at: o.started_at,
                exit_code: o.exit_code,
                signal: None,
                end: o.end,
                spawn_error: None,
            };
            (outcome, state, error)
        }
        (Some(h), _) => {
            // The variables a request may name: the job's, its secrets, the trigger's.
            let mut vars = c.spec.env.clone();
            vars.extend(c.spec.secrets.clone());
            vars.extend(c.run.overrides.env.clone());
            let o = crate::http::send(h, &vars, c.spec.timeout, out_tx, token, cfg.clock.as_ref())
                .await;
            let limit = h
                .timeout
                .or(c.spec.timeout)
                .unwrap_or(tempora_core::http_job::DEFAULT_TIMEOUT);
            let (state, error) = crate::http::classify(h, &o, limit, shutting());
            let outcome = ProcessOutcome {
                started_at: o.started_at,
                exit_code: None,
                signal: None,
                end: o.end,
                spawn_error: None,
            };
            (outcome, state, error)
        }
        (None, None) => {
            let outcome = run_process(&spec, out_tx, token, cfg.clock.as_ref()).await;
            let (state, error) = classify(&outcome, spec.timeout, shutting());
            (outcome, state, error)
        }
    };
    let tail = pump.await.unwrap_or_default();
    let finished_at = cfg.clock.now();
    // A retry is late from when it was due (its backoff's end), not from its occurrence.
    let due = if c.run.trigger == tempora_core::run::Trigger::Retry {
        c.run.not_before
    } else {
        c.run.scheduled_for
    };
    let lag_ms = outcome.started_at.duration_since(due).as_millis() as i64;
    // A run that did not succeed is worth a WARN line with its reason: that is what an
    // operator greps the logs for.
    if state == RunState::Succeeded {
        tracing::info!(message = "run finished", run_id, job = %c.run.job, state = %state, lag_ms);
    } else {
        tracing::warn!(
            message = "run did not succeed",
            run_id,
            job = %c.run.job,
            state = %state,
            exit_code = outcome.exit_code.map_or(String::from("-"), |c| c.to_string()),
            reason = error.as_deref().unwrap_or("-"),
            lag_ms,
        );
    }
    metrics::counter!("tempora_runs_finished_total", "state" => state.as_str()).increment(1);
    let _ = results.send(RunResult {
        run_id,
        state,
        started_at: Some(outcome.started_at),
        finished_at,
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        error,
        log_tail: tail,
        awaits_completion: c.spec.is_async && state == RunState::Succeeded,
    });
    if let Ok(mut m) = running.lock() {
        m.remove(&run_id);
    }
    metrics::gauge!("tempora_worker_running").decrement(1.0);
    slot_freed.notify_one();
}

/// Collect output, masking secret values; ship it every `every` or when `max` bytes are
/// buffered. Returns what is left when the process ends (it goes with the result).
async fn pump_output(
    source: Arc<dyn RunSource>,
    run_id: i64,
    mut rx: mpsc::Receiver<Bytes>,
    mut masker: tempora_core::secret::OutputMasker,
    every: Duration,
    max: usize,
    keep: usize,
) -> Vec<u8> {
    let mut buf: Vec<u8> = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let flush_at = deadline;
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(b) => {
                    // The job's secret values never leave the worker: masked before shipping
                    // (a job without secrets pays nothing for it).
                    if masker.is_empty() {
                        buf.extend_from_slice(&b);
                    } else {
                        buf.extend_from_slice(&masker.feed(&b));
                    }
                    if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + every);
                    }
                    if buf.len() < max {
                        continue;
                    }
                }
                None => {
                    if !masker.is_empty() {
                        buf.extend_from_slice(&masker.finish());
                    }
                    return buf;
                }
            },
            _ = async { if let Some(d) = flush_at { tokio::time::sleep_until(d).await } else { std::future::pending::<()>().await } } => {}
        }
        let data = std::mem::take(&mut buf);
        deadline = None;
        if let Err(e) = source.append_log(run_id, data.clone()).await {
            tracing::warn!(message = "cannot ship output; keeping it for the result", run_id, error = %e);
            buf = bound_output(data, keep);
        }
    }
}

/// Keep at most about `keep` bytes of unshipped output: the newest, after a note saying how
/// much was dropped.
fn bound_output(mut data: Vec<u8>, keep: usize) -> Vec<u8> {
    if data.len() <= keep.max(1) {
        return data;
    }
    let drop_n = data.len() - keep;
    let note =
        format!("\n[tempora: {drop_n} bytes of output dropped while the server was unreachable]\n");
    let mut out = note.into_bytes();
    out.extend(data.drain(drop_n..));
    out
}

#[cfg(test)]
mod tests {
    use super::bound_output;

    #[test]
    fn unshipped_output_is_bounded() {
        assert_eq!(bound_output(b"abc".to_vec(), 10), b"abc");
        let out = bound_output(vec![b'x'; 100], 10);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("\n[tempora: 90 bytes of output dropped"));
        assert!(text.ends_with("]\nxxxxxxxxxx"));
    }
}
