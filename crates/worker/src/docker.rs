//! Container jobs: a run starts a container through the Docker Engine API (over the engine's
//! Unix socket, with `bollard`; never the `docker` CLI), streams its output, records its exit
//! code, and removes it whatever happens: exit, timeout, cancel, worker shutdown or an error.
//!
//! Every container carries the labels `tempora.worker`, `tempora.run` and `tempora.job`, so a
//! worker that was killed while containers ran removes them when it starts again
//! ([`Engine::sweep`]).

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bytes::Bytes;
use futures_util::StreamExt;
use jiff::Timestamp;
use tempora_core::container::{ContainerSpec, Pull};
use tempora_core::run::RunState;
use tempora_store::clock::Clock;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::process::EndReason;

/// Where the engine listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Label naming the worker that started a container.
pub const WORKER_LABEL: &str = "tempora.worker";
/// Label naming the run a container belongs to.
pub const RUN_LABEL: &str = "tempora.run";
/// Label naming the job a container belongs to.
pub const JOB_LABEL: &str = "tempora.job";

/// How long one engine request may take (a pull's stream is bounded by the run's timeout).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// A connection to a Docker engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    socket: String,
}

/// What one container run did.
#[derive(Debug, Clone)]
pub struct ContainerOutcome {
    /// When the container was started (or the attempt gave up).
    pub started_at: Timestamp,
    /// Why it ended.
    pub end: EndReason,
    /// The container's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The kernel killed it for going over `container.memory`.
    pub oom_killed: bool,
    /// Why no container ran (pull, create or start failed; the engine is unreachable).
    pub error: Option<String>,
}

