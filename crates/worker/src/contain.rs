//! Run containment: every process a run starts ends with the run — including ones that left its
//! process group (`setsid`) or were double-forked.
//!
//! **cgroup v2** where the machine allows it: each run gets its own cgroup, which the job's first
//! process joins before it executes anything; when the run ends (its main process exited, or
//! timeout/cancel), `cgroup.kill` kills whatever is left in it, and the run waits until the
//! cgroup is empty. A process cannot leave its cgroup without write access to the hierarchy, so
//! this holds against any job that does not run as root.
//!
//! Detection (once, at start): a `cgroup2` mount in `/proc/self/mountinfo` (the unified
//! hierarchy, on pure v2 systems `/sys/fs/cgroup`, on hybrid ones `/sys/fs/cgroup/unified`), this
//! process's own cgroup from `/proc/self/cgroup` (`0::/path`), and a directory
//! `tempora-<pid>` that this process can create below it, with `cgroup.kill` (Linux 5.14+). No
//! controllers are needed: only the grouping and the kill are used.
//!
//! **Otherwise, a sweep** (best effort): within 200 ms of the run's end, and for 5 s after,
//! every process whose environment holds the run's `TEMPORA_RUN_ID` and this worker's session
//! token is killed (one background pass over `/proc` for all recently ended runs). A process
//! that clears its environment escapes it; the cgroup cannot be escaped that way.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How runs are contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// cgroup v2 if available, else the sweep.
    Auto,
    /// cgroup v2; starting fails if it is not available.
    Cgroup,
    /// The environment sweep only.
    Sweep,
}

/// What was set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// One cgroup per run below this directory.
    Cgroup(PathBuf),
    /// The environment sweep.
    Sweep,
}

static CONTAINMENT: OnceLock<Containment> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Set containment up (once per process; later calls return the first result).
pub fn init(mode: Mode) -> std::io::Result<&'static Containment> {
    if let Some(c) = CONTAINMENT.get() {
        return Ok(c);
    }
    let found = match mode {
        Mode::Sweep => Containment::Sweep,
        Mode::Auto => match cgroup_base() {
            Ok(dir) => Containment::Cgroup(dir),
            Err(e) => {
                tracing::info!(message = "no usable cgroup v2: runs are contained by the environment sweep", reason = %e);
                Containment::Sweep
            }
        },
        Mode::Cgroup => Containment::Cgroup(cgroup_base()?),
    };
    Ok(CONTAINMENT.get_or_init(|| found))
}

/// The containment in use (the sweep if [`init`] was not called).
pub fn current() -> &'static Containment {
    CONTAINMENT.get().unwrap_or(&Containment::Sweep)
}

/// Find the unified hierarchy and make this process's directory in it.
fn cgroup_base() -> std::io::Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    // Fields: id parent major:minor root mount-point options ... - fstype source super-options
    let mount = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
                .flatten()
        })
        .ok_or_else(|| std::io::Error::other("no cgroup2 mount"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .ok_or_else(|| std::io::Error::other("no cgroup v2 entry in /proc/self/cgroup"))?;
    let parent = mount.join(own.trim_start_matches('/'));
    remove_stale(&parent);
    let dir = parent.join(format!("tempora-{}", std::process::id()));
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if !dir.join("cgroup.kill").exists() {
        let _ = std::fs::remove_dir(&dir);
        return Err(std::io::Error::other(
            "cgroup.kill is missing (Linux 5.14 or later is needed)",
        ));
    }
    // A probe run cgroup: creating children must work too; and a process started straight
    // into one must run (else jobs are started the slower way, joining it themselves).
    let probe = dir.join("probe");
    std::fs::create_dir(&probe)?;
    if crate::spawn::available() {
        let fd = OwnedFd::from(std::fs::File::open(&probe)?);
        if let Err(e) = crate::spawn::probe(std::os::fd::AsFd::as_fd(&fd)) {
            crate::spawn::disable();
            tracing::info!(message = "a process started into a cgroup does not run; jobs join their cgroup themselves", reason = %e);
        }
    }
    std::fs::remove_dir(&probe)?;
    tracing::info!(message = "runs are contained by cgroup v2", dir = %dir.display());
    Ok(dir)
}

/// At exit, once every run has ended: remove this process's directory of run cgroups (it stays,
/// to be cleaned by a later start, if something is still in it).
pub fn cleanup() {
    if let Ok(mut free) = FREE.lock() {
        free.clear();
    }
    if let Containment::Cgroup(dir) = current() {
        remove_tree(dir);
    }
}

/// Kill what is left in the directories of earlier processes that are gone (`tempora-<pid>`:
/// a worker killed with its watchdog), then remove them.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("tempora-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_tree(&e.path());
            remove_tree(&e.path());
        }
    }
}

