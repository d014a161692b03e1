//! The process executor with real processes: exit codes, signals, combined output order,
//! streaming, timeout and cancel of the whole group, no descendant left behind, a run's cgroup
//! and its user. Every case runs twice: spawned by `clone3` straight into the run's cgroup, and
//! by `Command` (the fallback where the kernel refuses `clone3`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tempora_worker::process::{EndReason, ProcessOutcome, ProcessSpec, run_process};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn sh(cmd: &str) -> ProcessSpec {
    ProcessSpec {
        command: cmd.to_owned(),
        shell: true,
        arguments: Vec::new(),
        env: Vec::new(),
        workdir: None,
        timeout: None,
        kill_grace: Duration::from_millis(500),
        run_as: None,
    }
}

async fn run(spec: ProcessSpec) -> (ProcessOutcome, String) {
    run_with(spec, CancellationToken::new()).await
}

async fn run_with(spec: ProcessSpec, cancel: CancellationToken) -> (ProcessOutcome, String) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let collect = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        String::from_utf8_lossy(&out).to_string()
    });
    let o = run_process(&spec, tx, cancel, &tempora_store::clock::SystemClock).await;
    (o, collect.await.unwrap())
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

async fn exit_codes_and_signals() {
    let (o, _) = run(sh("exit 0")).await;
    assert_eq!(
        (o.exit_code, o.signal, o.end),
        (Some(0), None, EndReason::Exited)
    );
    let (o, _) = run(sh("exit 3")).await;
    assert_eq!(o.exit_code, Some(3));
    let (o, _) = run(sh("kill -9 $$")).await;
    assert_eq!((o.exit_code, o.signal), (None, Some(9)));
}

async fn output_order_env_workdir_and_argv() {
    let (_, out) = run(sh("echo a; echo b >&2; echo c")).await;
    assert_eq!(out, "a\nb\nc\n");
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh("echo $FOO; pwd; echo \"$1-$2\"");
    spec.env = vec![("FOO".into(), "bar".into())];
    spec.workdir = Some(dir.path().to_owned());
    spec.arguments = vec!["x".into(), "y z".into()];
    let (o, out) = run(spec).await;
    assert_eq!(o.exit_code, Some(0));
    let canon = dir.path().canonicalize().unwrap();
    assert_eq!(out, format!("bar\n{}\nx-y z\n", canon.display()));
    let spec = ProcessSpec {
        command: "printf".into(),
        shell: false,
        arguments: vec!["%s|%s".into(), "a b".into(), "$HOME".into()],
        ..sh("")
    };
    let (o, out) = run(spec).await;
    assert_eq!((o.exit_code, out.as_str()), (Some(0), "a b|$HOME"));
}

async fn spawn_errors() {
    let spec = ProcessSpec {
        command: "definitely-not-a-program".into(),
        shell: false,
        ..sh("")
    };
    let (o, _) = run(spec).await;
    assert!(
        o.spawn_error
            .as_deref()
            .unwrap()
            .contains("definitely-not-a-program")
    );
    let mut spec = sh("true");
    spec.workdir = Some("/no/such/dir".into());
    let (o, _) = run(spec).await;
    assert!(
        o.spawn_error.as_deref().unwrap().contains("/no/such/dir"),
        "{:?}",
        o.spawn_error
    );
}

async fn large_output_arrives_whole_and_streams_while_running() {
    let (_, out) = run(sh("head -c 5000000 /dev/zero | tr '\\0' x")).await;
    assert_eq!(out.len(), 5_000_000);
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let start = Instant::now();
    let h = tokio::spawn(async move {
        run_process(
            &sh("echo first; sleep 2; echo second"),
            tx,
            CancellationToken::new(),
            &tempora_store::clock::SystemClock,
        )
        .await
    });
    let first = rx.recv().await.unwrap();
    assert_eq!(&first[..], b"first\n");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "first chunk took {:?}",
        start.elapsed()
    );
    h.await.unwrap();
}

