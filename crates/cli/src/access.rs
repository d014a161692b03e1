//! Client commands of access control: `tempora token …` and `tempora audit ls` (admin tokens).

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Api, Res, finish, print_json, runtime, s};
use crate::view::{table, when};
use crate::{ClientOpts, OutputFormat};

/// `tempora token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (shown this once; the server keeps only its hash).
    Create {
        /// A name for it, unique among active tokens.
        #[arg(long)]
        name: String,
        /// viewer, operator, editor, admin or worker.
        #[arg(long)]
        role: String,
        /// Lifetime (`90d`, `12h`) or an RFC 3339 instant; default: until revoked.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (never their secrets).
    Ls,
    /// Revoke a token by id or name; it stops working at once on every node.
    Revoke {
        /// Token id (`tok_…`) or name.
        #[arg(value_name = "ID_OR_NAME")]
        which: String,
    },
}

/// `tempora artifact …`
#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Upload a script or binary; prints its reference (`sha256:…`) for a job's `artifact`.
    Push {
        /// The file.
        file: std::path::PathBuf,
    },
    /// List the stored artifacts.
    Ls,
    /// Delete an artifact no job runs.
    Rm {
        /// Its reference (`sha256:…`) or digest.
        #[arg(value_name = "SHA256")]
        which: String,
    },
}

/// Run a `tempora artifact …` command.
pub fn run_artifact(cmd: ArtifactCommand, opts: ClientOpts) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(artifact(cmd, opts))))
}

async fn artifact(cmd: ArtifactCommand, opts: ClientOpts) -> Res<()> {
    let api = Api::new(&opts)?;
    let fmt = opts.output;
    match cmd {
        ArtifactCommand::Push { file } => {
            let data = std::fs::read(&file).map_err(|e| {
                crate::client::fail(2, format!("cannot read {}: {e}", file.display()))
            })?;
            let v = api.push_artifact(data).await?;
            if fmt == OutputFormat::Json {
                print_json(&v);
            } else {
                // The reference alone on stdout, for `artifact: $(tempora artifact push f)`.
                println!("sha256:{}", s(&v["sha256"]));
                eprintln!("{} bytes stored", v["size"]);
            }
        }
        ArtifactCommand::Ls => {
            let v = api.list_artifacts().await?;
            if fmt == OutputFormat::Json {
                print_json(&v);
            } else {
                let utc = jiff::tz::TimeZone::UTC;
                let rows = v["artifacts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|a| {
                        vec![
                            format!("sha256:{}", s(&a["sha256"])),
                            a["size"].to_string(),
                            when(&a["created_at"], &utc),
                        ]
                    })
                    .collect();
                print!("{}", table(&["ARTIFACT", "SIZE", "CREATED_AT"], rows));
            }
        }
        ArtifactCommand::Rm { which } => {
            let digest = which.trim().trim_start_matches("sha256:").to_owned();
            api.delete_artifact(&digest).await?;
            eprintln!("artifact {which} deleted");
        }
    }
    Ok(())
}

/// `tempora audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The changes made through the API, newest first.
    Ls {
        /// Only this job's entries.
        #[arg(long)]
        job: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Entries older than this id (the `next_before` of a previous page).
        #[arg(long)]
        before: Option<i64>,
    },
}

/// Run a `tempora token …` command.
pub fn run_token(cmd: TokenCommand, opts: ClientOpts) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(token(cmd, opts))))
}

/// Run a `tempora audit …` command.
pub fn run_audit(cmd: AuditCommand, opts: ClientOpts) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(audit(cmd, opts))))
}

fn token_rows(tokens: &[Value]) -> String {
    let utc = jiff::tz::TimeZone::UTC;
    let rows = tokens
        .iter()
        .map(|t| {
            let state = if t["revoked_at"].is_string() {
                "revoked"
            } else if t["active"] == json!(false) {
                "expired"
            } else {
                "active"
            };
            vec![
                s(&t["id"]),
                s(&t["name"]),
                s(&t["role"]),
                state.to_owned(),
                when(&t["created_at"], &utc),
                when(&t["expires_at"], &utc),
                when(&t["last_used_at"], &utc),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "ROLE",
            "STATE",
            "CREATED_AT",
            "EXPIRES_AT",
            "LAST_USED_AT",
        ],
        rows,
    )
}

async fn token(cmd: TokenCommand, opts: ClientOpts) -> Res<()> {
    let api = Api::new(&opts)?;
    let fmt = opts.output;
    match cmd {
        TokenCommand::Create {
            name,
            role,
            expires,
        } => {
            let body = json!({"name": name, "role": role, "expires": expires});
            let v = api.create_token(&body).await?;
            if fmt == OutputFormat::Json {
                print_json(&v);
            } else {
                // The secret alone on stdout (for `$(tempora token create …)`), the rest on stderr.
                println!("{}", s(&v["token"]));
                eprintln!(
                    "token `{}` ({}, role {}) created; it is shown only this once",
                    s(&v["name"]),
                    s(&v["id"]),
                    s(&v["role"])
                );
            }
        }
        TokenCommand::Ls => {
            let v = api.list_tokens().await?;
            if fmt == OutputFormat::Json {
                print_json(&v);
            } else {
                let tokens = v["tokens"].as_array().cloned().unwrap_or_default();
                print!("{}", token_rows(&tokens));
            }
        }
        TokenCommand::Revoke { which } => {
            if which.trim().is_empty() {
                return Err(crate::client::fail(
                    2,
                    "name the token to revoke (its name or id)",
                ));
            }
            let v = api.revoke_token(&which).await?;
            if fmt == OutputFormat::Json {
                print_json(&v);
            } else {
                println!("revoked {} ({})", s(&v["name"]), s(&v["id"]));
            }
        }
    }
    Ok(())
}

async fn audit(cmd: AuditCommand, opts: ClientOpts) -> Res<()> {
    let api = Api::new(&opts)?;
    let AuditCommand::Ls { job, limit, before } = cmd;
    let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
    if let Some(j) = job {
        query.push(("job", j));
    }
    if let Some(b) = before {
        query.push(("before", b.to_string()));
    }
    let v = api.audit(&query).await?;
    if opts.output == OutputFormat::Json {
        print_json(&v);
        return Ok(());
    }
    let utc = jiff::tz::TimeZone::UTC;
    let rows = v["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            vec![
                s(&e["id"]),
                when(&e["at"], &utc),
                s(&e["token_name"]),
                s(&e["role"]),
                s(&e["action"]),
                s(&e["job"]),
                s(&e["status"]),
                s(&e["detail"]),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            // (REMOTE and TARGET: with -o json.)
            &[
                "ID", "AT", "TOKEN", "ROLE", "ACTION", "JOB", "STATUS", "DETAIL"
            ],
            rows
        )
    );
    if let Some(next) = v["next_before"].as_i64() {
        eprintln!("more: --before {next}");
    }
    Ok(())
}
