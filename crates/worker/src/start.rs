//! Starting a job's process: what to start ([`Plan`]: argv, the whole environment, the user,
//! the working directory), on which path (`clone3` straight into the run's cgroup, else
//! `Command`), on the spawner threads that keep spawns off the async runtime.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::Signal;

use crate::process::{ProcessSpec, RunAs, SESSION_VAR, WATCHDOG, resolve};

/// A started job process.
enum Started {
    /// Spawned by `Command` (`posix_spawn`, or `fork` when a step must run in the child).
    Command(tokio::process::Child),
    /// Spawned by [`crate::spawn`] (straight into the run's cgroup).
    Raw(crate::spawn::RawChild),
}

/// A started job process and the read end of its output pipe.
type Spawned = (Started, OwnedFd);

/// What a spawner thread is asked to start.
enum Start {
    /// With `Command`.
    Command(tokio::process::Command),
    /// With [`crate::spawn::spawn`], inside the cgroup whose directory is open, if any.
    Raw(crate::spawn::Launch, Option<OwnedFd>),
}

/// A spawn request for the spawner thread.
struct SpawnRequest {
    start: Start,
    runtime: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<Result<Spawned, crate::spawn::SpawnError>>,
}

/// `/dev/null`, opened once: every job's stdin.
fn dev_null() -> std::io::Result<std::os::fd::BorrowedFd<'static>> {
    use std::os::fd::AsFd;
    static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_fd());
    }
    let fd: OwnedFd = std::fs::File::open("/dev/null")?.into();
    Ok(NULL.get_or_init(|| fd).as_fd())
}

/// Create the job's output pipe and start it, on a spawner thread.
///
/// The pipe is made here, just before the spawn, rather than when the run is queued: every
/// spawn copies the worker's whole descriptor table into the child and the kernel then closes
/// each close-on-exec descriptor in it, so the cost of a spawn grows with the number of
/// descriptors open. Pipes made at queue time kept four descriptors open per queued run (about
/// 1,000 while draining with 256 slots); now only the runs being started hold them.
/// The write ends are dropped on return, so the reader sees end-of-file once the job (and
/// whatever it started) closes its copies.
fn spawn_with_pipe(start: Start) -> Result<Spawned, crate::spawn::SpawnError> {
    use crate::spawn::SpawnError;
    use std::os::fd::AsFd;
    let (reader, writer) = std::io::pipe().map_err(|e| {
        SpawnError::Child(std::io::Error::new(
            e.kind(),
            format!("cannot create pipe: {e}"),
        ))
    })?;
    let writer: OwnedFd = writer.into();
    match start {
        Start::Raw(launch, cgroup) => {
            let null = dev_null().map_err(SpawnError::Child)?;
            let child = crate::spawn::spawn(
                &launch,
                cgroup.as_ref().map(|c| c.as_fd()),
                null,
                writer.as_fd(),
            )?;
            Ok((Started::Raw(child), reader.into()))
        }
        Start::Command(mut cmd) => {
            let copy = writer.try_clone().map_err(SpawnError::Child)?;
            cmd.stdout(Stdio::from(copy)).stderr(Stdio::from(writer));
            let child = cmd.spawn().map_err(SpawnError::Child)?;
            Ok((Started::Command(child), reader.into()))
        }
    }
}

/// Long-lived threads that spawn job processes. A spawn blocks its thread until the child has
/// exec'd, so several run at once; on 2 cores, 8 threads drained 3–7 % faster than 4 and 4
/// about 10 % faster than 2 (alternated A/B, `tempora-bench --drain 20000`).
const SPAWNER_THREADS: usize = 8;

static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<SpawnRequest>>> =
    std::sync::OnceLock::new();

