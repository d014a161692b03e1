//! Client commands: `tempora job …` and `tempora run …` over the native API.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{ClientOpts, OutputFormat};

/// `tempora job …`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List jobs, with their state, next fire and last result; the filters narrow it.
    Ls {
        /// Jobs whose name or description contains this (any case).
        #[arg(long, short = 'q')]
        query: Option<String>,
        /// Jobs with this label (`key=value`; repeat for several, all must hold).
        #[arg(long)]
        label: Vec<String>,
        /// Jobs whose owner contains this (any case).
        #[arg(long)]
        owner: Option<String>,
        /// Jobs in this state.
        #[arg(long, value_parser = ["paused", "active", "failing", "running"])]
        state: Option<String>,
    },
    /// Show one job: its definition and status.
    Get {
        /// Job name.
        name: String,
    },
    /// Create or replace a job from a JSON file (`-` for standard input).
    Put {
        /// Path of a JSON job definition (the API's fields).
        file: String,
    },
    /// Delete a job, with its run history.
    Rm {
        /// Job name.
        name: String,
        /// Also when other jobs depend on it (they drop it from their parents).
        #[arg(long)]
        force: bool,
    },
    /// Trigger a run now.
    Run {
        /// Job name.
        name: String,
        /// Extra environment variable for this run (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Replace the job's arguments for this run (repeatable).
        #[arg(long = "arg", value_name = "ARG")]
        args: Vec<String>,
        /// Run even if the concurrency policy would skip it.
        #[arg(long)]
        force: bool,
        /// Wait for the run to end: exit 0 if it succeeded, 1 otherwise (its state and error on
        /// stderr).
        #[arg(long)]
        wait: bool,
        /// With `--wait`: give up after this long (e.g. `10m`), exit 124, the run goes on.
        #[arg(long, value_name = "DURATION", requires = "wait", value_parser = parse_wait)]
        timeout: Option<std::time::Duration>,
    },
    /// Pause a job's schedule.
    Pause {
        /// Job name.
        name: String,
    },
    /// Resume a paused job (from now on: the paused period is not backfilled).
    Resume {
        /// Job name.
        name: String,
    },
    /// Run the past occurrences of a job's schedule in [--from, --to), each at most once (an
    /// occurrence that already ran is not run again), one after another.
    Backfill {
        /// Job name.
        name: String,
        /// First instant (inclusive), RFC 3339.
        #[arg(long)]
        from: String,
        /// End (exclusive), RFC 3339; not after now.
        #[arg(long)]
        to: String,
        /// Most occurrences (default 10000, at most 100000).
        #[arg(long)]
        max: Option<u64>,
        /// Print the occurrences in the range; create nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `tempora run …`
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// List runs, newest first: a job's, or every job's.
    Ls {
        /// Job name (default: runs of every job).
        job: Option<String>,
        /// Only runs in this state (`failed`, `running`, …).
        #[arg(long)]
        state: Option<String>,
        /// Only runs with this trigger (`schedule`, `manual`, `retry`, `dependency`).
        #[arg(long)]
        trigger: Option<String>,
        /// Only occurrences at or after this instant (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only occurrences before this instant (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only runs with an id below this one (paging).
        #[arg(long)]
        before: Option<i64>,
    },
    /// Show one run.
    Get {
        /// Run id.
        id: i64,
    },
    /// Print a run's output (stdout and stderr, in order).
    Logs {
        /// Run id.
        id: i64,
        /// Keep streaming until the run ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Cancel a run (SIGTERM to its process group, then SIGKILL).
    Cancel {
        /// Run id.
        id: i64,
    },
}

/// A client failure with its exit code.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
    /// The server's error object (`code`, `field`, …), when the server refused.
    pub(crate) detail: Option<Value>,
}

/// `-o json` was asked for: errors are printed as JSON too.
static JSON_ERRORS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) type Res<T> = Result<T, Failure>;

pub(crate) fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
        detail: None,
    }
}

/// The typed API client ([`tempora_client::api::ApiClient`]) with the CLI's settings: the
/// token, `--server`, TLS, a connect timeout.
pub(crate) struct Api(tempora_client::api::ApiClient);

