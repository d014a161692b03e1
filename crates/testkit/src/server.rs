//! The end-to-end harness: the real `tempora` binary started on a free port with a temporary
//! data directory ([`Server`]), remote workers ([`Worker`]), and the ways a test talks to them:
//! the typed API client of `tempora-client` ([`Server::api`], and [`Server::get`],
//! [`Server::send`], … over it), the CLI ([`Server::cli`]), and [`request`], which writes an
//! exact HTTP/1.1 request on a socket, for the tests of the access layer (Host, Origin,
//! content types) that must control every header byte.
//!
//! The binary is `NEXTEST_BIN_EXE_tempora` (set by nextest), else `tempora` next to the test
//! binary's folder (`target/<profile>/`), else `TEMPORA_BIN`.
// Test support: a failure to set up is a test failure, so panicking here is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempora_client::api::{ApiClient, ApiResult};

/// Path of the binary under test.
pub fn bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) =
            std::env::var_os("NEXTEST_BIN_EXE_tempora").or_else(|| std::env::var_os("TEMPORA_BIN"))
        {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test> → target/<profile>/tempora
        let exe = std::env::current_exe().expect("test binary path");
        let found = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("tempora"))
            .filter(|p| p.exists());
        found.expect("the tempora binary: run the tests with cargo nextest, or set TEMPORA_BIN")
    })
}

/// Run a future to its end from a test's (blocking) thread, on the harness's runtime; from
/// inside a runtime, on a thread of its own.
pub fn block_on<F: std::future::Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the harness's runtime")
    });
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(|| rt.block_on(f)).join().expect("harness thread"))
    } else {
        rt.block_on(f)
    }
}

/// A typed API client of the server at `base` with this token (the server's answers to the
/// harness come within 30 s, or the test fails).
pub fn api_client(base: &str, token: Option<&str>) -> ApiClient {
    // The one TLS stack's crypto (as the binary installs it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    ApiClient::new(base, token, builder).expect("API client")
}

/// An API client as the admin ([`admin_token`]).
pub fn admin_client(base: &str) -> ApiClient {
    api_client(base, Some(admin_token()))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The admin token every server started by [`Server::start`] accepts (random, per test
/// process), and the 0600 file that hands it to them (`--admin-token-file`).
pub fn admin_token() -> &'static str {
    &token_setup().0
}

/// The file holding [`admin_token`].
pub fn admin_token_file() -> &'static Path {
    &token_setup().1
}

fn token_setup() -> &'static (String, PathBuf) {
    static SETUP: std::sync::OnceLock<(String, PathBuf)> = std::sync::OnceLock::new();
    SETUP.get_or_init(|| {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("random bytes");
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("tempora-test-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("token dir");
        let path = dir.join("admin.token");
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .expect("token file");
        std::io::Write::write_all(&mut f, token.as_bytes()).expect("write token");
        (token, path)
    })
}

/// The environment that runs a process under libfaketime (Debian's `faketime`) with its wall
/// clock moved by `spec` (`+20s`, `-7s`), or — with `spec` = `file:PATH` — by the offset
/// written in PATH, re-read every second (to step the clock while the process runs). The
/// monotonic clock is left alone, as a real clock step leaves it.
pub fn faketime_env(spec: &str) -> Vec<(&'static str, String)> {
    let lib = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libfaketime is missing: install Debian's `faketime` package (.ci/run does)");
    let mut env = vec![
        ("LD_PRELOAD", lib.to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
    ];
    match spec.strip_prefix("file:") {
        Some(path) => {
            env.push(("FAKETIME_TIMESTAMP_FILE", path.to_owned()));
            env.push(("FAKETIME_CACHE_DURATION", "1".to_owned()));
        }
        None => env.push(("FAKETIME", spec.to_owned())),
    }
    env
}

/// A running server process.
pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub extra: Vec<String>,
    /// Environment variables the server process gets (besides the test's own).
    pub envs: Vec<(String, String)>,
    log: PathBuf,
}

impl Server {
    /// Start a server with extra flags; waits until `/ready` answers. Unless the flags name an
    /// `--admin-token-file`, the server gets [`admin_token_file`], so [`http`] (which sends
    /// [`admin_token`]) works against it.
    pub fn start(extra: &[&str]) -> Server {
        Self::start_env(extra, &[])
    }

    /// Start a server with exactly these extra flags (no admin token file is added).
    pub fn start_plain(extra: &[&str]) -> Server {
        Self::launch(extra, &[])
    }

    /// Like [`Server::start`], after `prepare` has filled the data directory (a restore).
    pub fn start_with_data(extra: &[&str], prepare: impl FnOnce(&Path)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(&dir.path().join("data"));
        let file = admin_token_file().display().to_string();
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--admin-token-file", &file]);
        Self::launch_in(dir, &args, &[])
    }