/// Kill every process in a cgroup and its descendants (`cgroup.kill` covers the subtree), and
/// wait up to a second for them to go.
fn kill_tree(dir: &Path) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))
    {
        let _ = f.write_all(b"1");
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline
        && std::fs::read_to_string(dir.join("cgroup.events"))
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "populated 1"))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Remove a cgroup directory and the cgroups below it (deepest first).
fn remove_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for c in children.flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&c.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// One run's cgroup; removed when dropped (after [`RunCgroup::kill_all`]).
#[derive(Debug)]
pub struct RunCgroup {
    dir: PathBuf,
    /// `cgroup.procs`, opened before the fork: the child writes `0` to it to join.
    procs: OwnedFd,
    /// The directory, for a spawn straight into the cgroup (`CLONE_INTO_CGROUP`).
    dir_fd: OwnedFd,
    /// Not to be used again (see [`RunCgroup::release`]).
    spoiled: std::sync::atomic::AtomicBool,
}

impl RunCgroup {
    /// Make a new cgroup for a run under the containment's directory (None with the sweep).
    pub fn create() -> std::io::Result<Option<RunCgroup>> {
        let Containment::Cgroup(base) = current() else {
            return Ok(None);
        };
        // An empty cgroup of an earlier run is used again (making and removing one per run
        // costs ~10 % of the drain rate), if it still exists (a job or an operator running as
        // root may have removed it).
        while let Some(cg) = FREE.lock().ok().and_then(|mut f| f.pop()) {
            if cg.dir.join("cgroup.events").exists() {
                return Ok(Some(cg));
            }
        }
        let dir = base.join(format!("run-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir(&dir)?;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map(OwnedFd::from)
            .and_then(|procs| Ok((procs, OwnedFd::from(std::fs::File::open(&dir)?))));
        match procs {
            Ok((procs, dir_fd)) => Ok(Some(RunCgroup {
                dir,
                procs,
                dir_fd,
                spoiled: std::sync::atomic::AtomicBool::new(false),
            })),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// The cgroup's `cgroup.procs`: a process that writes `0` to it joins the cgroup.
    pub fn procs_path(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The descriptor the child writes `0` to (in `pre_exec`) to join the cgroup.
    pub fn procs_fd(&self) -> i32 {
        self.procs.as_raw_fd()
    }

    /// A descriptor of the cgroup's directory, for a spawn into it.
    pub fn dir_fd(&self) -> std::io::Result<OwnedFd> {
        self.dir_fd.try_clone()
    }

    /// The processes in the cgroup now.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    fn populated(&self) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.events"))
            .map(|t| t.lines().any(|l| l.trim() == "populated 1"))
            .unwrap_or(false)
    }

    /// Kill every process in the cgroup and wait (up to `wait`) until it is empty.
    pub async fn kill_all(&self, wait: Duration) {
        if !self.populated() {
            return;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
        {
            Ok(mut f) => {
                self.spoil();
                if let Err(e) = f.write_all(b"1") {
                    tracing::warn!(message = "cannot kill the run's cgroup", error = %e);
                }
            }
            Err(e) => tracing::warn!(message = "cannot open cgroup.kill", error = %e),
        }
        let deadline = Instant::now() + wait;
        while self.populated() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Empty run cgroups kept for the next runs.
static FREE: std::sync::Mutex<Vec<RunCgroup>> = std::sync::Mutex::new(Vec::new());
/// Most empty cgroups kept.
const FREE_MAX: usize = 1024;

impl RunCgroup {
    /// Never use this cgroup again: it was killed (`cgroup.kill`), or a process spawned into it
    /// did not run. Linux 6.18 kills at once any process spawned with `CLONE_INTO_CGROUP` into
    /// a cgroup that `cgroup.kill` was ever written to (it compares the kill counts of the
    /// parent's cgroup and of the target) — by tempora, by a job running as root, or by an
    /// operator.
    pub fn spoil(&self) {
        self.spoiled.store(true, Ordering::Relaxed);
    }

    /// Done with the cgroup: kept for another run when it is empty and not spoiled, removed
    /// otherwise.
    pub fn release(self) {
        if !self.spoiled.load(Ordering::Relaxed)
            && !self.populated()
            && let Ok(mut free) = FREE.lock()
            && free.len() < FREE_MAX
        {
            free.push(self);
        }
        // Dropped otherwise (removed, if it can be).
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        // With the cgroups a job made below its own; fails while processes remain (then a
        // later start cleans it).
        remove_tree(&self.dir);
    }
}

/// Runs that ended, whose strays the sweeper kills, with when they ended.
static ENDED: std::sync::Mutex<Vec<(String, Instant)>> = std::sync::Mutex::new(Vec::new());
static SWEEPER: OnceLock<()> = OnceLock::new();
/// How often the sweeper looks, while some run ended recently.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// How long after its end a run's strays are looked for.
const SWEEP_FOR: Duration = Duration::from_secs(5);

/// The sweep: the run ended; within [`SWEEP_EVERY`] every process whose environment holds
/// `TEMPORA_RUN_ID=<run_id>` and this worker's session token (when the watchdog runs: another
/// server on the host may have a run with the same id) gets SIGKILL, and again for a few
/// seconds (a process forked during one pass is caught by the next). One background thread
/// reads `/proc` once per pass for every run that ended, so the cost does not grow with the
/// rate of runs.
pub fn sweep_later(run_id: &str) {
    if let Ok(mut ended) = ENDED.lock() {
        ended.push((run_id.to_owned(), Instant::now()));
    }
    SWEEPER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("run-sweeper".into())
            .spawn(sweeper);
        if let Err(e) = spawned {
            tracing::warn!(message = "cannot start the run sweeper", error = %e);
        }
    });
}

fn sweeper() {
    loop {
        std::thread::sleep(SWEEP_EVERY);
        let runs: Vec<String> = match ENDED.lock() {
            Ok(mut ended) => {
                ended.retain(|(_, at)| at.elapsed() < SWEEP_FOR);
                ended.iter().map(|(id, _)| id.clone()).collect()
            }
            Err(_) => return,
        };
        if !runs.is_empty() {
            let n = sweep(&runs, crate::process::worker_session());
            if n > 0 {
                tracing::debug!(
                    message = "stray processes of ended runs killed",
                    processes = n
                );
            }
        }
    }
}

/// One pass: SIGKILL every process whose environment holds the session token (when given) and
/// `TEMPORA_RUN_ID=` one of `run_ids`. Returns how many it signalled.
fn sweep(run_ids: &[String], session: Option<&str>) -> usize {
    let needles: Vec<String> = run_ids
        .iter()
        .map(|id| format!("TEMPORA_RUN_ID={id}"))
        .collect();
    let session = session.map(|s| format!("{}={s}", crate::process::SESSION_VAR));
    let me = std::process::id() as i32;
    let mut killed = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let has = |n: &str| env.split(|b| *b == 0).any(|v| v == n.as_bytes());
        if session.as_deref().is_none_or(has) && needles.iter().any(|n| has(n)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed += 1;
        }
    }
    killed
}
