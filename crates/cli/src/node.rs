//! One tempora node: the supervisor of the server's tasks. [`check`] validates every flag (and
//! reads the TLS files) before anything starts; [`Node::start`] opens the store, follows its
//! clock, and starts the elector, scheduler, reaper, retention, notifier, local worker pool and HTTP API;
//! [`Node::stop`] stops them in order (scheduling first, then the lease, then the runs, then
//! the API), so that another node takes over at once and no run is left half-recorded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tempora_scheduler::leader::{LeaderConfig, run_elector};
use tempora_scheduler::retention::{RetentionConfig, run_retention};
use tempora_scheduler::{Scheduler, SchedulerConfig};
use tempora_store::{Retention, Store, StoreOptions};
use tempora_store_postgres::PostgresStore;
use tempora_store_sqlite::SqliteStore;
use tempora_worker::pool::{PoolConfig, WorkerPool};
use tempora_worker::source::StoreSource;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::{
    ServerArgs, bootstrap_admin, hostname, load_secret_key, reload_on_sighup,
    sighup_reloads_nothing,
};

/// Time beyond the shutdown and kill graces a stopping server may take (closing connections,
/// giving up the lease) before it exits anyway.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(5);

/// The smallest `--max-clock-offset`: below it, the uncertainty of a reading (half a round trip
/// to the database, commonly a fraction of a millisecond, far more under load) would keep
/// every node from leading.
const MIN_CLOCK_OFFSET_LIMIT: Duration = Duration::from_millis(10);

/// What [`check`] found valid: the flags, and what had to be read to validate them.
pub struct Checked {
    tls: Option<(crate::tls::ServerTls, Arc<rustls::ServerConfig>)>,
    retention: Retention,
}

/// Validate every flag before anything starts: a wrong combination is an error naming the flag,
/// with no store opened, no port bound and no task started.
pub fn check(args: &ServerArgs) -> anyhow::Result<Checked> {
    if args.leader_renew_every.is_zero() || args.leader_renew_every >= args.leader_lease_ttl {
        anyhow::bail!(
            "--leader-renew-every ({:?}) must be shorter than --leader-lease-ttl ({:?})",
            args.leader_renew_every,
            args.leader_lease_ttl
        );
    }
    if args.max_clock_offset < MIN_CLOCK_OFFSET_LIMIT {
        anyhow::bail!(
            "--max-clock-offset must be at least 10ms (default 2s): a node measures its offset \
             only to within half a round trip to the database, so a smaller limit would keep \
             every node from leading"
        );
    }
    if args.retention_every.is_zero() {
        anyhow::bail!("--retention-every must be longer than 0s");
    }
    if args.lease_ttl.is_zero() {
        anyhow::bail!("--lease-ttl must be longer than 0s");
    }
    if args.claim_poll_every.is_zero() {
        anyhow::bail!("--claim-poll-every must be longer than 0s");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = crate::tls::ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca.clone(),
            };
            let config = files.config()?;
            Some((files, config))
        }
        _ => None,
    };
    Ok(Checked {
        tls,
        retention: Retention {
            keep_runs: (args.keep_runs > 0).then_some(args.keep_runs),
            keep_days: (args.keep_days > 0).then_some(args.keep_days),
        },
    })
}

/// The running tasks of a node, stopped by [`Node::stop`].
pub struct Node {
    /// Stops scheduling, reaping, retention and claiming new runs (running ones drain).
    shutdown: CancellationToken,
    /// Gives the lease up; cancelled once the scheduler has stopped.
    elector_stop: CancellationToken,
    /// Closes the API; cancelled once the local pool has drained.
    http_stop: CancellationToken,
    scheduler: JoinHandle<Result<(), tempora_scheduler::SchedulerError>>,
    reaper: JoinHandle<()>,
    retention: Option<JoinHandle<()>>,
    elector: JoinHandle<()>,
    pool: Option<JoinHandle<()>>,
    /// Delivers notifications; stopped once the local pool has drained.
    notifier: JoinHandle<()>,
    notify_stop: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    /// How long stopping may take before the watchdog exits the process.
    stop_limit: Duration,
}