/// What to start: the container, its command words, environment and labels.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// The job's container.
    pub spec: ContainerSpec,
    /// `Cmd`: the job's command and arguments as words (None: the image's own).
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` pairs: the job's variables and secrets, the trigger's, tempora's own.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub workdir: Option<String>,
    /// Stop it after this long.
    pub timeout: Option<Duration>,
    /// SIGTERM → SIGKILL grace when it is stopped.
    pub kill_grace: Duration,
    /// Worker id, run id and job name, put on the container as labels.
    pub worker: String,
    /// See [`RUN_LABEL`].
    pub run_id: i64,
    /// See [`JOB_LABEL`].
    pub job: String,
}

fn engine_error(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

impl Engine {
    /// Connect to the engine at `socket` (a Unix socket path), agree on an API version (so an
    /// older engine is spoken to in its own version) and check that it answers.
    pub async fn connect(socket: &str) -> Result<Engine, String> {
        let docker =
            Docker::connect_with_unix(socket, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(|e| {
                format!(
                    "cannot use the Docker socket {socket}: {}",
                    engine_error(&e)
                )
            })?;
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| format!("the Docker engine at {socket} did not answer within 10s"))?
            .map_err(|e| {
                format!(
                    "the Docker engine at {socket} does not answer: {}",
                    engine_error(&e)
                )
            })?;
        docker.ping().await.map_err(|e| {
            format!(
                "the Docker engine at {socket} does not answer: {}",
                engine_error(&e)
            )
        })?;
        Ok(Engine {
            docker,
            socket: socket.to_owned(),
        })
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Remove the containers a previous life of worker `worker` left (it was killed while they
    /// ran; their runs were reported lost by the server). Returns how many were removed.
    pub async fn sweep(&self, worker: &str) -> usize {
        let filters: HashMap<String, Vec<String>> =
            [("label".to_owned(), vec![format!("{WORKER_LABEL}={worker}")])].into();
        let list = match self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(message = "cannot list leftover containers", error = %engine_error(&e));
                return 0;
            }
        };
        let mut removed = 0;
        for c in list {
            let Some(id) = c.id else { continue };
            if self.remove(&id).await.is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::warn!(
                message = "removed containers left by an earlier run of this worker",
                worker,
                removed
            );
        }
        removed
    }

    async fn remove(&self, id: &str) -> Result<(), String> {
        self.docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| engine_error(&e))
    }

    /// Make sure the image is there, as `pull` says.
    async fn ensure_image(
        &self,
        spec: &ContainerSpec,
        out: &mpsc::Sender<Bytes>,
    ) -> Result<(), String> {
        let present = match self.docker.inspect_image(&spec.image).await {
            Ok(_) => true,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => false,
            Err(e) => {
                return Err(format!(
                    "cannot inspect image `{}`: {}",
                    spec.image,
                    engine_error(&e)
                ));
            }
        };
        match (spec.pull, present) {
            (Pull::Never, false) => Err(format!(
                "image `{}` is not on this worker's Docker engine (container.pull: never)",
                spec.image
            )),
            (Pull::Never, true) | (Pull::Missing, true) => Ok(()),
            (Pull::Missing, false) | (Pull::Always, _) => {
                let _ = out
                    .send(Bytes::from(format!(
                        "[tempora: pulling image {}]\n",
                        spec.image
                    )))
                    .await;
                let (from_image, tag) = split_tag(&spec.image);
                let mut pull = self.docker.create_image(
                    Some(CreateImageOptions {
                        from_image: Some(from_image.to_owned()),
                        tag: tag.map(str::to_owned),
                        ..Default::default()
                    }),
                    None,
                    None,
                );
                while let Some(step) = pull.next().await {
                    if let Err(e) = step {
                        return Err(format!(
                            "could not pull image `{}`: {}",
                            spec.image,
                            engine_error(&e)
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// Run one container to its end, its output going to `out` as it comes. The container is
    /// removed before this returns, however it ended.
    pub async fn run(
        &self,
        plan: &ContainerPlan,
        out: mpsc::Sender<Bytes>,
        cancel: CancellationToken,
        clock: &dyn Clock,
    ) -> ContainerOutcome {
        let mut outcome = ContainerOutcome {
            started_at: clock.now(),
            end: EndReason::Exited,
            exit_code: None,
            oom_killed: false,
            error: None,
        };
        // Pulling counts against the timeout and can be cancelled like the run.
        let prepare = self.ensure_image(&plan.spec, &out);
        let limit = plan.timeout.unwrap_or(Duration::MAX);
        let deadline = tokio::time::Instant::now()
            .checked_add(limit)
            .unwrap_or_else(|| {
                tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400)
            });
        tokio::select! {
            r = prepare => if let Err(e) = r {
                outcome.error = Some(e);
                return outcome;
            },
            () = tokio::time::sleep_until(deadline) => {
                outcome.end = EndReason::TimedOut;
                return outcome;
            }
            () = cancel.cancelled() => {
                outcome.end = EndReason::Cancelled;
                return outcome;
            }
        }
        let id = match self.create(plan).await {
            Ok(id) => id,
            Err(e) => {
                outcome.error = Some(e);
                return outcome;
            }
        };
        self.run_created(&id, plan, out, cancel, clock, deadline, &mut outcome)
            .await;
        if let Err(e) = self.remove(&id).await {
            tracing::warn!(message = "cannot remove a run's container", run_id = plan.run_id, container = %id, error = %e);
        }
        outcome
    }

    async fn create(&self, plan: &ContainerPlan) -> Result<String, String> {
        let spec = &plan.spec;
        let labels: HashMap<String, String> = [
            (WORKER_LABEL.to_owned(), plan.worker.clone()),
            (RUN_LABEL.to_owned(), plan.run_id.to_string()),
            (JOB_LABEL.to_owned(), plan.job.clone()),
        ]
        .into();
        let host = HostConfig {
            binds: (!spec.volumes.is_empty()).then(|| spec.volumes.clone()),
            network_mode: spec.network.clone(),
            nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
            memory: spec
                .memory_bytes()
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            // No setuid escalation inside the container.
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: plan.cmd.clone(),
            entrypoint: spec.entrypoint.clone(),
            env: Some(plan.env.clone()),
            user: spec.user.clone(),
            working_dir: plan.workdir.clone(),
            labels: Some(labels),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(host),
            ..Default::default()
        };
        self.docker
            .create_container(None, body)
            .await
            .map(|r| r.id)
            .map_err(|e| format!("could not create the container: {}", engine_error(&e)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_created(
        &self,
        id: &str,
        plan: &ContainerPlan,
        out: mpsc::Sender<Bytes>,
        cancel: CancellationToken,
        clock: &dyn Clock,
        deadline: tokio::time::Instant,
        outcome: &mut ContainerOutcome,
    ) {
        // Attached before it starts, so no early output is missed.
        let attached = self
            .docker
            .attach_container(
                id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdout: true,
                    stderr: true,
                    logs: true,
                    ..Default::default()
                }),
            )
            .await;
        let mut stream = match attached {
            Ok(a) => a.output,
            Err(e) => {
                outcome.error = Some(format!(
                    "could not attach to the container: {}",
                    engine_error(&e)
                ));
                return;
            }
        };
        let fallback = out.clone();
        let pump = tokio::spawn(async move {
            let mut got = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                got += chunk.as_ref().len();
                if out.send(chunk.into_bytes()).await.is_err() {
                    break;
                }
            }
            got
        });
        if let Err(e) = self.docker.start_container(id, None).await {
            outcome.error = Some(format!(
                "could not start the container: {}",
                engine_error(&e)
            ));
            pump.abort();
            return;
        }
        outcome.started_at = clock.now();
        let mut wait = self.docker.wait_container(
            id,
            Some(WaitContainerOptions {
                condition: "not-running".to_owned(),
            }),
        );
        let stop = tokio::select! {
            r = wait.next() => {
                outcome.exit_code = exit_code(r);
                None
            }
            () = tokio::time::sleep_until(deadline) => Some(EndReason::TimedOut),
            () = cancel.cancelled() => Some(EndReason::Cancelled),
        };
        if let Some(reason) = stop {
            outcome.end = reason;
            let grace = i32::try_from(plan.kill_grace.as_secs()).unwrap_or(i32::MAX);
            if let Err(e) = self
                .docker
                .stop_container(
                    id,
                    Some(StopContainerOptions {
                        t: Some(grace),
                        signal: None,
                    }),
                )
                .await
            {
                tracing::warn!(message = "cannot stop a run's container", run_id = plan.run_id, error = %engine_error(&e));
            }
            let bound = plan.kill_grace + Duration::from_secs(10);
            if let Ok(r) = tokio::time::timeout(bound, wait.next()).await {
                outcome.exit_code = exit_code(r);
            }
        }
        // The output stream ends with the container; bounded in case the engine keeps it open.
        let streamed = tokio::time::timeout(Duration::from_secs(5), pump).await;
        // The engine can end an attach of a very short-lived container before its output
        // (seen under load): then the output is read back from the container's log.
        if matches!(streamed, Ok(Ok(0))) {
            let mut logs = self.docker.logs(
                id,
                Some(LogsOptions {
                    stdout: true,
                    stderr: true,
                    tail: "all".to_owned(),
                    ..Default::default()
                }),
            );
            while let Some(Ok(chunk)) = logs.next().await {
                if fallback.send(chunk.into_bytes()).await.is_err() {
                    break;
                }
            }
        }
        drop(fallback);
        if let Ok(info) = self.docker.inspect_container(id, None).await {
            outcome.oom_killed = info.state.and_then(|s| s.oom_killed).unwrap_or(false);
        }
    }
}

/// The exit code from a wait answer (bollard reports a non-zero one as an error).
fn exit_code(
    r: Option<Result<bollard::models::ContainerWaitResponse, bollard::errors::Error>>,
) -> Option<i32> {
    match r {
        Some(Ok(w)) => i32::try_from(w.status_code).ok(),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
            i32::try_from(code).ok()
        }
        _ => None,
    }
}

/// `repo[:tag]` → (repo, tag); a digest (`@sha256:…`) stays in the repository part.
fn split_tag(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (image, Some("latest")),
    }
}

/// The final state and explanation of a container run.
pub fn classify(
    o: &ContainerOutcome,
    plan: &ContainerPlan,
    shutting_down: bool,
) -> (RunState, Option<String>) {
    if let Some(e) = &o.error {
        return (RunState::Failed, Some(e.clone()));
    }
    match o.end {
        EndReason::TimedOut => (
            RunState::TimedOut,
            Some(format!(
                "timed out after {}",
                tempora_core::duration::format_duration(plan.timeout.unwrap_or_default())
            )),
        ),
        EndReason::Cancelled if shutting_down => (
            RunState::Lost,
            Some("lost: the worker shut down while the container was running".into()),
        ),
        EndReason::Cancelled => (RunState::Cancelled, Some("cancelled".into())),
        EndReason::Exited => match o.exit_code {
            Some(0) => (RunState::Succeeded, None),
            Some(code) if o.oom_killed => (
                RunState::Failed,
                Some(format!(
                    "exit status {code}: killed for using more than container.memory ({})",
                    plan.spec.memory.as_deref().unwrap_or("the engine's limit")
                )),
            ),
            // The engine does not always report an OOM kill (cgroup v2 on older engines): a
            // SIGKILL of a memory-limited container is most likely one.
            Some(137) if plan.spec.memory.is_some() => (
                RunState::Failed,
                Some(format!(
                    "exit status 137: killed (SIGKILL), most likely for using more than \
                     container.memory ({})",
                    plan.spec.memory.as_deref().unwrap_or_default()
                )),
            ),
            Some(code) => (RunState::Failed, Some(format!("exit status {code}"))),
            None => (
                RunState::Failed,
                Some("the container ended without an exit status".into()),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn image_tags() {
        assert_eq!(split_tag("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_tag("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_tag("localhost:5000/team/tool"),
            ("localhost:5000/team/tool", Some("latest"))
        );
        assert_eq!(
            split_tag("localhost:5000/team/tool:2"),
            ("localhost:5000/team/tool", Some("2"))
        );
        assert_eq!(split_tag("x@sha256:abc"), ("x@sha256:abc", None));
    }
}
