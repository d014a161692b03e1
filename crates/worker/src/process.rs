//! Process executor: runs one attempt as an OS process in its own process group.
//!
//! - stdout and stderr share one pipe, so output keeps the order it was written in;
//! - timeout and cancel send SIGTERM to the whole group, then SIGKILL after `kill_grace`;
//! - when the job's main process exits, anything left in its process group is killed;
//! - when the worker dies (even by SIGKILL), the [watchdog](start_group_watchdog) kills every
//!   process of its runs: the groups it was told about, and any process whose environment
//!   carries this worker's session token (so also one spawned an instant before the death, or a
//!   descendant that left its group). With the watchdog running, jobs are started with
//!   `posix_spawn` (`vfork` + `exec`: no copy of the worker's page tables), about twice as fast
//!   as `fork`; without it, each child gets `PR_SET_PDEATHSIG = SIGKILL` instead, which needs
//!   `fork`.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Shell line (`shell`) or program.
    pub command: String,
    /// Run through `/bin/sh -c`.
    pub shell: bool,
    /// argv after the program (or `$1…` of the shell line).
    pub arguments: Vec<String>,
    /// The whole environment of the process: it inherits nothing from the worker (later
    /// entries win).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub workdir: Option<PathBuf>,
    /// Kill after this long.
    pub timeout: Option<Duration>,
    /// SIGTERM → SIGKILL delay.
    pub kill_grace: Duration,
    /// Run as this user (a name or a numeric uid): its uid, gid and groups, `HOME`, `USER`
    /// and `LOGNAME`. A worker that cannot switch to it fails the run; it never runs it as
    /// itself.
    pub run_as: Option<String>,
}

/// A user a run switches to, from the user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Every group the user is in (primary included).
    pub groups: Vec<u32>,
    /// Home directory.
    pub home: String,
}

impl RunAs {
    /// Look `user` up (a login name, or a numeric uid).
    pub fn lookup(user: &str) -> Result<RunAs, String> {
        use nix::unistd::{Uid, User, getgrouplist};
        let found = match user.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(user),
        }
        .map_err(|e| format!("cannot read the user database: {e}"))?
        .ok_or_else(|| format!("no user `{user}` on this machine"))?;
        let cname = std::ffi::CString::new(found.name.clone())
            .map_err(|_| format!("user name `{}` has a NUL byte", found.name))?;
        let groups = getgrouplist(&cname, found.gid)
            .map_err(|e| format!("cannot list the groups of `{}`: {e}", found.name))?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        Ok(RunAs {
            name: found.name,
            uid: found.uid.as_raw(),
            gid: found.gid.as_raw(),
            groups,
            home: found.dir.to_string_lossy().into_owned(),
        })
    }

    /// Check that this process can start processes as `user`; returns the user, and whether
    /// that is a switch (another user than this process's own).
    pub fn check(user: &str) -> Result<(RunAs, bool), String> {
        let r = RunAs::lookup(user)?;
        let me = nix::unistd::Uid::effective();
        let switch = me.as_raw() != r.uid;
        if switch && !me.is_root() {
            return Err(format!(
                "this process runs as uid {} and cannot switch to user `{}` (uid {}): run it as \
                 root to use run_as, or leave run_as out",
                me.as_raw(),
                r.name,
                r.uid
            ));
        }
        Ok((r, switch))
    }
}

/// Variables a run inherits from the worker's environment by default; `--pass-env` adds more.
pub const DEFAULT_PASS_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// The inherited part of every run's environment: [`DEFAULT_PASS_ENV`] and `extra`, with their
/// values in this process's environment (unset ones are left out). Read once at start: nothing
/// else of the worker's environment (database URLs, tokens, cloud credentials) reaches a job.
pub fn inherited_env(extra: &[String]) -> Vec<(String, String)> {
    let mut names: Vec<&str> = DEFAULT_PASS_ENV.to_vec();
    names.extend(extra.iter().map(String::as_str));
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_owned(), v)))
        .collect()
}

/// Find `program` the way `execvp` would in the job's process: a path with a `/` from the job's
/// working directory (`workdir`), a bare name in the job's `PATH` (`path`; the worker's when the
/// job has none). The error says what is wrong with it.
pub(crate) fn resolve(
    program: &str,
    workdir: Option<&std::path::Path>,
    path: Option<&str>,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let check = |p: &std::path::Path| -> Result<(), String> {
        let m = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if m.is_dir() {
            return Err(format!("{} is a directory", p.display()));
        }
        if !m.is_file() || m.permissions().mode() & 0o111 == 0 {
            return Err(format!("{} is not an executable file", p.display()));
        }
        Ok(())
    };
    if program.contains('/') {
        let p = match workdir {
            Some(w) if !program.starts_with('/') => w.join(program),
            _ => PathBuf::from(program),
        };
        check(&p)?;
        return Ok(p);
    }
    let path = path
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut found_unusable = None;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if !candidate.exists() {
            continue;
        }
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) => found_unusable = found_unusable.or(Some(e)),
        }
    }
    Err(found_unusable.unwrap_or_else(|| {
        format!(
            "no executable `{program}` in PATH ({})",
            path.to_string_lossy()
        )
    }))
}