impl std::ops::Deref for Api {
    type Target = tempora_client::api::ApiClient;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Api {
    pub(crate) fn new(opts: &ClientOpts) -> Res<Api> {
        JSON_ERRORS.store(
            opts.output == OutputFormat::Json,
            std::sync::atomic::Ordering::Relaxed,
        );
        let builder = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(5));
        let builder = opts.tls.apply(builder).map_err(|e| fail(2, e))?;
        let token = client_token(opts);
        tempora_client::api::ApiClient::new(&server_base(&opts.server), token.as_deref(), builder)
            .map(Api)
            .map_err(Failure::from)
    }
}

/// Exit codes: 2 for a client setting, 4 for an unreachable server, 3 for "not found", 1 for
/// any other refusal; a 401 adds where a token comes from.
impl From<tempora_client::api::ApiError> for Failure {
    fn from(e: tempora_client::api::ApiError) -> Failure {
        use tempora_client::api::ApiError;
        match e {
            ApiError::Setup(m) => fail(2, m),
            ApiError::Unreachable { .. } => fail(4, e.to_string()),
            ApiError::Invalid(_) => fail(1, e.to_string()),
            ApiError::Refused {
                status,
                message,
                detail,
            } => {
                let code = if status == 404 { 3 } else { 1 };
                let hint = if status == 401 {
                    "\nhint: give a token with --token or TEMPORA_TOKEN; a server's first start \
                     writes an admin token to <data-dir>/admin.token (used by itself from the \
                     folder holding ./tempora-data, for a server on this machine)"
                } else {
                    ""
                };
                let mut failure = fail(code, format!("{message} (HTTP {status}){hint}"));
                failure.detail = detail.map(|mut d| {
                    d["status"] = json!(status);
                    d
                });
                failure
            }
        }
    }
}

/// `--timeout` of `job run --wait`.
fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    tempora_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Exit status of `job run --wait` and `run logs -f` for an ended run: 1 with its state and
/// error unless it succeeded.
fn succeeded(run: &Value) -> Res<()> {
    if run["state"] == "succeeded" {
        return Ok(());
    }
    let error = run["error"]
        .as_str()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    Err(fail(
        1,
        format!("run {} ended {}{error}", run["id"], s(&run["state"])),
    ))
}

/// Poll a run until it is final (or `timeout` passes: exit 124).
async fn wait_for_run(api: &Api, run: &Value, timeout: Option<std::time::Duration>) -> Res<Value> {
    let id = run["id"]
        .as_i64()
        .ok_or_else(|| fail(1, "the server's answer has no run id"))?;
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut v = run.clone();
    let mut told = String::new();
    loop {
        if !matches!(v["state"].as_str(), Some("queued" | "running")) {
            return Ok(v);
        }
        // Why it does not start, once per reason (no worker with the job's labels, …).
        if let Some(why) = v["waiting"].as_str()
            && why != told
        {
            eprintln!("run {id} waits: {why}");
            told = why.to_owned();
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Err(fail(
                124,
                format!(
                    "run {id} is still {} after the --timeout; it goes on",
                    s(&v["state"])
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        v = api.get_run(id).await?;
    }
}

/// The server's base URL: `host:port` without a scheme means `http://host:port`; no trailing
/// slash.
pub(crate) fn server_base(server: &str) -> String {
    let s = server.trim().trim_end_matches('/');
    if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    }
}

pub(crate) use tempora_client::api::causes;

/// Where a local server keeps its admin token by default.
const LOCAL_ADMIN_TOKEN: &str = "tempora-data/admin.token";

/// The token to send: `--token`/`TEMPORA_TOKEN`, else — for a server on a loopback address
/// only, so that the local admin token never leaves the machine — `./tempora-data/admin.token`.
fn client_token(opts: &ClientOpts) -> Option<String> {
    if let Some(t) = opts
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_owned());
    }
    let url = reqwest::Url::parse(&server_base(&opts.server)).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !local {
        return None;
    }
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(LOCAL_ADMIN_TOKEN).ok()?);
    // Whoever listens on the port gets the token: only a listener of the file's owner (the
    // server that wrote it), never another local user's program on a port the server left free.
    let port = url.port_or_known_default()?;
    if !listener_owned_by(port, owner) {
        return None;
    }
    let text = std::fs::read_to_string(LOCAL_ADMIN_TOKEN).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// Whether some socket listens on TCP `port` and every such socket belongs to user `uid`
/// (Linux's `/proc/net/tcp` and `tcp6`: local address, state `0A` = LISTEN, uid column).
fn listener_owned_by(port: u16, uid: u32) -> bool {
    let mut found = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(owner)) = (f.get(1), f.get(3), f.get(7)) else {
                continue;
            };
            let listening_here = *state == "0A"
                && local
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    == Some(port);
            if listening_here {
                if owner.parse::<u32>().ok() != Some(uid) {
                    return false;
                }
                found = true;
            }
        }
    }
    found
}

