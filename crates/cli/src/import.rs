//! `tempora import crontab`: a crontab's entries as job files for `tempora apply` (no server
//! needed; the rules are in `tempora_core::crontab`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::client::{Res, fail};

/// What to import.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Turn a crontab into job files: `CRON_TZ=` sets the zone, `MAILTO=` the owner, `SHELL=` the
    /// shell, other `NAME=value` lines the environment, a comment above an entry its
    /// description. `@reboot` and unreadable entries are reported on standard error and left out
    /// (exit status 1). Then: `tempora apply FILE_OR_DIR`.
    Crontab(CrontabArgs),
}

/// `tempora import crontab` options.
#[derive(Debug, Args)]
pub struct CrontabArgs {
    /// The crontab file (`-` reads standard input; `crontab -l | tempora import crontab -`).
    pub file: PathBuf,
    /// Run every job as this user (`run_as`; a user's crontab runs as that user).
    #[arg(long)]
    pub user: Option<String>,
    /// Zone of the entries before any `CRON_TZ=` line (default: this machine's zone, which is
    /// where cron fires them).
    #[arg(long)]
    pub tz: Option<String>,
    /// Prefix of every job's name.
    #[arg(long, default_value = "cron-")]
    pub prefix: String,
    /// A system crontab (`/etc/crontab`, `/etc/cron.d/*`): a user column follows the schedule
    /// and becomes the job's `run_as`.
    #[arg(long)]
    pub system: bool,
    /// Write one `<name>.yaml` per job into this directory (default: one YAML list on standard
    /// output).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Most bytes of crontab read.
const MAX_CRONTAB: u64 = 4 << 20;

/// Run `tempora import`.
pub fn run(cmd: ImportCommand) -> Res<()> {
    let ImportCommand::Crontab(args) = cmd;
    let text = read(&args.file)?;
    let timezone = match args.tz {
        Some(tz) => {
            tempora_core::schedule::parse_timezone(&tz)
                .map_err(|e| fail(2, format!("--tz: {}", e.message)))?;
            tz
        }
        None => match jiff::tz::TimeZone::system().iana_name() {
            Some(name) => name.to_owned(),
            None => {
                eprintln!(
                    "note: this machine's zone has no IANA name; entries use UTC (give --tz)"
                );
                "UTC".to_owned()
            }
        },
    };
    let opts = tempora_core::crontab::ImportOptions {
        timezone,
        user: args.user,
        system: args.system,
        prefix: args.prefix,
    };
    let out = tempora_core::crontab::import(&text, &opts);
    if let Some(dir) = crate::apply::write_job_files(&out.jobs, args.dir.as_deref())? {
        eprintln!("wrote {} job(s) to {}", out.jobs.len(), dir.display());
    }
    for s in &out.skipped {
        eprintln!("not imported: {s}");
    }
    if out.skipped.is_empty() {
        Ok(())
    } else {
        Err(fail(
            1,
            format!(
                "{} entr{} not imported (above); the others were",
                out.skipped.len(),
                if out.skipped.len() == 1 {
                    "y was"
                } else {
                    "ies were"
                }
            ),
        ))
    }
}

fn read(path: &std::path::Path) -> Res<String> {
    use std::io::Read;
    let mut text = String::new();
    let shown = path.display();
    let result = if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_CRONTAB + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_CRONTAB + 1).read_to_string(&mut text))
    };
    result.map_err(|e| fail(2, format!("cannot read {shown}: {e}")))?;
    if text.len() as u64 > MAX_CRONTAB {
        return Err(fail(2, format!("{shown} is larger than 4 MiB")));
    }
    Ok(text)
}
