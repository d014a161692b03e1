//! `tempora server`: its flags, logging and metrics set-up; the node it runs (store, scheduler,
//! reaper, retention, local worker pool, HTTP API) is started and stopped by [`crate::node`],
//! gracefully on SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tempora_store::Store;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tempora_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Flags of `tempora server`. Each is also read from a `TEMPORA_*` environment variable and from
/// the TOML file given by `--config` (precedence: flag > environment > file > default).
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML configuration file; keys are the flag names with `_` (e.g. `data_dir = "/var/lib/tempora"`).
    #[arg(long, env = "TEMPORA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded SQLite database.
    #[arg(long, env = "TEMPORA_DATA_DIR", default_value = "./tempora-data")]
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on.
    #[arg(long, env = "TEMPORA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Runs this server executes at once in its local worker pool (0 = no local worker).
    #[arg(long, env = "TEMPORA_LOCAL_SLOTS", default_value_t = 64)]
    pub local_slots: usize,
    /// This node's id (default: hostname:port).
    #[arg(long, env = "TEMPORA_NODE_ID")]
    pub node_id: Option<String>,
    /// Log format.
    #[arg(long, env = "TEMPORA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// On SIGTERM/SIGINT, how long running runs may go on before they are killed.
    #[arg(long, env = "TEMPORA_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Between SIGTERM and SIGKILL when a run times out or is cancelled.
    #[arg(long, env = "TEMPORA_KILL_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub kill_grace: Duration,
    /// Lease of a running run; a worker silent for this long has its runs marked lost.
    #[arg(long, env = "TEMPORA_LEASE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// Longest a remote worker's claim is held open while no run is queued (a long poll; at
    /// most 30s). Keep it under the idle timeout of any proxy between workers and servers.
    #[arg(long, env = "TEMPORA_CLAIM_WAIT_MAX", default_value = "30s", value_parser = parse_duration)]
    pub claim_wait_max: Duration,
    /// Output kept per run (the tail is kept).
    #[arg(long, env = "TEMPORA_MAX_LOG_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_log_bytes: u64,
    /// Bound of the SQLite writer's page cache in MiB (SQLite only). The server's memory levels
    /// off once the cache is full; a larger cache helps only databases far bigger than it.
    #[arg(long, env = "TEMPORA_SQLITE_CACHE_MIB", value_name = "MIB", default_value_t = tempora_store_sqlite::DEFAULT_CACHE_MIB, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub sqlite_cache_mib: u32,
    /// SQLite durability (SQLite only): `full` (default) syncs every commit to disk; `normal`
    /// syncs at checkpoints only — faster, but a power loss may lose the last commits, and an
    /// occurrence fired in them may then run twice.
    #[arg(long, env = "TEMPORA_SQLITE_SYNCHRONOUS", value_name = "full|normal", default_value = "full", value_parser = parse_synchronous)]
    pub sqlite_synchronous: tempora_store_sqlite::Synchronous,
    /// PostgreSQL URL (`postgres://user:pass@host:5432/db`): run as a node of a cluster sharing
    /// this database instead of the embedded SQLite store in `--data-dir`.
    #[arg(long, env = "TEMPORA_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Leader lease length: a new leader takes over at most this long (plus one renewal
    /// interval) after the old one dies.
    #[arg(long, env = "TEMPORA_LEADER_LEASE_TTL", default_value = "4s", value_parser = parse_duration)]
    pub leader_lease_ttl: Duration,
    /// How often an idle local worker pool looks for queued runs. Runs fired on this node wake
    /// it at once; runs fired by another node (cluster) are found by this poll.
    #[arg(long, env = "TEMPORA_CLAIM_POLL_EVERY", default_value = "100ms", value_parser = parse_duration)]
    pub claim_poll_every: Duration,
    /// PostgreSQL connections this node keeps (cluster only).
    #[arg(long, env = "TEMPORA_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,
    /// Never take the leader lease: this node serves the API and runs its local workers only.
    #[arg(long, env = "TEMPORA_NO_LEADER")]
    pub no_leader: bool,
    /// How often the leader renews its lease, and other nodes try to take it.
    #[arg(long, env = "TEMPORA_LEADER_RENEW_EVERY", default_value = "1s", value_parser = parse_duration)]
    pub leader_renew_every: Duration,
    /// Cluster: the largest offset of this node's clock to the database's at which it may
    /// lead. Every node runs on the database's clock whatever its own says (measured at each
    /// renewal); a node further off, or whose offset cannot be measured, does not take the
    /// lease, and a leader drifting past it steps down. A WARN is logged past half of it.
    #[arg(long, env = "TEMPORA_MAX_CLOCK_OFFSET", default_value = "2s", value_parser = parse_duration)]
    pub max_clock_offset: Duration,
    /// Labels of the local worker pool, `k=v,k2=v2` (default none): a job with a `selector`
    /// runs locally only if these labels satisfy it.
    #[arg(long, env = "TEMPORA_LOCAL_LABELS", default_value = "", value_parser = parse_labels)]
    pub local_labels: BTreeMap<String, String>,
    /// The kinds of job the local worker pool runs: `auto` (default: commands and HTTP
    /// requests, and containers when the Docker engine at --docker-socket answers) or a list of
    /// `command`, `http`, `container`.
    #[arg(long, env = "TEMPORA_LOCAL_CAPABILITIES", default_value = "auto")]
    pub local_capabilities: String,
    /// The Docker engine's Unix socket, for container jobs.
    #[arg(long, env = "TEMPORA_DOCKER_SOCKET", default_value = tempora_worker::docker::DEFAULT_SOCKET)]
    pub docker_socket: String,
    /// Keep only the newest N finished runs of each job; 0 keeps every run. Older finished
    /// runs and their output are deleted in the background by the leader; queued and running
    /// runs, and each job's newest finished run, are never deleted.
    #[arg(long, env = "TEMPORA_KEEP_RUNS", value_name = "N", default_value = "100", allow_hyphen_values = true, value_parser = parse_keep)]
    pub keep_runs: u32,
    /// Delete finished runs that ended more than D days ago (and audit entries as old); 0
    /// keeps them. With `--keep-runs` too, a run goes when either limit says so.
    #[arg(long, env = "TEMPORA_KEEP_DAYS", value_name = "D", default_value = "30", allow_hyphen_values = true, value_parser = parse_keep)]
    pub keep_days: u32,
    /// Most jobs with their own series on `/metrics` (`tempora_job_*`): jobs labelled
    /// `metrics: "true"`, by name; 0 turns the series off.
    #[arg(long, env = "TEMPORA_JOB_METRICS_MAX", value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub job_metrics_max: u32,
    /// Pause between two retention passes (with `--keep-runs` or `--keep-days`).
    #[arg(long, env = "TEMPORA_RETENTION_EVERY", default_value = "60s", value_parser = parse_duration)]
    pub retention_every: Duration,
    /// Most runs retention deletes in one transaction (smaller: shorter waits for fires behind
    /// it, slower deletion).
    #[arg(long, env = "TEMPORA_RETENTION_BATCH", value_name = "N", default_value = "200", value_parser = parse_batch)]
    pub retention_batch: u32,
    /// The admin token file (default `<data-dir>/admin.token`). At the first start of an empty
    /// store a new admin token is written there (mode 0600); a file that exists is read and
    /// its token stored as the `admin` token (give every node of a cluster the same file). A
    /// file its group or others can read is refused.
    #[arg(long, env = "TEMPORA_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The key that seals job secrets (default `<data-dir>/secret.key`, made at the first start:
    /// 64 hex digits, mode 0600). Every node of a cluster must use the same file. A file its
    /// group or others can read is refused.
    #[arg(long, env = "TEMPORA_SECRET_KEY_FILE", value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// The key webhook notifications are signed with (default `<data-dir>/webhook.key`, made at
    /// the first start: 64 hex digits, mode 0600; the receivers check `X-Tempora-Signature`
    /// with its text). Every node of a cluster must use the same file.
    #[arg(long, env = "TEMPORA_WEBHOOK_KEY_FILE", value_name = "FILE")]
    pub webhook_key_file: Option<PathBuf>,
    /// The SMTP server email notifications go through: `smtp://[user:password@]host[:port]`
    /// (`?tls=required` for STARTTLS) or `smtps://…` (TLS). None: email notifications are
    /// recorded as skipped.
    #[arg(
        long,
        env = "TEMPORA_SMTP_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub smtp_url: Option<String>,
    /// Certificates (PEM) to trust for the SMTP server besides the system's (a relay with a
    /// private CA); needs `smtps://` or `?tls=required`.
    #[arg(long, env = "TEMPORA_SMTP_CA_FILE", value_name = "FILE")]
    pub smtp_ca_file: Option<PathBuf>,
    /// The sender of email notifications (default `tempora@<hostname>`).
    #[arg(long, env = "TEMPORA_SMTP_FROM", value_name = "ADDRESS")]
    pub smtp_from: Option<String>,
    /// Largest artifact `POST /api/v1/artifacts` (`tempora artifact push`) takes, in bytes (an
    /// upload is held in memory while it is stored).
    #[arg(long, env = "TEMPORA_MAX_ARTIFACT_BYTES", default_value_t = tempora_http::artifacts::DEFAULT_MAX_ARTIFACT)]
    pub max_artifact_bytes: usize,
    /// Most bytes of artifacts the local pool keeps in `<data-dir>/artifact-cache` (least
    /// recently used ones go first).
    #[arg(long, env = "TEMPORA_ARTIFACT_CACHE_MAX", default_value_t = 1 << 30)]
    pub artifact_cache_max: u64,
    /// Server-wide notification rules, applied to every job besides its own `notify`: a JSON
    /// rule or list of rules, e.g. `{"on": ["retry_exhausted"], "webhook": "https://…"}`.
    /// Repeatable. Give every node of a cluster the same.
    #[arg(long, env = "TEMPORA_NOTIFY_DEFAULT", value_name = "JSON", value_parser = parse_notify_rules)]
    pub notify_default: Vec<Vec<tempora_core::notify::NotifyRule>>,
    /// How long a notification that cannot be delivered is retried (backoff from 1 s, doubling,
    /// at most 5 min between attempts).
    #[arg(long, env = "TEMPORA_NOTIFY_RETRY_FOR", default_value = "10m", value_parser = parse_duration)]
    pub notify_retry_for: Duration,
    /// A web origin (`https://ui.example.com`) allowed to call the API from a browser: it gets
    /// CORS headers and may send changes. Repeat or separate with commas; none by default.
    #[arg(
        long = "cors-origin",
        env = "TEMPORA_CORS_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_origins: Vec<String>,
    /// Answer only requests whose `Host` header names one of these hosts (against DNS
    /// rebinding). Repeat or separate with commas; by default any host.
    #[arg(
        long = "allowed-host",
        env = "TEMPORA_ALLOWED_HOST",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub allowed_hosts: Vec<String>,
    /// Serve `/metrics` without a token (every other route still needs one).
    #[arg(long, env = "TEMPORA_METRICS_PUBLIC")]
    pub metrics_public: bool,
    /// How long a web UI session lasts after signing in (never longer than its token).
    #[arg(long, env = "TEMPORA_UI_SESSION_TTL", default_value = "12h", value_parser = parse_duration)]
    pub ui_session_ttl: Duration,
    /// Serve HTTPS with this certificate chain (PEM); with `--tls-key`. Both files are read
    /// again on SIGHUP (certificate rotation without a restart).
    #[arg(
        long,
        env = "TEMPORA_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(
        long,
        env = "TEMPORA_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// With TLS: require every client (CLI, workers, Chronos clients) to present a certificate
    /// that chains to these CA certificates (PEM) — mutual TLS. Tokens are still required.
    #[arg(
        long,
        env = "TEMPORA_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub client_ca: Option<PathBuf>,
    /// More variables of the server's environment that runs inherit, besides PATH, HOME, LANG
    /// and TZ (a run sees nothing else of the server's environment). Comma-separated.
    #[arg(long, env = "TEMPORA_PASS_ENV", value_delimiter = ',', value_name = "NAME", value_parser = parse_pass_env)]
    pub pass_env: Vec<String>,
    /// How every process a run starts is ended with it: `auto` (a cgroup v2 per run where this
    /// process can make one, else `sweep`), `cgroup` (refuse to start without), `sweep` (kill the
    /// processes whose environment holds the run's id).
    #[arg(long, env = "TEMPORA_CONTAINMENT", value_name = "auto|cgroup|sweep", default_value = "auto", value_parser = parse_containment)]
    pub containment: tempora_worker::contain::Mode,
}