/// Spawn on one of the dedicated spawner threads.
///
/// A spawn blocks the calling thread until the child has exec'd; done on the async runtime's
/// threads it would stall fires, claims and HTTP under load. Long-lived threads do every spawn
/// instead — which also matters for `PR_SET_PDEATHSIG`, which fires when the thread that
/// created the child exits: these threads live as long as the process.
async fn spawn_off_runtime(start: Start) -> Result<Spawned, crate::spawn::SpawnError> {
    use crate::spawn::SpawnError;
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..SPAWNER_THREADS {
            let rx = rx.clone();
            let started = std::thread::Builder::new()
                .name(format!("tempora-spawner-{i}"))
                .spawn(move || {
                    loop {
                        let next = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => break,
                        };
                        let Ok(req) = next else { break };
                        let _guard = req.runtime.enter();
                        let _ = req.reply.send(spawn_with_pipe(req.start));
                    }
                });
            if let Err(e) = started {
                tracing::error!(message = "cannot start a spawner thread", error = %e);
            }
        }
        std::sync::Mutex::new(tx)
    });
    let (reply, rx) = tokio::sync::oneshot::channel();
    let req = SpawnRequest {
        start,
        runtime: tokio::runtime::Handle::current(),
        reply,
    };
    let sent = tx
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))
        .and_then(|tx| {
            tx.send(req)
                .map_err(|_| std::io::Error::other("the spawner thread is gone"))
        });
    sent.map_err(SpawnError::Child)?;
    rx.await.map_err(|_| {
        SpawnError::Child(std::io::Error::other(
            "the spawner thread dropped the request",
        ))
    })?
}

/// Start the job of `plan` in the run's cgroup (if any), with its output pipe.
pub(crate) async fn start(
    plan: &Plan,
    cgroup: Option<&crate::contain::RunCgroup>,
) -> Result<(JobChild, OwnedFd), StartError> {
    match start_job(plan, cgroup).await? {
        (Started::Command(c), reader) => Ok((JobChild::Command(c), reader)),
        (Started::Raw(c), reader) => {
            let c = crate::spawn::ChildWaiter::new(c).map_err(StartError::Failed)?;
            Ok((JobChild::Raw(c), reader))
        }
    }
}

/// Why a job did not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The run's cgroup cannot take processes (killed once, or removed): a new one may.
    Cgroup(std::io::Error),
    /// Anything else (no such program, a user that cannot be switched to, …).
    Failed(std::io::Error),
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        StartError::Failed(e)
    }
}

/// Start the job: straight into its cgroup with [`crate::spawn`] where the kernel allows it,
/// else with `Command`.
async fn start_job(
    plan: &Plan,
    cgroup: Option<&crate::contain::RunCgroup>,
) -> Result<Spawned, StartError> {
    use crate::spawn::SpawnError;
    if crate::spawn::available() {
        let launch = plan.launch()?;
        let dir = cgroup
            .map(|c| c.dir_fd())
            .transpose()
            .map_err(StartError::Cgroup)?;
        match spawn_off_runtime(Start::Raw(launch, dir)).await {
            Ok(s) => return Ok(s),
            Err(SpawnError::Child(e)) => return Err(StartError::Failed(e)),
            Err(SpawnError::KilledAtStart) => {
                return Err(StartError::Cgroup(std::io::Error::other(
                    "the process was killed at its start (its cgroup had been killed)",
                )));
            }
            Err(SpawnError::Clone(libc::ENOENT | libc::ENODEV)) if cgroup.is_some() => {
                return Err(StartError::Cgroup(std::io::Error::other(
                    "the run's cgroup is gone",
                )));
            }
            Err(SpawnError::Clone(errno)) => {
                let e = std::io::Error::from_raw_os_error(errno);
                // Refused by the kernel or a seccomp filter for good; anything else (out of
                // memory, too many processes) is tried once more below.
                if [
                    libc::ENOSYS,
                    libc::EPERM,
                    libc::EINVAL,
                    libc::E2BIG,
                    libc::EOPNOTSUPP,
                ]
                .contains(&errno)
                {
                    crate::spawn::disable();
                    tracing::info!(message = "clone3 into a cgroup is not available; jobs are spawned with posix_spawn and join their cgroup themselves", error = %e);
                } else {
                    tracing::warn!(message = "clone3 failed; spawning this job with Command", error = %e);
                }
            }
        }
    }
    let cmd = plan.command(cgroup);
    spawn_off_runtime(Start::Command(cmd))
        .await
        .map_err(|e| match e {
            SpawnError::Child(e) => StartError::Failed(e),
            SpawnError::Clone(errno) => {
                StartError::Failed(std::io::Error::from_raw_os_error(errno))
            }
            SpawnError::KilledAtStart => {
                StartError::Failed(std::io::Error::other("the process was killed at its start"))
            }
        })
}