/// Create (or replace the contents of) a file only its owner can read and write (0600):
/// exports and backups hold what the server keeps from other users. A symbolic link at `path`
/// is not followed, and an existing file must be a regular file of this user's — so a file or
/// link another user planted in a shared directory is refused, not written through.
pub(crate) fn create_private(path: &std::path::Path) -> Res<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| fail(2, format!("cannot create {}: {e}", path.display())))?;
    let meta = f
        .metadata()
        .map_err(|e| fail(2, format!("cannot inspect {}: {e}", path.display())))?;
    if !meta.is_file() || meta.uid() != nix::unistd::Uid::effective().as_raw() {
        return Err(fail(
            2,
            format!(
                "{} exists and is not a regular file of yours; remove it first",
                path.display()
            ),
        ));
    }
    f.set_len(0)
        .map_err(|e| fail(2, format!("cannot truncate {}: {e}", path.display())))?;
    // A file that existed keeps its old mode through `open`.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail(2, format!("cannot restrict {}: {e}", path.display())))?;
    Ok(f)
}

/// Create a new file (0600) that must not exist yet; a symbolic link is not followed.
pub(crate) fn create_new_private(path: &std::path::Path) -> Res<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (left by an earlier attempt, or made by someone else): remove it"
            } else {
                ""
            };
            fail(2, format!("cannot create {}: {e}{hint}", path.display()))
        })
}

pub(crate) fn runtime() -> Res<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(1, format!("cannot start the runtime: {e}")))
}

pub(crate) fn finish(r: Res<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if JSON_ERRORS.load(std::sync::atomic::Ordering::Relaxed) {
                // The server's error fields (`code`, `field`, `status`), the message and the
                // exit status, as one JSON object on standard error.
                let mut e = f.detail.unwrap_or_else(|| json!({}));
                e["message"] = json!(f.message);
                e["exit_code"] = json!(f.code);
                eprintln!("{}", json!({ "error": e }));
            } else {
                eprintln!("error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Fields as `key  value` lines; instants (`…_at`, `…_for`, `not_before`) in `tz`, to the
/// second.
fn print_kv(v: &Value, tz: &jiff::tz::TimeZone) {
    if let Some(obj) = v.as_object() {
        let w = obj.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, val) in obj {
            let instant = k.ends_with("_at") || k.ends_with("_for") || k == "not_before";
            let text = match val {
                Value::String(_) if instant => crate::view::when(val, tz),
                Value::Object(_) | Value::Array(_) => val.to_string(),
                other => s(other),
            };
            println!("{k:<w$}  {text}");
        }
    } else {
        print_json(v);
    }
}

fn show_job(v: &Value, fmt: OutputFormat, utc: bool) {
    if fmt == OutputFormat::Json {
        return print_json(v);
    }
    let mut flat = v.clone();
    if let Some(obj) = flat.as_object_mut()
        && let Some(Value::Object(status)) = obj.remove("status")
    {
        for (k, val) in status {
            // The newest run in one line: `#12 succeeded`.
            let val = match (k.as_str(), &val) {
                ("last_run", Value::Object(r)) => {
                    json!(format!("#{} {}", s(&r["id"]), s(&r["state"])))
                }
                _ => val,
            };
            obj.insert(k, val);
        }
    }
    print_kv(&flat, &crate::view::zone(v["timezone"].as_str(), utc));
}

/// The zones to show `runs` in: each job's own (read from the server once per job), or UTC.
async fn zones_for(api: &Api, runs: &[Value], utc: bool) -> crate::view::Zones {
    let mut zones = crate::view::Zones::new(utc);
    for r in runs {
        let Some(job) = r["job"].as_str() else {
            continue;
        };
        if zones.missing(job)
            && let Ok(j) = api.get_job(job).await
            && let Some(tz) = j["timezone"].as_str()
        {
            zones.learn(job, tz);
        }
    }
    zones
}

/// Runs as a table, in their jobs' zones (or UTC).
async fn run_table(api: &Api, runs: &[Value], utc: bool) -> String {
    let zones = zones_for(api, runs, utc).await;
    crate::view::runs(runs, &zones)
}

/// Run a `tempora job …` command.
pub fn run_job(cmd: JobCommand, opts: ClientOpts) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(job(cmd, opts))))
}

