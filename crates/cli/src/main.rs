//! `tempora`: the one binary. `tempora server` runs a complete scheduler; `tempora worker` is a
//! remote worker agent; the other commands are clients of a server's API (`--server`, env
//! `TEMPORA_SERVER`), except `tempora schedule next`, which computes locally.
//!
//! Exit codes: 0 success; 1 the server refused the request or failed; 2 bad command line or
//! invalid input (e.g. a malformed schedule or job file); 3 not found; 4 the server could not be
//! reached.

mod access;
mod apply;
mod backup;
mod client;
mod config;
mod docs;
mod import;
mod node;
mod schedule;
mod server;
mod tls;
mod view;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// tempora: a distributed job scheduler — cron for a fleet.
#[derive(Debug, Parser)]
#[command(name = "tempora", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Output format of client commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, pretty-printed, for scripts.
    Json,
}

/// Options shared by client commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientOpts {
    /// Base URL of a tempora server.
    #[arg(
        long,
        global = true,
        env = "TEMPORA_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// API token (`Authorization: Bearer`). Without one, a client of a server on this machine
    /// (a loopback address) uses `./tempora-data/admin.token` when it can read it.
    #[arg(long, global = true, env = "TEMPORA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// TLS options for `https://` servers.
    #[command(flatten)]
    pub tls: tls::ClientTls,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Show instants in UTC (tables show them in each job's zone).
    #[arg(long, global = true)]
    pub utc: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scheduler node: store, scheduler, local workers and the HTTP API.
    Server(Box<server::ServerArgs>),
    /// Run a remote worker agent: claim runs from servers over HTTP and execute them.
    Worker(worker::WorkerArgs),
    /// Manage jobs on a server.
    Job {
        #[command(subcommand)]
        command: client::JobCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Inspect and control runs on a server.
    Run {
        #[command(subcommand)]
        command: client::RunCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Create or update jobs from YAML/JSON job files; `--prune` deletes managed jobs no longer in them.
    Apply {
        #[command(flatten)]
        args: apply::ApplyArgs,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Write every job as a job file that `apply` reads back to the same jobs.
    Export {
        #[command(flatten)]
        args: apply::ExportArgs,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Manage API tokens (admin).
    Token {
        #[command(subcommand)]
        command: access::TokenCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Upload, list and delete artifacts: scripts and binaries a job runs with `artifact`.
    Artifact {
        #[command(subcommand)]
        command: access::ArtifactCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Read the audit log of changes (admin).
    Audit {
        #[command(subcommand)]
        command: access::AuditCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Save a consistent copy of a running server's SQLite store to FILE (admin; for a
    /// PostgreSQL cluster use pg_dump).
    Backup {
        #[command(flatten)]
        args: backup::BackupArgs,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Turn other schedulers' definitions into job files for `apply` (locally, no server needed).
    Import {
        #[command(subcommand)]
        what: import::ImportCommand,
    },
    /// Work with schedule expressions (computed locally, no server needed).
    Schedule {
        #[command(subcommand)]
        command: schedule::ScheduleCommand,
    },
    /// Print the shell completion script (bash, zsh or fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: docs::Shell,
    },
    /// Print the manual page tempora(1), or write every page with --dir.
    Man(docs::ManArgs),
}

fn main() -> ExitCode {
    tls::install_provider();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Client commands end quietly when their reader goes away (`tempora job ls | head -1`), as
    // Unix tools do: SIGPIPE takes its default action again (Rust ignores it, which turns the
    // next write into a panic). Servers and workers keep ignoring it, and so does an upload
    // (`artifact push`): a server refusing a large body closes the socket while it is sent,
    // and the refusal should be printed, not the process killed.
    let keeps_ignoring = args.get(1).is_some_and(|a| a == "server" || a == "worker")
        || (args.get(1).is_some_and(|a| a == "artifact")
            && args.get(2).is_some_and(|a| a == "push"));
    if !keeps_ignoring {
        // SAFETY: still single-threaded (no runtime or other thread exists yet); restoring a
        // signal's default disposition installs no handler.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    let mut config_file = None;
    if args.get(1).is_some_and(|a| a == "server")
        && let Some(path) = config::config_path(&args)
    {
        match config::load(&path) {
            Ok(vars) => {
                let mut exported = Vec::new();
                for (k, v) in vars {
                    // SAFETY: still single-threaded: no runtime or other thread exists yet.
                    unsafe { std::env::set_var(k, v) };
                    exported.push(k);
                }
                config_file = Some((path, exported));
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            match config::value_source_note(&e, &args, config_file.as_ref()) {
                // clap's message, with the note under its first line.
                Some(note) => {
                    let rendered = e.render().to_string();
                    let (first, rest) = rendered.split_once('\n').unwrap_or((&rendered, ""));
                    eprint!("{first}\n{note}\n{rest}");
                }
                None => {
                    let _ = e.print();
                }
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match cli.command {
        Command::Schedule { command } => schedule::run(command),
        Command::Completions { shell } => docs::completions::<Cli>(shell),
        Command::Man(args) => docs::man::<Cli>(args),
        Command::Server(args) => {
            let code = server::main(*args);
            // Whatever ended it (a refused start too): no directory of run cgroups is left.
            tempora_worker::contain::cleanup();
            code
        }
        Command::Worker(args) => {
            let code = worker::main(args);
            tempora_worker::contain::cleanup();
            code
        }
        Command::Job { command, opts } => client::run_job(command, opts),
        Command::Run { command, opts } => client::run_run(command, opts),
        Command::Token { command, opts } => access::run_token(command, opts),
        Command::Artifact { command, opts } => access::run_artifact(command, opts),
        Command::Audit { command, opts } => access::run_audit(command, opts),
        Command::Backup { args, opts } => {
            client::finish(client::runtime().and_then(|rt| rt.block_on(backup::backup(args, opts))))
        }
        Command::Apply { args, opts } => {
            client::finish(client::runtime().and_then(|rt| rt.block_on(apply::apply(args, opts))))
        }
        Command::Import { what } => client::finish(import::run(what)),
        Command::Export { args, opts } => {
            client::finish(client::runtime().and_then(|rt| rt.block_on(apply::export(args, opts))))
        }
    }
}