/// A `--pass-env` name: a variable name, never one of tempora's own (`TEMPORA_*` hold the
/// server's configuration, a database URL among them).
pub fn parse_pass_env(s: &str) -> Result<String, String> {
    let name = s.trim();
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(format!("`{name}` is not a variable name"));
    }
    if name.starts_with(tempora_core::job::RESERVED_ENV_PREFIX) {
        return Err(format!(
            "`{name}`: tempora's own variables are never passed to runs"
        ));
    }
    Ok(name.to_owned())
}

/// Parse a whole number ≥ 1 of `unit` for a retention flag.
fn parse_positive(s: &str, unit: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err(format!("must be at least 1 {unit}")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a whole number of {unit} (1 or more)")),
    }
}

/// `--containment`.
pub(crate) fn parse_containment(s: &str) -> Result<tempora_worker::contain::Mode, String> {
    use tempora_worker::contain::Mode;
    match s.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(Mode::Auto),
        "cgroup" => Ok(Mode::Cgroup),
        "sweep" => Ok(Mode::Sweep),
        _ => Err("expected `auto`, `cgroup` or `sweep`".to_owned()),
    }
}

/// `--sqlite-synchronous`.
fn parse_synchronous(s: &str) -> Result<tempora_store_sqlite::Synchronous, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "full" => Ok(tempora_store_sqlite::Synchronous::Full),
        "normal" => Ok(tempora_store_sqlite::Synchronous::Normal),
        _ => Err("expected `full` or `normal`".to_owned()),
    }
}

