//! Starting a job's process straight inside its run's cgroup: `clone3(CLONE_VM | CLONE_VFORK |
//! CLONE_INTO_CGROUP | CLONE_PIDFD)`, then `execve`.
//!
//! Why not `Command`: a process that joins a cgroup after it started (writing `cgroup.procs`)
//! makes the kernel take its cgroup thread-group lock for writing, which waits for every fork and
//! exit on the machine; at a thousand runs a second those moves serialise and cost about a
//! quarter of the drain throughput. A process created inside the cgroup takes that lock only for
//! reading, like any fork. Rust's `Command` cannot pass a cgroup to the spawn (glibc's
//! `posix_spawnattr_setcgroup_np` arrived in 2.41, after Debian 12's 2.36), so this module spawns
//! on its own, the way `posix_spawn` does: the child shares the worker's memory and the calling
//! thread is suspended until the child has exec'd (no copy of the page tables), and the child
//! runs nothing but raw system calls on a stack of its own (no allocation, no lock, no libc
//! wrapper, no `errno`) until `execve`.
//!
//! The child: signal handlers reset to the default (SIGPIPE too, which Rust ignores), its own
//! process group, stdin `/dev/null` and stdout/stderr the run's output pipe, the user switch of
//! `run_as`, the parent-death signal when asked, the working directory, an empty signal mask,
//! `execve` with exactly the environment given. A failing step writes its number and `errno`
//! where the parent reads them once the child is gone, so the run fails with the real reason.
//!
//! x86-64 Linux only (the `clone3` call needs a few lines of assembly: the child starts on its
//! new stack); elsewhere, and where `clone3` is refused (kernels before 5.7; seccomp profiles
//! such as Docker's default answer ENOSYS), [`available`] is false and the worker spawns with
//! `Command`, joining the cgroup from the child instead.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Whether jobs are spawned by this module (cleared for good when the kernel refuses `clone3`).
static ENABLED: AtomicBool =
    AtomicBool::new(cfg!(all(target_os = "linux", target_arch = "x86_64")));

/// Whether [`spawn`] may be used: on x86-64 Linux, until the kernel refused `clone3` once.
pub fn available() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Spawn with `Command` from now on (tests of that path; also what a refused `clone3` does).
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Everything the child needs, prepared by the parent.
#[derive(Debug)]
pub struct Launch {
    /// Absolute path of the program.
    pub program: CString,
    /// argv, program name first.
    pub argv: Vec<CString>,
    /// The whole environment, `NAME=value`.
    pub env: Vec<CString>,
    /// Working directory.
    pub cwd: Option<CString>,
    /// Switch to this uid, gid and group list (the worker runs as root).
    pub ids: Option<(u32, u32, Vec<u32>)>,
    /// `PR_SET_PDEATHSIG = SIGKILL` (when no watchdog covers the worker's death).
    pub pdeathsig: bool,
}

/// Why a spawn failed.
#[derive(Debug)]
pub enum SpawnError {
    /// The kernel refused `clone3` itself (errno): nothing was started.
    Clone(i32),
    /// The child could not get to `execve`, or `execve` failed.
    Child(std::io::Error),
    /// The child was killed before it ran anything: its cgroup had been killed once (see
    /// [`crate::contain::RunCgroup::spoil`]).
    KilledAtStart,
}

/// The steps of the child, for the error a failing one reports.
const STEPS: [&str; 8] = [
    "",
    "cannot set up the process group",
    "cannot attach the output",
    "cannot set the groups",
    "cannot set the group id",
    "cannot set the user id",
    "cannot change to the working directory",
    "cannot execute",
];

/// The child's view of the launch: raw pointers into the parent's memory, valid while the parent
/// thread is suspended in `clone3`.
#[repr(C)]
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdin: i32,
    output: i32,
    switch: bool,
    uid: u32,
    gid: u32,
    groups: *const u32,
    ngroups: usize,
    pdeathsig: bool,
    /// Written by a failing child: step number << 16 | errno.
    failed: std::sync::atomic::AtomicI32,
    /// Set by the child first thing: it ran.
    started: AtomicBool,
}