/// Why the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// On its own.
    Exited,
    /// Killed by the timeout.
    TimedOut,
    /// Killed by cancellation.
    Cancelled,
}

/// How it went.
#[derive(Debug, Clone)]
pub struct ProcessOutcome {
    /// Spawn instant (attempt instant when the spawn failed).
    pub started_at: Timestamp,
    /// Exit status, when it exited.
    pub exit_code: Option<i32>,
    /// Killing signal, when killed.
    pub signal: Option<i32>,
    /// Why it ended.
    pub end: EndReason,
    /// Why it could not start.
    pub spawn_error: Option<String>,
}

/// Kills the group when dropped (also if the future running the process is dropped).
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// Run the process to its end, sending output chunks to `output`; its start is read from
/// `clock`.
pub async fn run_process(
    spec: &ProcessSpec,
    output: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
    clock: &dyn tempora_store::clock::Clock,
) -> ProcessOutcome {
    let attempt = clock.now();
    let fail = |e: String| ProcessOutcome {
        started_at: attempt,
        exit_code: None,
        signal: None,
        end: EndReason::Exited,
        spawn_error: Some(e),
    };
    let new_cgroup = || match crate::contain::RunCgroup::create() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(message = "cannot make the run's cgroup; containing it by the sweep", error = %e);
            None
        }
    };
    let mut cgroup = new_cgroup();
    let plan = match crate::start::plan(spec) {
        Ok(p) => p,
        Err(e) => return fail(format!("{}: {e}", spec.command)),
    };
    // A cgroup that cannot take the job (killed or removed by someone else while it waited for
    // reuse) is dropped, and the job started once more in a new one.
    let mut spawned = crate::start::start(&plan, cgroup.as_ref()).await;
    if let Err(crate::start::StartError::Cgroup(e)) = &spawned {
        tracing::warn!(message = "the run's cgroup cannot take processes; trying a new one", error = %e);
        if let Some(c) = &cgroup {
            c.spoil();
        }
        cgroup = new_cgroup();
        spawned = crate::start::start(&plan, cgroup.as_ref()).await;
    }
    let spawned = spawned.map_err(|e| match e {
        crate::start::StartError::Cgroup(e) | crate::start::StartError::Failed(e) => e,
    });
    let (mut child, reader) = match spawned {
        Ok(c) => c,
        Err(e) => {
            let what = match &spec.workdir {
                Some(w) if !w.is_dir() => format!("working directory {}", w.display()),
                _ if spec.shell => "/bin/sh".to_owned(),
                _ => spec.command.clone(),
            };
            return fail(format!("{what}: {e}"));
        }
    };
    let started_at = clock.now();
    let pgid = child.id().map(|p| p as i32);
    if let Some(g) = pgid {
        watchdog_note('+', g);
    }
    let mut guard = GroupGuard(pgid);
    let pump = tokio::spawn(read_output(reader, output));

    let timeout = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let mut end = EndReason::Exited;
    let cg = cgroup.as_ref();
    let status = tokio::select! {
        s = child.wait() => s,
        _ = timeout => { end = EndReason::TimedOut; terminate(&mut child, pgid, cg, spec.kill_grace).await }
        _ = cancel.cancelled() => { end = EndReason::Cancelled; terminate(&mut child, pgid, cg, spec.kill_grace).await }
    };
    // Nothing of the job outlives its main process: its group, then everything it started
    // elsewhere (`setsid`, double fork) — the run's cgroup, or the environment sweep.
    if let Some(g) = pgid {
        let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
        watchdog_note('-', g);
    }
    guard.0 = None;
    match cg {
        Some(c) => c.kill_all(Duration::from_secs(2)).await,
        None => {
            if let Some((_, id)) = spec.env.iter().rev().find(|(k, _)| k == "TEMPORA_RUN_ID") {
                crate::contain::sweep_later(id);
            }
        }
    }
    if let Some(c) = cgroup {
        c.release();
    }
    // Remaining buffered output; a stray holder of the pipe (a process that left the run's
    // containment) cannot keep the run going: the reader is stopped, which also ends the
    // output stream the pool waits on.
    let mut pump = pump;
    if tokio::time::timeout(Duration::from_secs(2), &mut pump)
        .await
        .is_err()
    {
        pump.abort();
        tracing::warn!(
            message = "a process outside the run still holds its output; output reading stopped"
        );
    }
    let (exit_code, signal) = match status {
        Ok(s) => (s.code(), s.signal()),
        Err(e) => {
            tracing::warn!(message = "cannot wait for process", error = %e);
            (None, None)
        }
    };
    ProcessOutcome {
        started_at,
        exit_code,
        signal,
        end,
        spawn_error: None,
    }
}