    fn launch(extra: &[&str], envs: &[(&str, &str)]) -> Server {
        Self::launch_in(tempfile::tempdir().expect("tempdir"), extra, envs)
    }

    fn launch_in(dir: tempfile::TempDir, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut s = Server {
            child: None,
            port: free_port(),
            log: dir.path().join("server.log"),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    /// Like [`Server::start`], with these environment variables in the server's environment.
    pub fn start_env(extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let file = admin_token_file().display().to_string();
        let mut args: Vec<&str> = extra.to_vec();
        if !extra.contains(&"--admin-token-file") {
            args.extend(["--admin-token-file", &file]);
        }
        Self::launch(&args, envs)
    }

    /// (Re)start the process on the same port and data directory.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(bin())
            .arg("server")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(
                (!self.extra.iter().any(|a| a == "--node-id"))
                    .then_some(["--node-id", "test-node"])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.extra)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("spawn server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if get_status(&format!("{}/ready", self.url())) == Some(200) {
                return;
            }
            if Instant::now() > deadline {
                panic!("server did not become ready; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// PID of the server process.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Send a signal and wait for the process to exit (up to `wait`). Returns its exit status.
    pub fn signal_and_wait(
        &mut self,
        sig: nix::sys::signal::Signal,
        wait: Duration,
    ) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("kill");
        let deadline = Instant::now() + wait;
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "server did not exit within {wait:?} after {sig}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        self.signal_and_wait(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    }

    /// The typed API client of this server, as the admin.
    pub fn api(&self) -> ApiClient {
        admin_client(&self.url())
    }

    /// Call the typed API client: `s.call(|api| async move { api.get_job("j").await })`.
    pub fn call<T: Send, F>(&self, f: impl FnOnce(ApiClient) -> F) -> ApiResult<T>
    where
        F: std::future::Future<Output = ApiResult<T>> + Send,
    {
        block_on(f(self.api()))
    }

    /// GET as the admin → (status, JSON or Null).
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, "")
    }

    /// GET as the admin → (status, text).
    pub fn get_text(&self, path: &str) -> (u16, String) {
        http("GET", &format!("{}{path}", self.url()), "").expect("GET")
    }

    /// A request as the admin with a JSON (or raw) body → (status, JSON or Null).
    pub fn send(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (st, text) = http(method, &format!("{}{path}", self.url()), body).expect("request");
        (st, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request written byte for byte ([`request`]) with a bearer `token` (or none) and a
    /// JSON `body` when given → (status, response head, JSON, or the text as a JSON string).
    pub fn request_as(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, String, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let text = body.map(Value::to_string).unwrap_or_default();
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let (st, head, body) =
            request(method, &format!("{}{path}", self.url()), &headers, &text).expect("request");
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (st, head, json)
    }

    /// Create or replace a job, asserting success.
    pub fn put_job(&self, name: &str, body: Value) -> Value {
        self.call(|api| async move { api.put_job(name, &body).await })
            .unwrap_or_else(|e| panic!("PUT {name}: {e}"))
    }

    /// A new token named `name` with `role` (as the admin): its secret.
    pub fn token(&self, name: &str, role: &str) -> String {
        let made = self
            .call(|api| async move {
                api.create_token(&serde_json::json!({"name": name, "role": role}))
                    .await
            })
            .unwrap_or_else(|e| panic!("token {name}: {e}"));
        made["token"].as_str().expect("secret").to_owned()
    }

    /// Trigger a run, returning its JSON.
    pub fn trigger(&self, name: &str) -> Value {
        self.call(|api| async move { api.trigger(name, &serde_json::json!({})).await })
            .unwrap_or_else(|e| panic!("trigger {name}: {e}"))
    }

    /// Runs of a job, newest first.
    pub fn runs(&self, name: &str) -> Vec<Value> {
        let v = self
            .call(|api| async move { api.job_runs(name, &[("limit", "1000".into())]).await })
            .unwrap_or_else(|e| panic!("runs of {name}: {e}"));
        v["runs"].as_array().cloned().unwrap_or_default()
    }

    /// One run.
    pub fn run(&self, id: i64) -> Value {
        self.call(|api| async move { api.get_run(id).await })
            .unwrap_or_else(|e| panic!("run {id}: {e}"))
    }

    /// Wait until `f` holds (polling every 100 ms) or panic after `within`.
    pub fn wait_for<T>(&self, within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; server log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until a run reaches a final state.
    pub fn wait_final(&self, id: i64, within: Duration) -> Value {
        self.wait_for(within, &format!("run {id} to end"), || {
            let r = self.run(id);
            let st = r["state"].as_str().unwrap_or("");
            (!matches!(st, "queued" | "running")).then_some(r)
        })
    }

    /// Run the CLI against this server (with [`admin_token`]).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .env("TEMPORA_SERVER", self.url())
            .env("TEMPORA_TOKEN", admin_token())
            .output()
            .expect("run cli")
    }

    /// Data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch directory for job side effects.
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).expect("scratch");
        p
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A GET without a credential → its status (None: no answer).
fn get_status(url: &str) -> Option<u16> {
    let url = url.to_owned();
    block_on(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        client
            .get(url)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    })
}

/// A request to any URL as the admin ([`admin_token`]), with a JSON content type; returns
/// status and body (whatever the status).
pub fn http(method: &str, url: &str, body: &str) -> std::io::Result<(u16, String)> {
    let (base, path) = split_url(url)?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(std::io::Error::other)?;
    let body = body.to_owned();
    block_on(async move {
        let api = admin_client(&base);
        let req = api
            .request(method, &path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let resp = api.exchange(req).await.map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(std::io::Error::other)?;
        Ok((status, text))
    })
}

/// `http://host:port/path?q` → (`http://host:port`, `/path?q`).
fn split_url(url: &str) -> std::io::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other(format!("not an http:// URL: {url}")))?;
    Ok(match rest.split_once('/') {
        Some((host, path)) => (format!("http://{host}"), format!("/{path}")),
        None => (url.to_owned(), "/".to_owned()),
    })
}

/// An HTTP/1.1 request written byte for byte on a socket, with exactly these headers (plus
/// `Host` unless given, `Content-Length` and `Connection: close`); returns the status, the
/// response head (status line and headers) and the body. For tests of the access layer.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("http only"))?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    // A Host header among `headers` replaces the URL's.
    let host_line = if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        String::new()
    } else {
        format!("Host: {host}\r\n")
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\n{host_line}{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {head}")))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, head.to_owned(), body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n.min(rest.len())]);
        s = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Read a pid written by a job into `path`.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Parse an RFC 3339 timestamp from a JSON value.
pub fn ts(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .expect("timestamp string")
        .parse()
        .expect("RFC 3339")
}

/// A running `tempora worker`.
pub struct Worker {
    pub child: Option<Child>,
    pub id: String,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Worker {
    /// Start `tempora worker --worker-id id --server …` with extra flags.
    pub fn start(id: &str, servers: &[String], extra: &[&str]) -> Worker {
        Self::start_env(id, servers, extra, &[])
    }

    /// Like [`Worker::start`], with these environment variables in the worker's environment.
    pub fn start_env(
        id: &str,
        servers: &[String],
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Worker {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("worker.log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin());
        cmd.arg("worker").arg("--worker-id").arg(id);
        for s in servers {
            cmd.arg("--server").arg(s);
        }
        let has_token = extra.iter().any(|a| a.starts_with("--token"));
        let child = cmd
            .args(extra)
            .args(["--kill-grace", "1s"])
            .args(
                (!has_token)
                    .then_some(["--token", admin_token()])
                    .into_iter()
                    .flatten(),
            )
            // Every worker-protocol request and its outcome (debug), for post-mortems.
            .env("RUST_LOG", "info,tempora::worker=debug")
            .env_remove("TEMPORA_SERVER")
            .env_remove("TEMPORA_TOKEN")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("spawn worker");
        Worker {
            child: Some(child),
            id: id.to_owned(),
            _dir: dir,
            log,
        }
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where its log is written (kept as long as this value lives).
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Prints the tail of each named log (warnings first) if the test panics while this lives:
/// the evidence for a post-mortem of a failed end-to-end run.
pub struct DumpOnPanic(Vec<(String, PathBuf)>);

impl DumpOnPanic {
    /// Watch these logs.
    pub fn new(logs: Vec<(String, PathBuf)>) -> Self {
        Self(logs)
    }

    /// Watch one more log.
    pub fn add(&mut self, name: &str, path: PathBuf) {
        self.0.push((name.to_owned(), path));
    }
}

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (name, path) in &self.0 {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let warnings: Vec<&&str> = lines.iter().filter(|l| l.contains("WARN")).collect();
            eprintln!(
                "==== {name}: {} lines, {} warnings",
                lines.len(),
                warnings.len()
            );
            for l in warnings.iter().take(60) {
                eprintln!("  {l}");
            }
            eprintln!("---- {name}: last 150 lines");
            for l in &lines[lines.len().saturating_sub(150)..] {
                eprintln!("  {l}");
            }
        }
    }
}