/// The kernel's `struct clone_args` (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_VM: u64 = 0x100;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const CLONE_PARENT_SETTID: u64 = 0x0010_0000;

/// A child that has not exec'd this long after the spawn is killed: the spawning thread is
/// suspended until it does, and a run's timeout starts only once it has.
pub const SPAWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// One spawning thread's spawn in flight, watched by the deadline thread.
#[derive(Default)]
struct InFlight {
    /// The child's pid, written by the kernel (`CLONE_PARENT_SETTID`) before the child runs;
    /// 0 when no spawn is in flight.
    pid: std::sync::atomic::AtomicI32,
    /// When the spawn started (milliseconds on [`epoch_ms`]'s clock).
    since_ms: std::sync::atomic::AtomicU64,
    /// The deadline thread killed the child.
    killed: AtomicBool,
}

/// Every spawning thread's slot.
static IN_FLIGHT: std::sync::Mutex<Vec<std::sync::Arc<InFlight>>> =
    std::sync::Mutex::new(Vec::new());

/// Milliseconds since the first call (a monotonic clock shared by the spawners and the
/// deadline thread).
fn epoch_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// This thread's slot (registered, and the deadline thread started, on first use).
fn in_flight() -> std::sync::Arc<InFlight> {
    thread_local! {
        static SLOT: std::sync::Arc<InFlight> = {
            let slot = std::sync::Arc::new(InFlight::default());
            if let Ok(mut all) = IN_FLIGHT.lock() {
                all.push(slot.clone());
            }
            static WATCHER: std::sync::Once = std::sync::Once::new();
            WATCHER.call_once(|| {
                let started = std::thread::Builder::new()
                    .name("spawn-deadline".into())
                    .spawn(watch_deadlines);
                if let Err(e) = started {
                    tracing::warn!(message = "cannot start the spawn deadline thread", error = %e);
                }
            });
            slot
        };
    }
    SLOT.with(|s| s.clone())
}

/// Kill every child that has been starting for longer than [`SPAWN_DEADLINE`].
fn watch_deadlines() {
    let deadline = u64::try_from(SPAWN_DEADLINE.as_millis()).unwrap_or(u64::MAX);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let slots: Vec<_> = match IN_FLIGHT.lock() {
            Ok(all) => all.clone(),
            Err(_) => return,
        };
        let now = epoch_ms();
        for slot in slots {
            let pid = slot.pid.load(Ordering::Acquire);
            let since = slot.since_ms.load(Ordering::Acquire);
            if pid > 0
                && now.saturating_sub(since) > deadline
                && !slot.killed.load(Ordering::Acquire)
            {
                slot.killed.store(true, Ordering::Release);
                // SAFETY: kill(2) of a child that cannot have been reaped yet: its spawning
                // thread is still suspended in clone3, so the pid is still this child's.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                tracing::warn!(
                    message = "a job's process did not start within the spawn deadline; killed",
                    pid,
                    deadline_secs = SPAWN_DEADLINE.as_secs()
                );
            }
        }
    }
}

/// Bytes of the child's stack; it runs one small function with no allocation.
const STACK_WORDS: usize = 4096; // 64 KiB of u128 (16-byte aligned, as the ABI wants)