impl Node {
    /// Open the store and start every task of the node, as `checked` by [`check`].
    pub async fn start(
        args: &ServerArgs,
        checked: Checked,
        prometheus: PrometheusHandle,
    ) -> anyhow::Result<Self> {
        let node_id = args
            .node_id
            .clone()
            .unwrap_or_else(|| format!("{}:{}", hostname(), args.listen.port()));
        let (store, store_kind) = open_store(args).await?;
        // On the database's clock before anything is written or scheduled.
        if let Some(offset) = tempora_scheduler::leader::sync_clock(store.as_ref()).await {
            tracing::info!(
                message = "following the database's clock",
                offset_ms = tempora_store::clock::millis(offset)
            );
        }
        let token_file = args
            .admin_token_file
            .clone()
            .unwrap_or_else(|| args.data_dir.join("admin.token"));
        bootstrap_admin(store.as_ref(), &token_file).await?;
        let secret_key = Arc::new(load_secret_key(
            &args
                .secret_key_file
                .clone()
                .unwrap_or_else(|| args.data_dir.join("secret.key")),
        )?);
        let webhook_key = crate::server::key_file(
            &args
                .webhook_key_file
                .clone()
                .unwrap_or_else(|| args.data_dir.join("webhook.key")),
            "webhook key",
            "receivers check X-Tempora-Signature with it; give every node of a cluster this file",
        )?;
        tempora_store::notify::set_defaults(args.notify_default.concat());
        let mut notify = tempora_notify::NotifyConfig::new(webhook_key.as_bytes());
        notify.secret_key = Some(secret_key.clone());
        notify.retry_for = args.notify_retry_for;
        if let Some(url) = &args.smtp_url {
            let from = args
                .smtp_from
                .clone()
                .unwrap_or_else(|| format!("tempora@{}", hostname()));
            let ca = match &args.smtp_ca_file {
                Some(p) => Some(
                    std::fs::read(p)
                        .with_context(|| format!("cannot read --smtp-ca-file {}", p.display()))?,
                ),
                None => None,
            };
            notify.smtp = Some(
                tempora_notify::Smtp::new(url, &from, ca.as_deref()).map_err(anyhow::Error::msg)?,
            );
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let bound = listener.local_addr().unwrap_or(args.listen);
        let advertise = if bound.ip().is_unspecified() {
            format!("{}:{}", hostname(), bound.port())
        } else {
            bound.to_string()
        };
        let local_worker = format!("{node_id}/local");
        // Runs the previous incarnation of this node's local pool left `running` died with it.
        let lost = store
            .recover_worker(
                &local_worker,
                "lost: the server stopped while the run was going",
                tempora_store::clock::now(),
            )
            .await
            .context("cannot recover runs of the previous start")?;
        if !lost.is_empty() {
            tracing::warn!(message = "runs of the previous start marked lost", runs = ?lost);
        }
        if args.local_slots > 0 {
            tempora_worker::contain::init(args.containment)
                .context("--containment cgroup: no usable cgroup v2")?;
            if let Err(e) = tempora_worker::process::start_group_watchdog() {
                tracing::warn!(message = "cannot start the process-group watchdog", error = %e);
            }
        }

        let shutdown = CancellationToken::new();
        let work_ready = Arc::new(Notify::new());
        let stops_requested = Arc::new(Notify::new());
        let (scheduler, handle) = Scheduler::new(
            store.clone(),
            SchedulerConfig::default(),
            work_ready.clone(),
        );
        // Leader election: every node runs the elector; the leader schedules and reaps.
        let (leader_tx, leadership) = tokio::sync::watch::channel(None);
        let elector_stop = CancellationToken::new();
        let elector = tokio::spawn(run_elector(
            store.clone(),
            LeaderConfig {
                node: node_id.clone(),
                address: advertise.clone(),
                ttl: args.leader_lease_ttl,
                renew_every: args.leader_renew_every,
                eligible: !args.no_leader,
                max_clock_offset: args.max_clock_offset,
                clock: tempora_store::clock::system(),
            },
            leader_tx,
            elector_stop.clone(),
        ));
        let scheduler = tokio::spawn(scheduler.run(leadership.clone(), shutdown.child_token()));
        let reaper = tokio::spawn(tempora_scheduler::reaper::run_reaper(
            store.clone(),
            Duration::from_secs(5).min(args.lease_ttl),
            args.lease_ttl,
            work_ready.clone(),
            tempora_store::clock::system(),
            leadership.clone(),
            shutdown.child_token(),
        ));
        let retention = checked.retention.is_enabled().then(|| {
            tokio::spawn(run_retention(
                store.clone(),
                RetentionConfig {
                    every: args.retention_every,
                    batch: args.retention_batch,
                    ..RetentionConfig::new(checked.retention)
                },
                leadership.clone(),
                shutdown.child_token(),
            ))
        });
        let notify_stop = CancellationToken::new();
        let notifier = tokio::spawn(tempora_notify::run(
            store.clone(),
            notify,
            notify_stop.clone(),
        ));
        let (capabilities, engine) = if args.local_slots > 0 {
            crate::worker::capabilities(
                &args.local_capabilities,
                &args.docker_socket,
                &local_worker,
            )
            .await
            .map_err(|e| anyhow::anyhow!(e.replace("--capabilities", "--local-capabilities")))?
        } else {
            (Vec::new(), None)
        };
        let artifacts = if args.local_slots > 0 {
            let dir = args.data_dir.join("artifact-cache");
            Some(Arc::new(
                tempora_worker::artifacts::ArtifactCache::new(&dir, args.artifact_cache_max)
                    .map_err(anyhow::Error::msg)?,
            ))
        } else {
            None
        };
        let pool = (args.local_slots > 0).then(|| {
            let source = Arc::new(
                StoreSource::new(store.clone(), local_worker.clone(), args.lease_ttl)
                    .with_labels(args.local_labels.clone())
                    .with_capabilities(capabilities.clone())
                    .with_secret_key(secret_key.clone())
                    .with_registration(tempora_store::WorkerInfo {
                        id: local_worker.clone(),
                        labels: args.local_labels.clone(),
                        capabilities: capabilities.clone(),
                        slots: u32::try_from(args.local_slots).unwrap_or(u32::MAX),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        address: Some(advertise.clone()),
                        clock_offset: None,
                    }),
            );
            let config = PoolConfig {
                slots: args.local_slots,
                kill_grace: args.kill_grace,
                shutdown_grace: args.shutdown_grace,
                heartbeat_every: (args.lease_ttl / 3).min(Duration::from_secs(2)),
                poll_every: args.claim_poll_every,
                inherited_env: tempora_worker::process::inherited_env(&args.pass_env),
                engine,
                capabilities,
                artifacts,
                ..PoolConfig::default()
            };
            let pool = WorkerPool::new(source, config, work_ready.clone())
                .with_stop_signal(stops_requested.clone());
            tokio::spawn(pool.run(shutdown.child_token()))
        });

        let state = Arc::new(tempora_http::AppState {
            store: store.clone(),
            secret_key,
            config: crate::config::effective(args).into(),
            run_as: Arc::new(|user| {
                tempora_worker::process::RunAs::check(user).map(|(_, switch)| switch)
            }),
            scheduler: handle,
            work_ready,
            stops_requested,
            job_metrics_max: args.job_metrics_max,
            prometheus: Some(prometheus),
            started: Instant::now(),
            started_at: tempora_store::clock::now(),
            node_id: node_id.clone(),
            advertise,
            leadership,
            store_kind,
            node_timeout: args.leader_lease_ttl * 2,
            worker_lease: args.lease_ttl,
            claim_wait_max: args
                .claim_wait_max
                .min(tempora_client::wire::MAX_CLAIM_WAIT),
            max_artifact_bytes: args.max_artifact_bytes,
            shutdown: shutdown.clone(),
            auth: tempora_http::auth::AuthConfig {
                cors_origins: args
                    .cors_origins
                    .iter()
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect(),
                allowed_hosts: args
                    .allowed_hosts
                    .iter()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .collect(),
                metrics_public: args.metrics_public,
                ui_session_ttl: args.ui_session_ttl,
                tls: checked.tls.is_some(),
            },
            auth_cache: tempora_http::auth::AuthCache::default(),
        });
        let http_stop = CancellationToken::new();
        let http = serve_http(
            listener,
            tempora_http::router(state),
            checked.tls,
            http_stop.clone(),
        )?;
        log_started(args, &node_id, store_kind);
        Ok(Self {
            shutdown,
            elector_stop,
            http_stop,
            scheduler,
            reaper,
            retention,
            elector,
            pool,
            notifier,
            notify_stop,
            http,
            stop_limit: args.shutdown_grace + args.kill_grace + SHUTDOWN_SLACK,
        })
    }

    /// Stop in order: scheduling, reaping and retention; then the lease (another node takes
    /// over at once); then the local pool, whose running runs drain within the shutdown grace
    /// while the API still answers (`/ready` says 503); then the API.
    pub async fn stop(self) {
        tracing::info!(message = "shutting down: no new runs are claimed");
        self.shutdown.cancel();
        exit_if_shutdown_hangs(self.stop_limit);
        if let Err(e) = self.scheduler.await {
            tracing::warn!(message = "scheduler task failed", error = %e);
        }
        let _ = self.reaper.await;
        if let Some(t) = self.retention {
            let _ = t.await;
        }
        // The scheduler has stopped: give the lease up so another node takes over at once.
        self.elector_stop.cancel();
        let _ = self.elector.await;
        if let Some(p) = self.pool {
            let _ = p.await;
        }
        // The last runs' notifications are recorded; attempts under way end (each is bounded),
        // the rest wait in the store for the next start or another node.
        self.notify_stop.cancel();
        let _ = self.notifier.await;
        self.http_stop.cancel();
        // Streaming clients (log follow) get a moment to finish, then are dropped.
        if tokio::time::timeout(Duration::from_secs(3), self.http)
            .await
            .is_err()
        {
            tracing::warn!(message = "HTTP connections still open at exit; closing them");
        }
        tracing::info!(message = "tempora server stopped");
    }
}

/// The store the flags name: PostgreSQL with `--database-url`, else SQLite in `--data-dir`.
async fn open_store(args: &ServerArgs) -> anyhow::Result<(Arc<dyn Store>, &'static str)> {
    let options = StoreOptions {
        max_log_bytes: args.max_log_bytes,
    };
    Ok(match &args.database_url {
        Some(url) => (
            Arc::new(
                PostgresStore::connect_with_pool_size(url, options, args.database_pool_size.max(2))
                    .await
                    .context("cannot connect to PostgreSQL (--database-url)")?,
            ),
            "postgres",
        ),
        None => (
            Arc::new(
                SqliteStore::open_tuned(
                    &args.data_dir,
                    options,
                    tempora_store_sqlite::SqliteTuning {
                        cache_mib: args.sqlite_cache_mib,
                        synchronous: args.sqlite_synchronous,
                    },
                )
                .context("cannot open the store")?,
            ),
            "sqlite",
        ),
    })
}

/// Serve the API on `listener` (HTTPS when `tls` is given, with certificates reloaded on
/// SIGHUP) until `stop` is cancelled.
fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<(crate::tls::ServerTls, Arc<rustls::ServerConfig>)>,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<std::io::Result<()>>> {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    Ok(match tls {
        None => {
            tokio::spawn(sighup_reloads_nothing("the server serves plain HTTP"));
            tokio::spawn(async move {
                axum::serve(listener, service)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            })
        }
        Some((files, config)) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(config);
            tokio::spawn(reload_on_sighup(files, rustls.clone()));
            let handle = axum_server::Handle::new();
            let on_shutdown = handle.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                on_shutdown.graceful_shutdown(Some(Duration::from_secs(3)));
            });
            let std_listener = listener
                .into_std()
                .context("cannot hand the listener to the TLS server")?;
            tokio::spawn(async move {
                axum_server::from_tcp_rustls(std_listener, rustls)
                    .handle(handle)
                    .serve(service)
                    .await
            })
        }
    })
}