async fn job(cmd: JobCommand, opts: ClientOpts) -> Res<()> {
    let api = Api::new(&opts)?;
    let fmt = opts.output;
    let opts_utc = opts.utc;
    match cmd {
        JobCommand::Ls {
            query,
            label,
            owner,
            state,
        } => {
            let mut filters: Vec<(&str, String)> = Vec::new();
            if !label.is_empty() {
                filters.push(("label", label.join(",")));
            }
            for (k, v) in [("q", query), ("owner", owner), ("state", state)] {
                if let Some(v) = v {
                    filters.push((k, v));
                }
            }
            let all = crate::apply::jobs_matching(&api, &filters).await?;
            if fmt == OutputFormat::Json {
                print_json(&json!({"jobs": all}));
            } else {
                let rows = all
                    .iter()
                    .map(|j| {
                        vec![
                            s(&j["name"]),
                            s(&j["schedule"]),
                            s(&j["timezone"]),
                            if j["paused"].as_bool() == Some(true) {
                                "paused"
                            } else if j["status"]["running"].as_bool() == Some(true) {
                                "running"
                            } else if j["status"]["failing"].as_bool() == Some(true) {
                                "failing"
                            } else {
                                "active"
                            }
                            .to_owned(),
                            crate::view::when(
                                &j["status"]["next_fire_at"],
                                &crate::view::zone(j["timezone"].as_str(), opts_utc),
                            ),
                            s(&j["status"]["last_result"]),
                            s(&j["status"]["success_count"]),
                            s(&j["status"]["error_count"]),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    crate::view::table(
                        &[
                            "NAME", "SCHEDULE", "TIMEZONE", "STATE", "NEXT", "LAST", "OK", "ERRORS"
                        ],
                        rows
                    )
                );
            }
        }
        JobCommand::Get { name } => {
            let v = api.get_job(&name).await?;
            show_job(&v, fmt, opts_utc);
        }
        JobCommand::Put { file } => {
            let text = if file == "-" {
                let mut buf = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf)
                    .map_err(|e| fail(2, format!("cannot read standard input: {e}")))?;
                buf
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| fail(2, format!("cannot read {file}: {e}")))?
            };
            // YAML, as `apply` reads (JSON is YAML too).
            let body: Value = serde_yaml_ng::from_str(&text)
                .map_err(|e| fail(2, format!("{file} is not valid YAML or JSON: {e}")))?;
            let name = body["name"]
                .as_str()
                .ok_or_else(|| fail(2, format!("{file}: the job needs a \"name\"")))?
                .to_owned();
            let v = api.put_job(&name, &body).await?;
            show_job(&v, fmt, opts_utc);
        }
        JobCommand::Rm { name, force } => {
            api.delete_job(&name, force).await?;
            if fmt == OutputFormat::Table {
                println!("deleted job {name}");
            } else {
                print_json(&json!({"deleted": name}));
            }
        }
        JobCommand::Run {
            name,
            env,
            args,
            force,
            wait,
            timeout,
        } => {
            let mut envs = serde_json::Map::new();
            for kv in env {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| fail(2, format!("--env `{kv}`: expected KEY=VALUE")))?;
                envs.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            let mut body = json!({"env": envs, "force": force});
            if !args.is_empty() {
                body["arguments"] = json!(args);
            }
            let mut v = api.trigger(&name, &body).await?;
            if wait {
                v = wait_for_run(&api, &v, timeout).await?;
            }
            if fmt == OutputFormat::Json {
                print_json(&v);
            } else {
                print!(
                    "{}",
                    run_table(&api, std::slice::from_ref(&v), opts_utc).await
                );
            }
            if wait {
                succeeded(&v)?;
            }
        }
        JobCommand::Pause { name } => {
            let v = api.pause(&name).await?;
            match fmt {
                OutputFormat::Json => print_json(&v),
                OutputFormat::Table => println!("paused job {name}"),
            }
        }
        JobCommand::Backfill {
            name,
            from,
            to,
            max,
            dry_run,
        } => {
            let body = json!({"from": from, "to": to, "max": max, "dry_run": dry_run});
            let v = api.backfill(&name, &body).await?;
            let occurrences = v["occurrences"].as_array().map_or(0, Vec::len);
            match fmt {
                OutputFormat::Json => print_json(&v),
                OutputFormat::Table if dry_run => {
                    println!(
                        "{occurrences} occurrence(s) of job {name} in the range (those that ran already are not run again):"
                    );
                    for o in v["occurrences"].as_array().into_iter().flatten() {
                        println!("  {}", s(o));
                    }
                }
                OutputFormat::Table => {
                    println!(
                        "backfill of job {name}: {} run(s) created, {} occurrence(s) had a run already",
                        v["created"].as_array().map_or(0, Vec::len),
                        s(&v["existing"])
                    );
                    if v["pruned"].as_u64().is_some_and(|n| n > 0) {
                        println!(
                            "{} occurrence(s) not run: retention deleted the job's runs up to them, so they may have run",
                            s(&v["pruned"])
                        );
                    }
                }
            }
        }
        JobCommand::Resume { name } => {
            let v = api.resume(&name).await?;
            match fmt {
                OutputFormat::Json => print_json(&v),
                OutputFormat::Table => {
                    let next = &v["status"]["next_fire_at"];
                    match next {
                        Value::Null => println!("resumed job {name}"),
                        _ => println!(
                            "resumed job {name}; next run {}",
                            crate::view::when(
                                next,
                                &crate::view::zone(v["timezone"].as_str(), opts_utc)
                            )
                        ),
                    }
                }
            }
        }
    }
    Ok(())
}