/// `--keep-runs` / `--keep-days`: a whole number, 0 = no limit.
fn parse_keep(s: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .map_err(|_| "expected a whole number (0 turns this limit off)".to_owned())
}

/// `--retention-batch`: 1 or more.
fn parse_batch(s: &str) -> Result<u32, String> {
    parse_positive(s, "runs")
}

/// Parse a `k=v,k2=v2` label list.
/// A `--notify-default` value: one JSON rule or a list of them, checked as a job's `notify`.
pub fn parse_notify_rules(s: &str) -> Result<Vec<tempora_core::notify::NotifyRule>, String> {
    use tempora_core::notify::NotifyRule;
    let value: serde_json::Value = serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))?;
    let rules: Vec<NotifyRule> = if value.is_array() {
        serde_json::from_value(value)
    } else {
        serde_json::from_value::<NotifyRule>(value).map(|r| vec![r])
    }
    .map_err(|e| e.to_string())?;
    tempora_core::notify::validate(&rules).map_err(|e| e.to_string())?;
    if rules.iter().any(|r| {
        [&r.webhook, &r.slack]
            .into_iter()
            .flatten()
            .any(|u| u.starts_with("${"))
    }) {
        return Err(
            "a server-wide rule names its URL itself (`${NAME}` is a job's variable)".into(),
        );
    }
    Ok(rules)
}

pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let labels = tempora_core::job::parse_labels(s).map_err(|e| e.to_string())?;
    // Capabilities are given with --capabilities, never as labels.
    tempora_core::kind::check_not_reserved("labels", &labels).map_err(|e| e.to_string())?;
    Ok(labels)
}

/// Log to stderr in `format`, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let lag_buckets = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("tempora_schedule_lag_seconds".into()),
            &lag_buckets,
        )?
        .set_buckets_for_metric(
            Matcher::Suffix("batch_size".into()),
            &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0],
        )?
        .install_recorder()
        .context("cannot install the metrics recorder")
        .inspect(|_| describe_metrics())
}

/// The `# HELP` line of each metric (shown once the metric has a value).
fn describe_metrics() {
    use metrics::Unit;
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "tempora_schedule_lag_seconds",
        Unit::Seconds,
        "How late the scheduler fired each occurrence, from its scheduled instant"
    );
    describe_counter!(
        "tempora_occurrences_total",
        "Occurrences fired by the scheduler, by disposition (queued, skipped)"
    );
    describe_gauge!(
        "tempora_scheduled_jobs",
        "Jobs with a time schedule in the leader's timer"
    );
    describe_counter!(
        "tempora_leader_elections_total",
        "Times this node became the leader"
    );
    describe_gauge!("tempora_is_leader", "1 while this node is the leader");
    describe_gauge!(
        "tempora_clock_offset_seconds",
        "This node's clock offset to the database's (database minus node; cluster only)"
    );
    describe_gauge!("tempora_jobs", "Jobs stored");
    describe_gauge!("tempora_runs_queued", "Runs waiting for a worker slot");
    describe_gauge!(
        "tempora_runs_waiting_for_worker",
        "Queued runs, due now, that no connected worker may take (their job's selector matches no live worker's labels, or no worker is connected)"
    );
    describe_gauge!(
        "tempora_runs_running",
        "Runs claimed by a worker and not ended"
    );
    describe_gauge!(
        "tempora_worker_running",
        "Job processes this node's worker slots are running"
    );
    describe_counter!(
        "tempora_runs_finished_total",
        "Runs this node's worker finished, by state"
    );
    describe_histogram!(
        "tempora_result_batch_size",
        "Results sent to the store in one batch by this node's worker"
    );
    describe_histogram!(
        "tempora_result_delivery_seconds",
        Unit::Seconds,
        "From a run's end to its result being stored"
    );
    describe_counter!(
        "tempora_runs_reaped_total",
        "Runs marked lost because their worker stopped renewing its lease"
    );
    describe_counter!(
        "tempora_runs_pruned_total",
        "Finished runs deleted by retention (--keep-runs, --keep-days)"
    );
    describe_histogram!(
        "tempora_store_write_batch_size",
        "Operations committed in one SQLite write transaction"
    );
    describe_histogram!(
        "tempora_store_write_batch_seconds",
        Unit::Seconds,
        "Duration of one SQLite write transaction"
    );
    describe_counter!(
        "tempora_http_requests_total",
        "HTTP requests served, by route, method and status"
    );
    describe_gauge!(
        "tempora_sqlite_memory_bytes",
        Unit::Bytes,
        "Memory SQLite has allocated (page caches and statements)"
    );
}

