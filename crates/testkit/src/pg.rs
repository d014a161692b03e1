//! Throwaway PostgreSQL 15 servers for the tests.
//!
//! - [`server`] / [`fresh_database`]: `initdb` into a temporary directory and `postgres` on a
//!   free 127.0.0.1 port, once per test process (nextest runs each test in its own process;
//!   startup takes well under a second); every store gets a fresh database. The server dies
//!   with the test process (parent-death signal), and its directory is removed after it stops
//!   (or by a later run, if it was killed).
//! - [`Postgres`]: a server of the test's own, which it stops and starts (`pg_ctl`) or
//!   configures (TLS files, `pg_hba.conf`, settings).
//!
//! The servers run as an unprivileged user (`postgres`, else `nobody`) when the tests run as
//! root, since PostgreSQL refuses to run as root. The binaries come from
//! `/usr/lib/postgresql/15/bin` (or `TEMPORA_PG_BIN`); if they are missing the tests fail with a
//! message saying so: they are never skipped.
// Test support: a failure to set up is a test failure, so panicking here is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The directory of the PostgreSQL binaries: `TEMPORA_PG_BIN`, else PostgreSQL 15's.
pub fn bin_dir() -> PathBuf {
    PathBuf::from(std::env::var("TEMPORA_PG_BIN").unwrap_or_else(|_| DEFAULT_BIN.into()))
}

fn id_of(flag: &str, user: Option<&str>) -> Option<u32> {
    let mut cmd = Command::new("id");
    cmd.arg(flag);
    if let Some(u) = user {
        cmd.arg(u);
    }
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// PostgreSQL refuses to run as root: when the tests do, the (uid, gid) of an unprivileged
/// user that exists (`postgres`, else `nobody`) to run it as.
fn unprivileged_owner() -> Result<Option<(u32, u32)>, String> {
    if id_of("-u", None) != Some(0) {
        return Ok(None);
    }
    let user = ["postgres", "nobody"]
        .into_iter()
        .find(|u| id_of("-u", Some(u)).is_some())
        .ok_or("running as root and neither user `postgres` nor `nobody` exists")?;
    Ok(Some((
        id_of("-u", Some(user)).ok_or("no uid")?,
        id_of("-g", Some(user)).ok_or("no gid")?,
    )))
}

/// `setpriv` arguments that run a command as `owner`.
fn setpriv_args(owner: Option<(u32, u32)>) -> Vec<String> {
    match owner {
        Some((uid, gid)) => vec![
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
        ],
        None => Vec::new(),
    }
}

/// The running test server.
pub struct Server {
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The server of this process, started on first use. Panics (failing the test) if it cannot
/// start.
pub fn server() -> &'static Server {
    match SERVER.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!("cannot start the test PostgreSQL server: {e}"),
    }
}

/// Create a fresh database on the test server and return its URL.
pub async fn fresh_database() -> String {
    let port = server().port;
    let n = DATABASES.fetch_add(1, Ordering::Relaxed);
    let name = format!("t_{}_{n}", std::process::id());
    let (admin, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the test server");
    let task = tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    drop(admin);
    let _ = task.await;
    format!("postgres://postgres@127.0.0.1:{port}/{name}")
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{what} failed ({}): {text}", out.status))
    }
}