thread_local! {
    /// One stack per spawning thread: the thread is suspended while its child uses it.
    static STACK: std::cell::RefCell<Vec<u128>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A started process, reaped through its pidfd.
#[derive(Debug)]
pub struct RawChild {
    pid: i32,
    pidfd: OwnedFd,
}

impl RawChild {
    /// Its pid (also its process group).
    pub fn id(&self) -> u32 {
        self.pid as u32
    }
}

/// Start `launch` with stdin from `stdin` and stdout/stderr into `output`, inside the cgroup
/// whose directory `cgroup` is open (or where the worker is, with None).
pub fn spawn(
    launch: &Launch,
    cgroup: Option<BorrowedFd<'_>>,
    stdin: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
) -> Result<RawChild, SpawnError> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        spawn_x86_64(launch, cgroup, stdin, output)
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        let _ = (launch, cgroup, stdin, output);
        Err(SpawnError::Clone(libc::ENOSYS))
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn spawn_x86_64(
    launch: &Launch,
    cgroup: Option<BorrowedFd<'_>>,
    stdin: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
) -> Result<RawChild, SpawnError> {
    let nul_terminated = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let argv = nul_terminated(&launch.argv);
    let envp = nul_terminated(&launch.env);
    let (switch, uid, gid, groups) = match &launch.ids {
        Some((u, g, gs)) => (true, *u, *g, gs.as_slice()),
        None => (false, 0, 0, &[][..]),
    };
    let args = ChildArgs {
        program: launch.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: launch.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        stdin: stdin.as_raw_fd(),
        output: output.as_raw_fd(),
        switch,
        uid,
        gid,
        groups: groups.as_ptr(),
        ngroups: groups.len(),
        pdeathsig: launch.pdeathsig,
        failed: std::sync::atomic::AtomicI32::new(0),
        started: AtomicBool::new(false),
    };
    STACK.with(|stack| {
        let mut stack = stack.borrow_mut();
        if stack.is_empty() {
            stack.resize(STACK_WORDS, 0);
        }
        let mut pidfd: i32 = -1;
        let slot = in_flight();
        slot.pid.store(0, Ordering::Release);
        slot.killed.store(false, Ordering::Release);
        slot.since_ms.store(epoch_ms(), Ordering::Release);
        let mut cl = CloneArgs {
            flags: CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_PARENT_SETTID,
            pidfd: (&raw mut pidfd) as u64,
            parent_tid: slot.pid.as_ptr() as u64,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.as_mut_ptr() as u64,
            stack_size: (stack.len() * std::mem::size_of::<u128>()) as u64,
            ..CloneArgs::default()
        };
        if let Some(cg) = cgroup {
            cl.flags |= CLONE_INTO_CGROUP;
            cl.cgroup = cg.as_raw_fd() as u64;
        }
        // Every signal blocked across the clone: a handler of the worker must not run in the
        // child, which shares its memory, before the child has reset it.
        // SAFETY: sigfillset and pthread_sigmask on local sets; the old mask is put back below.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // SAFETY: `cl` describes a stack this thread owns and does not touch until the call
        // returns (CLONE_VFORK suspends it until the child has exec'd or exited); `args` and
        // everything it points to live on this frame for as long; `child_main` only makes raw
        // system calls.
        let ret = unsafe {
            clone3(
                &mut cl,
                std::mem::size_of::<CloneArgs>(),
                child_main,
                (&raw const args).cast_mut().cast(),
            )
        };
        slot.pid.store(0, Ordering::Release);
        // SAFETY: restores the mask saved above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
        if ret < 0 {
            return Err(SpawnError::Clone(-ret as i32));
        }
        let pid = ret as i32;
        // SAFETY: the kernel wrote a new descriptor (close-on-exec) for the child into `pidfd`.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let failed = args.failed.load(Ordering::Acquire);
        if slot.killed.load(Ordering::Acquire) {
            // SAFETY: reaping our own child, which was killed.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            return Err(SpawnError::Child(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the process did not start within {} s (stuck before exec: a frozen cgroup, a \
                     hung file system?) and was killed",
                    SPAWN_DEADLINE.as_secs()
                ),
            )));
        }
        if !args.started.load(Ordering::Acquire) {
            // Killed before its first instruction (the kernel does that to a process spawned
            // into a cgroup that was killed once).
            let mut status = 0;
            // SAFETY: waitpid on our own child, which has exited.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return Err(SpawnError::KilledAtStart);
        }
        if failed != 0 {
            // The child has exited: reap it.
            let mut status = 0;
            // SAFETY: waitpid on our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            let step = STEPS.get((failed >> 16) as usize).copied().unwrap_or("");
            let err = std::io::Error::from_raw_os_error(failed & 0xffff);
            return Err(SpawnError::Child(
                if step.is_empty() || step == "cannot execute" {
                    err
                } else {
                    std::io::Error::new(err.kind(), format!("{step}: {err}"))
                },
            ));
        }
        Ok(RawChild { pid, pidfd })
    })
}