async fn timeout_terms_then_kills_the_group() {
    let start = Instant::now();
    let mut spec = sh("sleep 30");
    spec.timeout = Some(Duration::from_millis(300));
    let (o, _) = run(spec).await;
    assert_eq!(o.end, EndReason::TimedOut);
    assert_eq!(o.signal, Some(15));
    assert!(start.elapsed() < Duration::from_secs(3));
    // Ignores SIGTERM: SIGKILL after the grace.
    let start = Instant::now();
    let mut spec = sh("trap '' TERM; sleep 30");
    spec.timeout = Some(Duration::from_millis(300));
    let (o, _) = run(spec).await;
    assert_eq!((o.end, o.signal), (EndReason::TimedOut, Some(9)));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

async fn no_descendant_survives_timeout_cancel_or_normal_exit() {
    let dir = tempfile::tempdir().unwrap();
    for (i, how) in ["timeout", "cancel", "exit"].iter().enumerate() {
        let pidfile = dir.path().join(format!("{i}.pid"));
        // The grandchild keeps stdout open too: it must not make run_process hang.
        let tail = if *how == "exit" { "exit 0" } else { "sleep 30" };
        let mut spec = sh(&format!(
            "sleep 1000 & echo $! > {}; {tail}",
            pidfile.display()
        ));
        let cancel = CancellationToken::new();
        if *how == "timeout" {
            spec.timeout = Some(Duration::from_millis(500));
        }
        if *how == "cancel" {
            let c = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                c.cancel();
            });
        }
        let start = Instant::now();
        let (o, _) = run_with(spec, cancel).await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{how}: took {:?}",
            start.elapsed()
        );
        let expected = match *how {
            "timeout" => EndReason::TimedOut,
            "cancel" => EndReason::Cancelled,
            _ => EndReason::Exited,
        };
        assert_eq!(o.end, expected, "{how}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(pid), "{how}: grandchild {pid} survived");
    }
}

/// Whether this (root) process may make cgroups in a cgroup2 hierarchy; under `CI=true` it must.
fn cgroups_here() -> bool {
    let possible = nix::unistd::Uid::effective().is_root()
        && std::fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|m| m.lines().any(|l| l.contains(" - cgroup2 ")));
    assert!(
        possible || std::env::var("CI").as_deref() != Ok("true"),
        "CI's machine offers cgroup v2 to root; this test must run there"
    );
    possible
}

/// Containment by cgroup set up in this (test) process: the directory of its run cgroups
/// (None, after saying so, where the machine has none; under CI it must).
fn cgroup_base() -> Option<std::path::PathBuf> {
    if !cgroups_here() {
        eprintln!("skipped: needs root and cgroup v2");
        return None;
    }
    match tempora_worker::contain::init(tempora_worker::contain::Mode::Cgroup).unwrap() {
        tempora_worker::contain::Containment::Cgroup(dir) => Some(dir.clone()),
        other => panic!("{other:?}"),
    }
}

