//! A throwaway PostgreSQL server for the tests: `initdb` into a temporary directory and
//! `postgres` on a free 127.0.0.1 port, once per test process (nextest runs each test in its own
//! process; startup takes well under a second). Every store gets a fresh database.
//!
//! The server runs as an unprivileged user (`postgres`, else `nobody`) when the tests run as
//! root, since PostgreSQL refuses to run as root. It dies with the test process (parent-death
//! signal), and its directory is removed after it stops (or by a later run, if it was killed).
//!
//! The binaries come from `/usr/lib/postgresql/15/bin` (or `TEMPORA_PG_BIN`). If they are
//! missing the tests fail with a message saying so: they are never skipped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tempora_store::{Store, StoreOptions};
use tempora_store_postgres::PostgresStore;

/// The running test server.
pub struct Server {
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

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

/// A fresh, empty store (the contract suite's factory).
pub async fn fresh_store() -> (Arc<dyn Store>, ()) {
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url, StoreOptions::default())
        .await
        .expect("connect the store");
    (Arc::new(store), ())
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
    let bin = PathBuf::from(std::env::var("TEMPORA_PG_BIN").unwrap_or_else(|_| DEFAULT_BIN.into()));
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
    // PostgreSQL refuses to run as root: drop to an unprivileged user that exists.
    let owner = if id_of("-u", None) == Some(0) {
        let user = ["postgres", "nobody"]
            .into_iter()
            .find(|u| id_of("-u", Some(u)).is_some())
            .ok_or("running as root and neither user `postgres` nor `nobody` exists")?;
        Some((
            id_of("-u", Some(user)).ok_or("no uid")?,
            id_of("-g", Some(user)).ok_or("no gid")?,
        ))
    } else {
        None
    };
    let as_user: Vec<String> = match owner {
        Some((uid, gid)) => vec![
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
        ],
        None => Vec::new(),
    };

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