/// `clone3`, then in the child: `exit(f(arg))` on the new stack.
///
/// # Safety
/// `cl` must give a stack the child may use; `f` must not return into Rust frames (it runs on
/// that stack) and may only make raw system calls while it shares the parent's memory.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
unsafe fn clone3(
    cl: *mut CloneArgs,
    size: usize,
    f: extern "C" fn(*mut libc::c_void) -> i32,
    arg: *mut libc::c_void,
) -> i64 {
    let ret: i64;
    // SAFETY: per the function's contract. In the child (rax = 0) the kernel has set rsp to the
    // top of the new stack: clear the frame pointer, call f(arg), then exit(2) with its value —
    // the child never comes back to this frame.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, 60",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") cl,
            in("rsi") size,
            in("r12") f,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A raw system call with up to four arguments; returns the kernel's value (−errno on failure).
///
/// # Safety
/// The arguments must be what system call `n` expects.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
unsafe fn sys(n: i64, a: u64, b: u64, c: u64, d: u64) -> i64 {
    let ret: i64;
    // SAFETY: per the function's contract.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// The kernel's `struct sigaction` on x86-64.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// The child, from `clone3` to `execve`: raw system calls only (it shares the parent's memory,
/// and the parent thread's libc state is not its own).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
extern "C" fn child_main(arg: *mut libc::c_void) -> i32 {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive while the parent is suspended; every call
    // below is a system call on values prepared by the parent.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        a.started.store(true, Ordering::Release);
        let fail = |step: i32, ret: i64| {
            a.failed
                .store((step << 16) | (-ret as i32 & 0xffff), Ordering::Release);
            127
        };
        // Every signal goes back to its default action: handlers belong to the parent, and a
        // signal the server was started with ignored (`nohup`: SIGHUP; a shell's background job:
        // SIGINT, SIGQUIT; Rust: SIGPIPE) is not the job's business.
        for sig in 1..=64u64 {
            if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
                continue;
            }
            let mut old = KernelSigaction {
                handler: 0,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            if sys(libc::SYS_rt_sigaction, sig, 0, (&raw mut old) as u64, 8) < 0 {
                continue;
            }
            if old.handler != libc::SIG_DFL {
                let dfl = KernelSigaction {
                    handler: libc::SIG_DFL,
                    flags: 0,
                    restorer: 0,
                    mask: 0,
                };
                sys(libc::SYS_rt_sigaction, sig, (&raw const dfl) as u64, 0, 8);
            }
        }
        let r = sys(libc::SYS_setpgid, 0, 0, 0, 0);
        if r < 0 {
            return fail(1, r);
        }
        for (from, to) in [(a.stdin, 0), (a.output, 1), (a.output, 2)] {
            let r = sys(libc::SYS_dup2, from as u64, to, 0, 0);
            if r < 0 {
                return fail(2, r);
            }
        }
        // Nothing else of the worker's: its descriptors are close-on-exec, but a child stuck
        // before `execve` (a frozen cgroup, a hung file system) would hold them — the data
        // directory's lock, the watchdog's pipe — and a descriptor the worker inherited without
        // close-on-exec would reach the job. (Linux 5.9+; older kernels leave exec to it.)
        sys(libc::SYS_close_range, 3, u64::from(u32::MAX), 0, 0);
        if a.switch {
            let r = sys(libc::SYS_setgroups, a.ngroups as u64, a.groups as u64, 0, 0);
            if r < 0 {
                return fail(3, r);
            }
            let r = sys(libc::SYS_setgid, u64::from(a.gid), 0, 0, 0);
            if r < 0 {
                return fail(4, r);
            }
            let r = sys(libc::SYS_setuid, u64::from(a.uid), 0, 0, 0);
            if r < 0 {
                return fail(5, r);
            }
        }
        if a.pdeathsig {
            // After the user switch, which clears it.
            sys(
                libc::SYS_prctl,
                libc::PR_SET_PDEATHSIG as u64,
                libc::SIGKILL as u64,
                0,
                0,
            );
        }
        if !a.cwd.is_null() {
            let r = sys(libc::SYS_chdir, a.cwd as u64, 0, 0, 0);
            if r < 0 {
                return fail(6, r);
            }
        }
        let empty: u64 = 0;
        sys(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as u64,
            (&raw const empty) as u64,
            0,
            8,
        );
        let r = sys(
            libc::SYS_execve,
            a.program as u64,
            a.argv as u64,
            a.envp as u64,
            0,
        );
        fail(7, r)
    }
}

/// Start `/bin/sh -c 'exit 0'` straight into the cgroup `cgroup` and wait for it: an error
/// unless it exits with 0 (the kernel refused the spawn, or killed the process).
pub fn probe(cgroup: BorrowedFd<'_>) -> std::io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(std::io::Error::other);
    let launch = Launch {
        program: c("/bin/sh")?,
        argv: vec![c("sh")?, c("-c")?, c("exit 0")?],
        env: Vec::new(),
        cwd: None,
        ids: None,
        pdeathsig: false,
    };
    let null: OwnedFd = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into();
    use std::os::fd::AsFd;
    let child = match spawn(&launch, Some(cgroup), null.as_fd(), null.as_fd()) {
        Ok(c) => c,
        Err(SpawnError::Clone(errno)) => return Err(std::io::Error::from_raw_os_error(errno)),
        Err(SpawnError::Child(e)) => return Err(e),
        Err(SpawnError::KilledAtStart) => {
            return Err(std::io::Error::other(
                "the probe process was killed at its start",
            ));
        }
    };
    let mut status = 0;
    // SAFETY: a blocking waitpid on our own child.
    if unsafe { libc::waitpid(child.pid, &mut status, 0) } != child.pid {
        return Err(std::io::Error::last_os_error());
    }
    let status = ExitStatus::from_raw(status);
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the probe process ended with {status}"
        )))
    }
}