/// This host's name (`localhost` if unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Entry point of `tempora server`.
pub fn main(args: ServerArgs) -> ExitCode {
    init_logging(args.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tempora")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(message = "server failed", error = %format!("{e:#}"));
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let checked = crate::node::check(&args)?;
    let prometheus = install_metrics()?;
    // The recorder keeps every histogram sample until it is folded into the histograms; without
    // this upkeep that happens only when `/metrics` is scraped, so an unscraped server's memory
    // grew by every run's samples (the 30-minute soak: +4 MiB a minute at 200 runs/s).
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let node = crate::node::Node::start(&args, checked, prometheus).await?;
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!(message = "second signal: exiting at once");
        std::process::exit(130);
    });
    node.stop().await;
    Ok(())
}

/// Read the secret key file, or make it (32 random bytes as hex, mode 0600) when it does not
/// exist. The log names the file and the key's id, never the key.
pub(crate) fn load_secret_key(
    path: &std::path::Path,
) -> anyhow::Result<tempora_core::secret::SecretKey> {
    let text = key_file(path, "secret key", "give every node of a cluster this file")?;
    let key = tempora_core::secret::SecretKey::parse(&text)
        .with_context(|| format!("invalid secret key file {}", path.display()))?;
    tracing::debug!(message = "secret key read", file = %path.display(), key_id = key.id());
    Ok(key)
}