/// SIGTERM the group (and every process of the run's cgroup), wait up to `grace`, then
/// SIGKILL; returns the leader's status.
async fn terminate(
    child: &mut crate::start::JobChild,
    pgid: Option<i32>,
    cgroup: Option<&crate::contain::RunCgroup>,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(g) = pgid {
        let _ = killpg(Pid::from_raw(g), Signal::SIGTERM);
    }
    for pid in cgroup.map(|c| c.pids()).unwrap_or_default() {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            if let Some(g) = pgid {
                let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
            }
            if let Some(c) = cgroup {
                c.kill_all(Duration::ZERO).await;
            }
            child.wait().await
        }
    }
}

async fn read_output(fd: OwnedFd, output: mpsc::Sender<Bytes>) {
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut receiver_gone = false;
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !receiver_gone
                    && output
                        .send(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                {
                    receiver_gone = true;
                }
            }
        }
    }
}

/// The environment variable carrying the worker's session token into every job process.
pub const SESSION_VAR: &str = "TEMPORA_WORKER_SESSION";

/// The helper's script (`$1` is the session token, `$2` the directory of the runs' cgroups or
/// empty): it keeps the set of live process groups it is told about (`+ PGID`, `- PGID` lines)
/// and, when its input ends — the worker exited or was killed — kills every run cgroup, SIGKILLs
/// the groups, then every process whose environment holds the token (repeated while it finds
/// some, so a process forked during the sweep is caught by the next one).
const WATCHDOG_SCRIPT: &str = r#"pgs=""
while read -r op pg; do
  case "$op" in
    +) pgs="$pgs $pg" ;;
    -) n=""; for p in $pgs; do [ "$p" = "$pg" ] || n="$n $p"; done; pgs="$n" ;;
  esac
done
if [ -n "$2" ]; then
  for f in "$2"/run-*/cgroup.kill; do [ -e "$f" ] && echo 1 > "$f" 2>/dev/null; done
fi
for p in $pgs; do kill -KILL "-$p" 2>/dev/null; done
for round in 1 2 3 4 5; do
  found=""
  for f in $(grep -lzx -F "TEMPORA_WORKER_SESSION=$1" /proc/[0-9]*/environ 2>/dev/null); do
    p=${f#/proc/}; p=${p%/environ}
    [ "$p" = "$$" ] || found="$found $p"
  done
  [ -n "$found" ] || break
  kill -KILL $found 2>/dev/null
done
"#;

/// The running watchdog: its input, and the session token jobs carry.
pub(crate) struct Watchdog {
    stdin: std::sync::Mutex<std::process::ChildStdin>,
    pub(crate) token: String,
}

pub(crate) static WATCHDOG: std::sync::OnceLock<Watchdog> = std::sync::OnceLock::new();

/// `n` random bytes (at most 8) in hex: from the kernel, or — when it cannot be read — from the
/// clock and the pid, which still differ between two processes started on one host.
pub fn random_hex(n: usize) -> String {
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !random {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(40);
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

/// A token no other worker on the host has: the pid and random bytes.
fn session_token() -> String {
    format!("{}-{}", std::process::id(), random_hex(8))
}

/// Start the process-group watchdog: a small `/bin/sh` helper, outside the worker's process
/// group, told the process group of every run as it starts and ends. When the worker dies (even
/// by SIGKILL) the helper's input ends and it kills the groups of the runs still going, so no
/// descendant of a job outlives the worker; it also kills every process carrying the worker's
/// session token ([`SESSION_VAR`]), which covers a job spawned an instant before the death and a
/// descendant that moved to another group or session, and kills the runs' cgroups (call
/// [`crate::contain::init`] first). Idempotent; without it runs get
/// `PR_SET_PDEATHSIG` instead (which reaches only a job's main process).
pub fn start_group_watchdog() -> std::io::Result<()> {
    if WATCHDOG.get().is_some() {
        return Ok(());
    }
    use std::os::unix::process::CommandExt;
    let token = session_token();
    let cgroups = match crate::contain::current() {
        crate::contain::Containment::Cgroup(dir) => dir.display().to_string(),
        crate::contain::Containment::Sweep => String::new(),
    };
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", WATCHDOG_SCRIPT, "tempora-watchdog", &token, &cgroups])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("watchdog stdin missing"))?;
    // The helper ends on its own when its input ends (when this process ends); it is not waited
    // for.
    drop(child);
    let _ = WATCHDOG.set(Watchdog {
        stdin: std::sync::Mutex::new(stdin),
        token,
    });
    Ok(())
}

/// The session token this worker's job processes carry ([`SESSION_VAR`]), when the watchdog
/// runs.
pub fn worker_session() -> Option<&'static str> {
    WATCHDOG.get().map(|w| w.token.as_str())
}

fn watchdog_note(op: char, pgid: i32) {
    use std::io::Write;
    if let Some(w) = WATCHDOG.get()
        && let Ok(mut w) = w.stdin.lock()
        && let Err(e) = writeln!(w, "{op} {pgid}")
    {
        tracing::warn!(message = "process-group watchdog unavailable", error = %e);
    }
}