/// A started job, waited for on the runtime.
pub(crate) enum JobChild {
    /// Spawned by `Command`.
    Command(tokio::process::Child),
    /// Spawned by `clone3`.
    Raw(crate::spawn::ChildWaiter),
}

impl JobChild {
    /// Its pid (also its process group).
    pub(crate) fn id(&self) -> Option<u32> {
        match self {
            JobChild::Command(c) => c.id(),
            JobChild::Raw(c) => Some(c.id()),
        }
    }

    /// Wait for it to exit (cancel-safe).
    pub(crate) async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self {
            JobChild::Command(c) => c.wait().await,
            JobChild::Raw(c) => c.wait().await,
        }
    }
}

/// How a job is started, before choosing the spawn path.
pub(crate) struct Plan {
    /// argv of the job itself (`/bin/sh -c LINE sh ARGS…`, or the resolved program and its
    /// arguments).
    argv: Vec<std::ffi::OsString>,
    /// A shell line (its shell can join the cgroup itself).
    shell: bool,
    /// The whole environment, in order (later entries win).
    env: Vec<(String, String)>,
    workdir: Option<PathBuf>,
    /// The user, and whether running as it is a switch.
    run_as: Option<(RunAs, bool)>,
    /// `PR_SET_PDEATHSIG`: no watchdog covers the worker's death.
    pdeathsig: bool,
}

/// What to start for `spec`: fails when its program or user cannot be found.
pub(crate) fn plan(spec: &ProcessSpec) -> std::io::Result<Plan> {
    let run_as = match &spec.run_as {
        Some(user) => Some(
            RunAs::check(user)
                .map_err(|e| std::io::Error::other(format!("cannot run as `{user}`: {e}")))?,
        ),
        None => None,
    };
    let mut argv: Vec<std::ffi::OsString> = Vec::with_capacity(spec.arguments.len() + 4);
    if spec.shell {
        argv.extend([
            "/bin/sh".into(),
            "-c".into(),
            spec.command.clone().into(),
            "sh".into(),
        ]);
    } else {
        let job_path = spec
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        let program = resolve(&spec.command, spec.workdir.as_deref(), job_path)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e))?;
        argv.push(program.into_os_string());
    }
    argv.extend(spec.arguments.iter().map(Into::into));
    let mut env = spec.env.clone();
    let watchdog = WATCHDOG.get();
    if let Some(w) = watchdog {
        // The watchdog finds the job's processes by this variable when the worker dies.
        env.insert(0, (SESSION_VAR.to_owned(), w.token.clone()));
    }
    if let Some((r, _)) = &run_as {
        env.extend([
            ("HOME".to_owned(), r.home.clone()),
            ("USER".to_owned(), r.name.clone()),
            ("LOGNAME".to_owned(), r.name.clone()),
        ]);
    }
    Ok(Plan {
        argv,
        shell: spec.shell,
        env,
        workdir: spec.workdir.clone(),
        run_as,
        pdeathsig: watchdog.is_none(),
    })
}