fn log_started(args: &ServerArgs, node_id: &str, store_kind: &str) {
    tracing::info!(
        message = "tempora server started",
        listen = %args.listen,
        tls = match (&args.tls_cert, &args.client_ca) {
            (None, _) => "off",
            (Some(_), None) => "on",
            (Some(_), Some(_)) => "mutual",
        },
        node = %node_id,
        store = store_kind,
        data_dir = %if store_kind == "sqlite" {
            args.data_dir.display().to_string()
        } else {
            "-".to_owned()
        },
        local_slots = args.local_slots,
        keep_runs = args.keep_runs,
        keep_days = args.keep_days,
        containment = match (args.local_slots, tempora_worker::contain::current()) {
            (0, _) => "-",
            (_, tempora_worker::contain::Containment::Cgroup(_)) => "cgroup",
            (_, tempora_worker::contain::Containment::Sweep) => "sweep",
        },
        sqlite_synchronous = match (store_kind, args.sqlite_synchronous) {
            ("sqlite", tempora_store_sqlite::Synchronous::Full) => "full",
            ("sqlite", tempora_store_sqlite::Synchronous::Normal) => "normal",
            _ => "-",
        },
        version = env!("CARGO_PKG_VERSION"),
    );
}

/// Exit the process if shutdown has not finished within `limit`. A plain thread, not a task:
/// it works even if every runtime thread is stuck.
fn exit_if_shutdown_hangs(limit: Duration) {
    let spawned = std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            tracing::error!(
                message = "shutdown did not finish in time; exiting",
                limit_ms = limit.as_millis() as u64
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::warn!(message = "cannot start the shutdown watchdog", error = %e);
    }
}