/// The job's first process is in the run's cgroup before it runs anything — a program as well
/// as a shell line — and what it leaves behind (`setsid`) is killed with the run.
async fn starts_inside_the_run_cgroup() {
    let Some(base) = cgroup_base() else {
        return;
    };
    let base_name = base.file_name().unwrap().to_string_lossy().into_owned();
    let spec = ProcessSpec {
        command: "/bin/cat".into(),
        shell: false,
        arguments: vec!["/proc/self/cgroup".into()],
        ..sh("")
    };
    let (o, out) = run(spec).await;
    assert_eq!(o.exit_code, Some(0), "{o:?}");
    let own = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let cg = own(&out);
    assert!(
        cg.contains(&format!("/{base_name}/run-")),
        "program in {cg:?}, not a run cgroup below {base_name}"
    );
    let (_, out) = run(sh("cat /proc/$$/cgroup")).await;
    let cg = own(&out);
    assert!(
        cg.contains(&format!("/{base_name}/run-")),
        "shell in {cg:?}, not a run cgroup below {base_name}"
    );
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let (o, _) = run(sh(&format!(
        "setsid sh -c 'echo $$ > {}; exec sleep 60' > /dev/null 2>&1 & sleep 0.2",
        pidfile.display()
    )))
    .await;
    assert_eq!(o.exit_code, Some(0), "{o:?}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the setsid process {pid} outlived its run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The runs after one whose cgroup was killed start normally (a killed cgroup is not
    // reused: the kernel would kill what is spawned into it).
    for _ in 0..3 {
        let (o, out) = run(sh("echo ok")).await;
        assert_eq!(
            (o.exit_code, o.signal, out.as_str()),
            (Some(0), None, "ok\n")
        );
    }
}

/// Run cgroups are reused when empty — unless something else killed or removed them: a job
/// that writes its own `cgroup.kill`, an operator who kills every run of the worker at once
/// or removes an empty run cgroup. The runs after that start normally.
async fn cgroups_killed_or_removed_by_others_are_not_reused() {
    let Some(base) = cgroup_base() else {
        return;
    };
    let ok = |what: &'static str| async move {
        for _ in 0..4 {
            let (o, out) = run(sh("echo ok")).await;
            assert_eq!(
                (o.exit_code, o.signal, out.as_str()),
                (Some(0), None, "ok\n"),
                "after {what}: {o:?}"
            );
        }
    };
    ok("nothing").await;
    // A job that kills its own cgroup (it runs as root here).
    let (o, _) = run(sh(
        "cg=$(sed -n 's/^0:://p' /proc/self/cgroup); m=$(awk '$9 == \"cgroup2\" {print $5}' /proc/self/mountinfo | head -1); echo 1 > $m$cg/cgroup.kill; sleep 5",
    ))
    .await;
    assert_eq!(o.signal, Some(9), "{o:?}");
    ok("a job killed its own cgroup").await;
    // An operator kills every run of the worker, and removes the empty run cgroups.
    std::fs::write(base.join("cgroup.kill"), "1").unwrap();
    ok("the worker's cgroups were killed").await;
    for e in std::fs::read_dir(&base).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("run-") {
            let _ = std::fs::remove_dir(e.path());
        }
    }
    ok("the run cgroups were removed").await;
}

/// `run_as`: the job has the user's uid, gid and groups, and its `HOME`; a directory it may not
/// enter fails the spawn with the reason.
async fn runs_as_another_user() {
    let root = nix::unistd::Uid::effective().is_root();
    assert!(
        root || std::env::var("CI").as_deref() != Ok("true"),
        "CI runs the tests as root; this test must run there"
    );
    if !root {
        eprintln!("skipped: needs root");
        return;
    }
    let mut spec = sh("id -u; id -g; echo $HOME; cat /proc/self/status | grep '^CapEff'");
    spec.run_as = Some("nobody".into());
    let (o, out) = run(spec).await;
    assert_eq!(o.exit_code, Some(0), "{o:?} {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65534", "{out}");
    assert_eq!(lines[1], "65534", "{out}");
    assert_eq!(lines[2], "/nonexistent", "{out}");
    assert!(
        lines[3].ends_with("0000000000000000"),
        "capabilities kept: {out}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut spec = sh("true");
    spec.run_as = Some("nobody".into());
    spec.workdir = Some(dir.path().to_owned());
    let (o, _) = run(spec).await;
    assert!(
        o.spawn_error
            .as_deref()
            .is_some_and(|e| e.contains("ermission denied")),
        "{o:?}"
    );
}

/// A program is found as the job's process would find it: a relative path from the job's
/// working directory, a bare name in the job's `PATH`; what is wrong with it is said.
async fn programs_resolve_from_the_jobs_directory_and_path() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let script = bin.join("hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho hello from $0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plain = bin.join("plain.txt");
    std::fs::write(&plain, "x").unwrap();
    let program = |command: &str| ProcessSpec {
        command: command.into(),
        shell: false,
        ..sh("")
    };
    let mut spec = program("bin/hello.sh");
    spec.workdir = Some(dir.path().to_owned());
    let (o, out) = run(spec).await;
    assert_eq!(o.exit_code, Some(0), "{o:?}");
    assert!(out.starts_with("hello from"), "{out}");
    let mut spec = program("hello.sh");
    spec.env = vec![("PATH".into(), bin.display().to_string())];
    let (o, _) = run(spec).await;
    assert_eq!(o.exit_code, Some(0), "{o:?}");
    for (command, says) in [
        (bin.display().to_string(), "is a directory"),
        (plain.display().to_string(), "is not an executable file"),
        ("hello.sh".to_owned(), "no executable `hello.sh` in PATH"),
    ] {
        let (o, _) = run(program(&command)).await;
        let e = o.spawn_error.unwrap_or_default();
        assert!(e.contains(says), "{command}: {e}");
    }
}

/// The job starts with every signal at its default action (even one the worker was started
/// with ignored) and none of the worker's descriptors (even one without close-on-exec).
async fn signals_and_descriptors_start_clean() {
    // SAFETY: ignoring SIGHUP in this test process installs no handler.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGHUP,
            nix::sys::signal::SigHandler::SigIgn,
        )
        .unwrap();
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    // SAFETY: dup(2) of an open descriptor; the copy (without close-on-exec) is left open.
    let leaked = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(file.as_file())) };
    assert!(leaked > 2);
    let (o, out) = run(sh(
        "grep -E '^Sig(Ign|Blk)' /proc/self/status; ls -l /proc/self/fd",
    ))
    .await;
    assert_eq!(o.exit_code, Some(0), "{o:?}");
    assert!(
        out.contains("SigIgn:\t0000000000000000") && out.contains("SigBlk:\t0000000000000000"),
        "{out}"
    );
    let name = file.path().display().to_string();
    assert!(
        !out.contains(&name),
        "the worker's descriptor reached the job: {out}"
    );
}