/// Run a `tempora run …` command.
pub fn run_run(cmd: RunCommand, opts: ClientOpts) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(run(cmd, opts))))
}

async fn run(cmd: RunCommand, opts: ClientOpts) -> Res<()> {
    let api = Api::new(&opts)?;
    let fmt = opts.output;
    let opts_utc = opts.utc;
    match cmd {
        RunCommand::Ls {
            job,
            state,
            trigger,
            since,
            until,
            limit,
            before,
        } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(b) = before {
                q.push(("before", b.to_string()));
            }
            for (k, v) in [
                ("job", job),
                ("state", state),
                ("trigger", trigger),
                ("since", since),
                ("until", until),
            ] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let v = api.search_runs(&q).await?;
            if fmt == OutputFormat::Json {
                print_json(&v);
            } else {
                let runs = v["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                print!("{}", run_table(&api, runs, opts_utc).await);
            }
        }
        RunCommand::Get { id } => {
            let v = api.get_run(id).await?;
            if fmt == OutputFormat::Json {
                print_json(&v);
            } else {
                let zones = zones_for(&api, std::slice::from_ref(&v), opts_utc).await;
                print_kv(&v, &zones.of(v["job"].as_str().unwrap_or_default()));
            }
        }
        RunCommand::Logs { id, follow } => {
            let resp = api.run_log(id, follow).await?;
            let mut stream = resp.bytes_stream();
            let mut stdout = std::io::stdout();
            while let Some(chunk) = stream.next().await {
                let chunk =
                    chunk.map_err(|e| fail(4, format!("connection to the server lost: {e}")))?;
                if stdout
                    .write_all(&chunk)
                    .and_then(|_| stdout.flush())
                    .is_err()
                {
                    return Ok(()); // stdout closed (e.g. piped into head)
                }
            }
            // Following ends when the run does: exit as `job run --wait` would.
            if follow {
                let v = api.get_run(id).await?;
                succeeded(&v)?;
            }
        }
        RunCommand::Cancel { id } => {
            let v = api.cancel_run(id).await?;
            if fmt == OutputFormat::Json {
                print_json(&v);
            } else {
                println!("cancel requested for run {id} (state: {})", s(&v["state"]));
            }
        }
    }
    Ok(())
}