impl Plan {
    /// For [`crate::spawn`]: the same argv, environment and steps, as C strings.
    fn launch(&self) -> std::io::Result<crate::spawn::Launch> {
        use std::os::unix::ffi::OsStrExt;
        let c = |b: &[u8], what: &str| {
            std::ffi::CString::new(b).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{what} contains a NUL byte"),
                )
            })
        };
        let argv = self
            .argv
            .iter()
            .map(|a| c(a.as_bytes(), "an argument"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let env: std::collections::BTreeMap<&str, &str> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let env = env
            .into_iter()
            .map(|(k, v)| {
                if k.is_empty() || k.contains('=') {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("environment variable name `{k}` is empty or contains `=`"),
                    ));
                }
                c(format!("{k}={v}").as_bytes(), "the environment")
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let cwd = match &self.workdir {
            Some(w) => Some(c(w.as_os_str().as_bytes(), "the working directory")?),
            None => None,
        };
        let ids = self
            .run_as
            .as_ref()
            .filter(|(_, switch)| *switch)
            .map(|(r, _)| (r.uid, r.gid, r.groups.clone()));
        Ok(crate::spawn::Launch {
            program: argv[0].clone(),
            argv,
            env,
            cwd,
            ids,
            pdeathsig: self.pdeathsig,
        })
    }

    /// For `Command`: the run's cgroup is joined from the child.
    fn command(&self, cgroup: Option<&crate::contain::RunCgroup>) -> tokio::process::Command {
        let switch = self.run_as.as_ref().is_some_and(|(_, switch)| *switch);
        // A shell job's own shell joins the cgroup, as its first command, before anything of
        // the job runs; that keeps the spawn a `posix_spawn` (a `pre_exec` step would make it
        // a `fork` of the whole worker, several times slower). A program, or a job that
        // switches users (it could not write the file any more), joins in `pre_exec` instead.
        let shell_joins = self.shell && !switch;
        let mut argv = self.argv.clone();
        if let Some(cg) = cgroup.filter(|_| shell_joins) {
            let mut script = std::ffi::OsString::from(format!(
                "{{ echo 0 > '{}'; }} 2>/dev/null || {{ echo 'tempora: cannot join the run cgroup' >&2; exit 125; }}\n",
                cg.procs_path().display(),
            ));
            script.push(&argv[2]);
            argv[2] = script;
        }
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).env_clear();
        if let Some(cg) = cgroup.filter(|_| !shell_joins) {
            let fd = cg.procs_fd();
            // SAFETY: write(2) on a descriptor opened before the fork: async-signal-safe. First
            // of the closures, while the child still has the worker's rights over the hierarchy.
            unsafe {
                cmd.pre_exec(move || {
                    let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                    nix::unistd::write(fd, b"0").map_err(std::io::Error::from)?;
                    Ok(())
                });
            }
        }
        if let Some((r, true)) = &self.run_as {
            let groups: Vec<nix::unistd::Gid> = r
                .groups
                .iter()
                .map(|g| nix::unistd::Gid::from_raw(*g))
                .collect();
            let (uid, gid) = (
                nix::unistd::Uid::from_raw(r.uid),
                nix::unistd::Gid::from_raw(r.gid),
            );
            // The working directory is entered as the user (as with `clone3`), not as root.
            let cwd = self.workdir.as_ref().and_then(|w| {
                std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(w.as_os_str())).ok()
            });
            // SAFETY: setgroups(2), setgid(2), setuid(2) and chdir(2) are system calls, safe
            // after fork; the group list and the path were made before. Groups and gid first,
            // while still root. This is registered before the parent-death signal below, which
            // a change of user clears.
            unsafe {
                cmd.pre_exec(move || {
                    nix::unistd::setgroups(&groups).map_err(std::io::Error::from)?;
                    nix::unistd::setgid(gid).map_err(std::io::Error::from)?;
                    nix::unistd::setuid(uid).map_err(std::io::Error::from)?;
                    // SAFETY: chdir(2) on a C string made before the fork.
                    if let Some(dir) = &cwd
                        && libc::chdir(dir.as_ptr()) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let entered_as_user = switch
            && self
                .workdir
                .as_ref()
                .is_some_and(|w| !w.as_os_str().as_encoded_bytes().contains(&0));
        if let Some(w) = self.workdir.as_ref().filter(|_| !entered_as_user) {
            // (A path with a NUL byte makes the spawn fail, naming it.)
            cmd.current_dir(w);
        }
        if self.pdeathsig {
            // SAFETY: the closure only calls prctl(2), which is async-signal-safe. It forces
            // `fork` rather than `posix_spawn`; spawns run on dedicated threads so that cost
            // stays off the runtime.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }
}