/// Waits for a [`RawChild`] on the runtime; SIGKILLs and reaps it if dropped before it ended.
#[derive(Debug)]
pub struct ChildWaiter {
    pid: i32,
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
}

impl ChildWaiter {
    /// Register the child's pidfd with the runtime (call on it).
    pub fn new(child: RawChild) -> std::io::Result<ChildWaiter> {
        let pid = child.pid;
        // SAFETY: an OwnedFd keeps its descriptor open, unchanged, for the AsyncFd's lifetime.
        let registered =
            unsafe { AsyncFd::register_with_interest(child.pidfd, Interest::READABLE) };
        let pidfd = match registered.map_err(std::io::Error::from) {
            Ok(fd) => fd,
            Err(e) => {
                // SAFETY: kill and reap our own child, which cannot be waited for otherwise.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
                return Err(e);
            }
        };
        Ok(ChildWaiter {
            pid,
            pidfd: Some(pidfd),
            status: None,
        })
    }

    /// Its pid.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Wait until it exits (cancel-safe).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let Some(fd) = &self.pidfd else {
            return Err(std::io::Error::other("the process is no longer tracked"));
        };
        let status = reap(self.pid, fd).await?;
        self.status = Some(status);
        Ok(status)
    }
}

/// Wait for the pidfd to be readable (the process exited), then collect its status.
async fn reap(pid: i32, fd: &AsyncFd<OwnedFd>) -> std::io::Result<ExitStatus> {
    loop {
        let mut ready = fd.readable().await?;
        let mut status = 0;
        // SAFETY: waitpid without blocking on our own child, whose pid cannot be reused before
        // it is reaped here.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(ExitStatus::from_raw(status));
        }
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        ready.clear_ready();
    }
}

impl Drop for ChildWaiter {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let Some(fd) = self.pidfd.take() else {
            return;
        };
        // SAFETY: pidfd_send_signal on the child's own pidfd: it cannot reach another process.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
        let pid = self.pid;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = reap(pid, &fd).await;
            });
        }
    }
}