/// The text of a key file (64 hex digits, mode 0600), made with 32 random bytes when it does
/// not exist; a file its group or others can read is refused. `what` names it in errors.
pub(crate) fn key_file(path: &std::path::Path, what: &str, hint: &str) -> anyhow::Result<String> {
    use tempora_core::secret::SecretKey;
    use tempora_http::auth::bootstrap::{read_token_file, write_token_file};
    if !path.exists() {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("no random bytes for the {what}: {e}"))?;
        let text = SecretKey::encode(&bytes);
        write_token_file(path, &text)
            .with_context(|| format!("cannot write the {what} file {}", path.display()))?;
        tracing::info!(message = "key file made", key = what, hint, file = %path.display());
        return Ok(text);
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "the {what} file {} can be read by its group or others (mode {mode:o}); make it 0600",
            path.display()
        );
    }
    let text = read_token_file(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!(
            "invalid {what} file {}: expected 64 hex digits",
            path.display()
        );
    }
    Ok(text)
}

/// Make sure the admin token of `file` is in the store, or make the first one (see
/// `tempora_http::auth::bootstrap`). The log names the file, never the token.
pub(crate) async fn bootstrap_admin(
    store: &dyn Store,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    use tempora_http::auth::bootstrap::{Bootstrapped, bootstrap};
    let outcome = bootstrap(store, file)
        .await
        .context("cannot set up the admin token")?;
    match outcome {
        Bootstrapped::Created(f) => tracing::info!(
            message = "first start: an admin token was written; give it to clients as `Authorization: Bearer <token>`",
            file = %f.display()
        ),
        Bootstrapped::Stored(f) => {
            tracing::info!(message = "admin token stored from its file", file = %f.display())
        }
        Bootstrapped::Known(f) => {
            tracing::debug!(message = "admin token file read", file = %f.display())
        }
        Bootstrapped::Skipped(f) => tracing::info!(
            message = "no admin token file, and tokens exist already: none written (another node made the first one, or use an admin token to make more)",
            file = %f.display()
        ),
    }
    Ok(())
}

/// Read the certificate files again on every SIGHUP; a pair that does not load is logged and
/// the certificate in use is kept.
pub(crate) async fn reload_on_sighup(
    files: crate::tls::ServerTls,
    rustls: axum_server::tls_rustls::RustlsConfig,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(message = "cannot listen for SIGHUP: certificates are not reloaded", error = %e);
            return;
        }
    };
    while hup.recv().await.is_some() {
        match files.config() {
            Ok(config) => {
                rustls.reload_from_config(config);
                tracing::info!(message = "TLS certificate reloaded", cert = %files.cert.display());
            }
            Err(e) => tracing::error!(
                message = "TLS certificate not reloaded; the previous one stays",
                error = %format!("{e:#}")
            ),
        }
    }
}

/// SIGHUP is caught and logged where there is nothing to reload: its default action would end
/// the process without a word (`kill -HUP` from a log rotation, a closed terminal).
pub async fn sighup_reloads_nothing(why: &'static str) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(message = "cannot listen for SIGHUP", error = %e);
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!(message = "SIGHUP received: nothing to reload", reason = why);
    }
}

/// Wait for SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(message = "cannot listen for SIGTERM", error = %e);
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(message = "SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!(message = "SIGINT received"),
    }
}
