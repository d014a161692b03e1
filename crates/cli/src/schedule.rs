//! `tempora schedule …`: schedule expressions computed locally (no server needed): `next` prints
//! the next fire times, `explain` says the schedule in words and shows when it fires next.

use std::process::ExitCode;

use clap::Subcommand;
use jiff::tz::TimeZone;
use tempora_core::schedule::{Schedule, parse_timezone, split_zone_prefix};

/// `tempora schedule …`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Print the next fire times of a schedule, one RFC 3339 timestamp per line.
    ///
    /// Accepts every schedule form: Unix cron (5 fields), Quartz (6-7 fields), @hourly-style
    /// macros, `@every 30s`, `@at 2027-01-01T00:00:00Z`, and ISO 8601 `R[n]/start/period`,
    /// optionally prefixed with `CRON_TZ=Zone ` (the zone it is read in).
    Next {
        /// The schedule expression (quote it).
        expr: String,
        /// IANA time zone the schedule is read in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Print fire times strictly after this RFC 3339 instant (default: now).
        #[arg(long)]
        after: Option<String>,
        /// How many fire times to print.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        count: u32,
    },
    /// Say a schedule in words ("At 02:30, Monday through Friday, in Europe/Berlin") and
    /// show its next fire times in its zone.
    Explain {
        /// The schedule expression (quote it).
        expr: String,
        /// IANA time zone the schedule is read in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// How many fire times to show.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
        count: u32,
    },
}

/// Run a `tempora schedule …` command.
pub fn run(command: ScheduleCommand) -> ExitCode {
    match command {
        ScheduleCommand::Next {
            expr,
            tz,
            after,
            count,
        } => next(&expr, &tz, after.as_deref(), count),
        ScheduleCommand::Explain { expr, tz, count } => explain(&expr, &tz, count),
    }
}

/// The schedule, its zone and the zone's name; a `CRON_TZ=Zone` prefix gives the zone (an
/// explicit other `--tz` is a conflict). Errors are printed; the exit code is returned.
fn parse(expr: &str, tz: &str) -> Result<(Schedule, TimeZone, String), ExitCode> {
    let (prefix, expr) = split_zone_prefix(expr);
    let tz = match prefix {
        Some(p) if tz != "UTC" && tz != p => {
            eprintln!("error: the schedule's CRON_TZ={p} differs from --tz {tz}");
            return Err(ExitCode::from(2));
        }
        Some(p) => p,
        None => tz,
    };
    let schedule = Schedule::parse(expr).map_err(|e| {
        eprintln!("error: invalid schedule: {e}");
        ExitCode::from(2)
    })?;
    let zone = parse_timezone(tz).map_err(|e| {
        eprintln!("error: invalid --tz: {e}");
        ExitCode::from(2)
    })?;
    Ok((schedule, zone, tz.to_owned()))
}

fn next(expr: &str, tz: &str, after: Option<&str>, count: u32) -> ExitCode {
    let (schedule, zone, _) = match parse(expr, tz) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let now = jiff::Timestamp::now();
    let after = match after {
        None => schedule.listing_after(now),
        Some(a) => match a.parse::<jiff::Timestamp>() {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "error: invalid --after `{a}`: expected an RFC 3339 timestamp such as 2026-03-08T00:00:00Z ({e})"
                );
                return ExitCode::from(2);
            }
        },
    };
    // The anchor of `@every` and of ISO intervals without a start is "now", as for a job saved now.
    let mut out = String::new();
    for t in schedule.upcoming(after, &zone, now, count as usize) {
        out.push_str(&tempora_core::time::rfc3339_in_zone(t, &zone));
        out.push('\n');
    }
    print!("{out}");
    ExitCode::SUCCESS
}

fn explain(expr: &str, tz: &str, count: u32) -> ExitCode {
    let (schedule, zone, name) = match parse(expr, tz) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let now = jiff::Timestamp::now();
    let mut out = format!("{}\n", schedule.describe(&name));
    let upcoming = schedule.upcoming(schedule.listing_after(now), &zone, now, count as usize);
    if upcoming.is_empty() {
        out.push_str("no fire time ahead\n");
    } else {
        out.push_str("next:\n");
        for t in upcoming {
            out.push_str("  ");
            out.push_str(&tempora_core::time::rfc3339_in_zone(t, &zone));
            out.push('\n');
        }
    }
    print!("{out}");
    ExitCode::SUCCESS
}
