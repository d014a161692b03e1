//! Run containment through the real binary: timeout, cancel and a normal end leave no process
//! of the run behind — not even one that called `setsid` (and keeps the output pipe open) or
//! was double-forked — and the run ends within the kill grace. Both containments: a cgroup v2
//! per run (what `auto` picks where the machine allows it) and the environment sweep.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

/// Whether a process is gone within 2 s (the sweep works in the background, a few hundred ms
/// after the run's end; the cgroup has killed everything by then).
fn ends(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !dead(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Whether a process is gone (or a zombie waiting for a parent that is not ours to reap).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

fn read_pid(p: &Path) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(t) = std::fs::read_to_string(p)
            && let Ok(pid) = t.trim().parse()
        {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pid in {}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command that leaves a `setsid` process holding the output pipe and a double-forked one,
/// writing their pids to `dir`, then runs `main`.
fn escaping(dir: &Path, main: &str) -> String {
    let d = dir.display();
    format!(
        "setsid sh -c 'echo $$ > {d}/setsid.pid; exec sleep 60' & \
         ( sh -c 'echo $$ > {d}/double.pid; exec sleep 60' < /dev/null > /dev/null 2>&1 & ) ; \
         while [ ! -s {d}/setsid.pid ] || [ ! -s {d}/double.pid ]; do sleep 0.05; done; {main}"
    )
}

fn secs(r: &Value, a: &str, b: &str) -> f64 {
    let t = |k: &str| common::ts(&r[k]);
    t(b).duration_since(t(a)).as_secs_f64()
}

fn check(s: &Server, mode: &str) {
    // Timeout: the run ends within the kill grace, and both escapees are gone.
    let dir = s.scratch().join(format!("{mode}-timeout"));
    std::fs::create_dir_all(&dir).unwrap();
    s.put_job(
        "escape-timeout",
        json!({"command": escaping(&dir, "sleep 60"), "timeout": "2s"}),
    );
    let id = s.trigger("escape-timeout")["id"].as_i64().unwrap();
    let r = s.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "timed_out", "{mode}: {r}");
    let took = secs(&r, "started_at", "finished_at");
    assert!(took < 2.0 + 1.0 + 2.5, "{mode}: the run took {took} s");
    for f in ["setsid.pid", "double.pid"] {
        let pid = read_pid(&dir.join(f));
        assert!(ends(pid), "{mode}: {f} ({pid}) survived the timeout");
    }

    // A normal end: what the job left running dies with it, and the run does not wait for it.
    let dir = s.scratch().join(format!("{mode}-exit"));
    std::fs::create_dir_all(&dir).unwrap();
    s.put_job(
        "escape-exit",
        json!({"command": escaping(&dir, "echo done")}),
    );
    let id = s.trigger("escape-exit")["id"].as_i64().unwrap();
    let r = s.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "succeeded", "{mode}: {r}");
    assert!(secs(&r, "started_at", "finished_at") < 4.0, "{mode}: {r}");
    for f in ["setsid.pid", "double.pid"] {
        let pid = read_pid(&dir.join(f));
        assert!(ends(pid), "{mode}: {f} ({pid}) outlived its run");
    }

    // Cancel.
    let dir = s.scratch().join(format!("{mode}-cancel"));
    std::fs::create_dir_all(&dir).unwrap();
    s.put_job(
        "escape-cancel",
        json!({"command": escaping(&dir, "sleep 60")}),
    );
    let id = s.trigger("escape-cancel")["id"].as_i64().unwrap();
    read_pid(&dir.join("double.pid"));
    let (st, v) = s.send("POST", &format!("/api/v1/runs/{id}/cancel"), "");
    assert!(st < 300, "{st} {v}");
    let r = s.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "cancelled", "{mode}: {r}");
    for f in ["setsid.pid", "double.pid"] {
        let pid = read_pid(&dir.join(f));
        assert!(ends(pid), "{mode}: {f} ({pid}) survived the cancel");
    }
}

/// Whether this machine offers a cgroup2 hierarchy this (root) process may write to.
fn cgroup_expected() -> bool {
    nix::unistd::Uid::effective().is_root()
        && std::fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|m| m.lines().any(|l| l.contains(" - cgroup2 ")))
}

#[test]
fn runs_are_contained_by_a_cgroup_where_the_machine_allows() {
    let mut s = Server::start(&["--kill-grace", "1s"]);
    let want = if cgroup_expected() { "cgroup" } else { "sweep" };
    assert!(
        s.log().contains(&format!("containment=\"{want}\"")),
        "expected {want}:\n{}",
        s.log()
    );
    check(&s, want);
    if want == "cgroup" {
        // A clean stop removes the server's directory of run cgroups.
        let log = s.log();
        let dir = log
            .split("runs are contained by cgroup v2")
            .nth(1)
            .and_then(|rest| rest.split("dir=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|d| d.trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("no cgroup directory in the log:\n{log}"));
        assert!(std::path::Path::new(&dir).is_dir(), "{dir}");
        s.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
        assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
    }
}

#[test]
fn the_environment_sweep_contains_runs_too() {
    let s = Server::start(&["--kill-grace", "1s", "--containment", "sweep"]);
    assert!(s.log().contains("containment=\"sweep\""));
    check(&s, "sweep");
}

/// A process that escapes the sweep (it clears its environment) and holds the output pipe
/// cannot keep its run going: the run still ends within the kill grace of its timeout.
#[test]
fn an_escaped_pipe_holder_does_not_keep_the_run_going() {
    let s = Server::start(&["--kill-grace", "1s", "--containment", "sweep"]);
    let pid_file = s.scratch().join("escaped.pid");
    s.put_job(
        "pipe-holder",
        json!({"command": format!("env -i setsid sh -c 'echo $$ > {}; exec sleep 60' & sleep 60", pid_file.display()),
               "timeout": "2s"}),
    );
    let id = s.trigger("pipe-holder")["id"].as_i64().unwrap();
    let r = s.wait_final(id, Duration::from_secs(20));
    let pid = read_pid(&pid_file);
    // What the sweep cannot find is cleaned up here, not by tempora.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_eq!(r["state"], "timed_out", "{r}");
    let took = secs(&r, "started_at", "finished_at");
    assert!(took < 2.0 + 1.0 + 2.5, "the run took {took} s");
}

/// `kill -9` of the server: its watchdog kills the runs' cgroups, so even a process that left
/// the run's process group and cleared its environment dies with it.
#[test]
fn a_killed_server_leaves_no_process_of_its_runs() {
    if !cgroup_expected() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI's machine offers cgroup v2; this test must run there"
        );
        return;
    }
    let mut s = Server::start(&["--kill-grace", "1s"]);
    let pid_file = s.scratch().join("orphan.pid");
    s.put_job(
        "orphan",
        json!({"command": format!("env -i setsid sh -c 'echo $$ > {}; exec sleep 60' < /dev/null > /dev/null 2>&1 & sleep 60", pid_file.display())}),
    );
    s.trigger("orphan");
    let pid = read_pid(&pid_file);
    assert!(!dead(pid));
    s.kill9();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !dead(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survived = !dead(pid);
    if survived {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        !survived,
        "process {pid} of the run outlived the killed server"
    );
}