/// A child that cannot get to `execve` (here: its cgroup is frozen) is killed after the spawn
/// deadline, and the run fails saying so, instead of holding a spawner thread for ever.
async fn a_child_stuck_before_exec_is_killed_at_the_deadline() {
    let Some(base) = cgroup_base() else {
        return;
    };
    std::fs::write(base.join("cgroup.freeze"), "1").unwrap();
    let started = Instant::now();
    let (o, _) = run(sh("echo never")).await;
    std::fs::write(base.join("cgroup.freeze"), "0").unwrap();
    let took = started.elapsed();
    let e = o.spawn_error.clone().unwrap_or_default();
    assert!(e.contains("did not start within"), "{e} ({o:?})");
    assert!(
        took >= tempora_worker::spawn::SPAWN_DEADLINE
            && took < tempora_worker::spawn::SPAWN_DEADLINE + Duration::from_secs(5),
        "{took:?}"
    );
    let (o, out) = run(sh("echo after")).await;
    assert_eq!((o.exit_code, out.as_str()), (Some(0), "after\n"));
}

/// Only spawned by `clone3` (`Command` keeps what `posix_spawn` keeps, and cannot be stopped
/// before `exec`).
mod clone3_only {
    #[tokio::test]
    async fn signals_and_descriptors_start_clean() {
        assert!(tempora_worker::spawn::available());
        super::signals_and_descriptors_start_clean().await
    }

    #[tokio::test]
    async fn a_child_stuck_before_exec_is_killed_at_the_deadline() {
        assert!(tempora_worker::spawn::available());
        super::a_child_stuck_before_exec_is_killed_at_the_deadline().await
    }
}

macro_rules! on_both_spawn_paths {
    ($($case:ident),* $(,)?) => {
        /// Spawned by `clone3`, straight into the run's cgroup (where the kernel allows it).
        mod clone3 {
            $(
                #[tokio::test]
                async fn $case() {
                    assert!(tempora_worker::spawn::available(), "x86-64 Linux spawns with clone3");
                    super::$case().await
                }
            )*
        }
        /// Spawned by `Command`, the fallback.
        mod command {
            $(
                #[tokio::test]
                async fn $case() {
                    tempora_worker::spawn::disable();
                    super::$case().await
                }
            )*
        }
    };
}

on_both_spawn_paths!(
    exit_codes_and_signals,
    output_order_env_workdir_and_argv,
    spawn_errors,
    large_output_arrives_whole_and_streams_while_running,
    timeout_terms_then_kills_the_group,
    no_descendant_survives_timeout_cancel_or_normal_exit,
    starts_inside_the_run_cgroup,
    runs_as_another_user,
    programs_resolve_from_the_jobs_directory_and_path,
    cgroups_killed_or_removed_by_others_are_not_reused,
);