/// Remove directories of earlier test processes that are gone (killed before cleaning up).
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next() else {
            continue;
        };
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn start() -> Result<Server, String> {
    let began = Instant::now();
    let bin = bin_dir();
    for exe in ["initdb", "postgres", "pg_isready"] {
        if !bin.join(exe).is_file() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            return Err(format!(
                "`{}` not found: the PostgreSQL store tests need the PostgreSQL 15 server binaries \
                 (Debian package `postgresql-15`, or set TEMPORA_PG_BIN to their directory){}",
                bin.join(exe).display(),
                if ci {
                    "; CI must install them (this is a failure, not a skip)"
                } else {
                    ""
                }
            ));
        }
    }
    let owner = unprivileged_owner()?;
    let as_user = setpriv_args(owner);

    let base = std::env::temp_dir().join("tempora-pg-tests");
    std::fs::create_dir_all(&base).map_err(|e| format!("create {}: {e}", base.display()))?;
    remove_stale(&base);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = base.join(format!("{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    let data = dir.join("data");

    let mut initdb = Command::new("setpriv");
    initdb
        .args(&as_user)
        .arg("--")
        .arg(bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
    run(&mut initdb, "initdb")?;
    let initdb_took = began.elapsed();

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let log_path = dir.join("postgres.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("create log: {e}"))?;
    let log_err = log.try_clone().map_err(|e| format!("log: {e}"))?;

    // A root shell runs the server and removes its directory once it stops. The shell gets
    // SIGINT (fast shutdown, passed on to the server) when this process dies; the server gets
    // SIGKILL should the shell die first.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "INT", "--", "sh", "-c"])
        .arg(
            r#"dir="$1"; shift
trap 'kill -INT "$pid" 2>/dev/null' INT TERM
"$@" & pid=$!
wait "$pid"; wait "$pid"
rm -rf "$dir""#,
        )
        .arg("sh")
        .arg(&dir)
        .args(["setpriv", "--pdeathsig", "KILL"])
        .args(&as_user)
        .arg("--")
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "shared_buffers=32MB",
            "-c",
            "max_connections=50",
            "-c",
            "log_min_messages=warning",
        ])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let exited = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let exited = exited.clone();
        // The spawning thread must outlive the tests (the parent-death signal follows the
        // thread that forked), so it waits for the server for the rest of the process.
        std::thread::Builder::new()
            .name("test-postgres".into())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(()));
                    let _ = child.wait();
                    exited.store(true, Ordering::SeqCst);
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("cannot start postgres: {e}")));
                }
            })
            .map_err(|e| format!("thread: {e}"))?;
    }
    rx.recv().map_err(|e| format!("server thread: {e}"))??;

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        if exited.load(Ordering::SeqCst) || Instant::now() > deadline {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("postgres did not become ready; its log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "test PostgreSQL on 127.0.0.1:{port} in {} (initdb {:?}, ready after {:?})",
        dir.display(),
        initdb_took,
        began.elapsed()
    );
    Ok(Server { port })
}

/// A PostgreSQL server in a temporary directory.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    as_user: Vec<String>,
    owner: Option<(u32, u32)>,
    settings: String,
}

impl Postgres {
    /// initdb and start with the usual test settings.
    pub fn start() -> Postgres {
        Self::start_with(&[], &[], None)
    }

    /// initdb, write `files` (name, contents) into the server's directory (owned by the server's
    /// user, mode 0600), replace `pg_hba.conf` with `hba` if given, and start with extra
    /// `-c name=value` `settings`; `{dir}` in a value is the server's directory.
    pub fn start_with(
        files: &[(&str, &[u8])],
        settings: &[(&str, &str)],
        hba: Option<&str>,
    ) -> Postgres {
        let bin = bin_dir();
        assert!(
            bin.join("pg_ctl").is_file(),
            "{}/pg_ctl not found: this test needs PostgreSQL 15's binaries (Debian \
             `postgresql-15`, or TEMPORA_PG_BIN); this is a failure, not a skip",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let owner = unprivileged_owner().expect("an unprivileged user for PostgreSQL");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let as_user = setpriv_args(owner);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let shown = dir.path().display().to_string();
        let settings: String = settings
            .iter()
            .map(|(k, v)| format!(" -c {k}={}", v.replace("{dir}", &shown)))
            .collect();
        let pg = Postgres {
            bin,
            dir,
            port,
            as_user,
            owner,
            settings,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        for (name, contents) in files {
            pg.write_private(&pg.dir.path().join(name), contents);
        }
        if let Some(hba) = hba {
            pg.write_private(&pg.dir.path().join("data/pg_hba.conf"), hba.as_bytes());
        }
        pg.up();
        pg
    }

    fn write_private(&self, path: &std::path::Path, contents: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents).expect("write a PostgreSQL file");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, exe: &str, args: &[&str]) {
        let out = Command::new("setpriv")
            .args(&self.as_user)
            .arg("--")
            .arg(self.bin.join(exe))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{exe} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start (again).
    pub fn up(&self) {
        let opts = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200{}",
            self.port,
            self.dir.path().display(),
            self.settings
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "start"],
        );
    }

    /// Stop (fast shutdown).
    pub fn down(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("setpriv")
            .args(&self.as_user)
            .arg("--")
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
