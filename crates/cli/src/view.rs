//! How client commands show things in a terminal: tables at most 120 columns wide, instants in
//! the job's zone (or UTC with `--utc`) to the second, durations as people write them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

use crate::client::s;

/// Widest line of a table; the last column is cut (with `…`) to fit.
pub const MAX_WIDTH: usize = 120;

/// A table: headers, then rows, columns padded to their widest cell; lines cut at
/// [`MAX_WIDTH`].
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let n = cells.len();
        let mut text = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                text.push_str(&c);
            } else {
                text.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(&cut(text.trim_end(), MAX_WIDTH));
        out.push('\n');
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect(), &mut out);
    for r in rows {
        line(r, &mut out);
    }
    out
}

/// An instant of the API (RFC 3339) in `tz`, to the second, with the zone's abbreviation:
/// `2026-12-07 06:18:44 CET`; `-` for none.
pub fn when(v: &Value, tz: &TimeZone) -> String {
    match v.as_str().and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        None => s(v),
    }
}

/// The time of day of an instant in `tz` (`06:18:44`).
fn clock(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone()).strftime("%H:%M:%S").to_string()
}

/// Widest JOB column of a run table (longer names are cut, so the other columns stay).
const JOB_WIDTH: usize = 28;

/// `text`, cut to `max` characters with `…`.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A duration as people write it: `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    match secs {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// `zone` (a job's `timezone`), or UTC with `--utc` or when it is unknown.
pub fn zone(zone: Option<&str>, utc: bool) -> TimeZone {
    zone.filter(|_| !utc)
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or(TimeZone::UTC)
}

/// Zones of jobs, for showing their runs' instants: `--utc`, or each job's own `timezone`.
pub struct Zones {
    utc: bool,
    by_job: BTreeMap<String, TimeZone>,
}

impl Zones {
    /// All in UTC (`--utc`), or in each job's zone as [`Zones::learn`] finds them.
    pub fn new(utc: bool) -> Zones {
        Zones {
            utc,
            by_job: BTreeMap::new(),
        }
    }

    /// Remember `job`'s zone (its `timezone` field).
    pub fn learn(&mut self, job: &str, tz: &str) {
        self.by_job.insert(job.to_owned(), zone(Some(tz), false));
    }

    /// Whether `job`'s zone is still unknown (and wanted).
    pub fn missing(&self, job: &str) -> bool {
        !self.utc && !self.by_job.contains_key(job)
    }

    /// The zone to show `job`'s instants in.
    pub fn of(&self, job: &str) -> TimeZone {
        match self.by_job.get(job) {
            Some(tz) if !self.utc => tz.clone(),
            _ => TimeZone::UTC,
        }
    }
}

/// Runs as a table: when each was due (in its job's zone), when it started, how long it took,
/// and what is wrong or what it waits for.
pub fn runs(runs: &[Value], zones: &Zones) -> String {
    let now = Timestamp::now();
    let ts = |v: &Value| v.as_str().and_then(|t| t.parse::<Timestamp>().ok());
    let rows = runs
        .iter()
        .map(|r| {
            let tz = zones.of(r["job"].as_str().unwrap_or_default());
            let trigger = match r["attempt"].as_u64() {
                Some(a) if a > 1 => format!("{} {a}", s(&r["trigger"])),
                _ => s(&r["trigger"]),
            };
            let started = match (ts(&r["started_at"]), ts(&r["not_before"])) {
                (Some(t), _) => clock(t, &tz),
                (None, Some(nb)) if r["state"] == "queued" && nb > now => {
                    format!("after {}", clock(nb, &tz))
                }
                _ => "-".to_owned(),
            };
            let took = match (ts(&r["started_at"]), ts(&r["finished_at"])) {
                (Some(a), Some(b)) => std::time::Duration::try_from(b.duration_since(a))
                    .map(duration)
                    .unwrap_or_else(|_| "-".to_owned()),
                (Some(a), None) => std::time::Duration::try_from(now.duration_since(a))
                    .map(|d| format!("{}…", duration(d)))
                    .unwrap_or_else(|_| "-".to_owned()),
                _ => "-".to_owned(),
            };
            let note = match (&r["error"], r["waiting"].as_str()) {
                // (A retry's "not before" is in STARTED already.)
                (Value::Null, Some(why)) if why.starts_with("not before") => String::new(),
                (Value::Null, Some(why)) => why.to_owned(),
                (Value::Null, None) => String::new(),
                (e, _) => s(e),
            };
            vec![
                s(&r["id"]),
                cut(&s(&r["job"]), JOB_WIDTH),
                trigger,
                s(&r["state"]),
                when(&r["scheduled_for"], &tz),
                started,
                took,
                s(&r["exit_code"]),
                note,
            ]
        })
        .collect();
    table(
        &[
            "ID", "JOB", "TRIGGER", "STATE", "DUE", "STARTED", "TOOK", "EXIT", "NOTE",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_and_instants() {
        let d = std::time::Duration::from_millis;
        assert_eq!(duration(d(850)), "850ms");
        assert_eq!(duration(d(12_340)), "12.3s");
        assert_eq!(duration(d(245_000)), "4m05s");
        assert_eq!(duration(d(7_380_000)), "2h03m");
        assert_eq!(duration(d(273_600_000)), "3d04h");
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            when(&json!("2026-12-07T05:18:44.123456Z"), &berlin),
            "2026-12-07 06:18:44 CET"
        );
        assert_eq!(when(&Value::Null, &berlin), "-");
    }

    #[test]
    fn a_run_table_fits_120_columns() {
        let run = json!({
            "id": 123456, "job": "a-rather-long-job-name-for-a-table", "trigger": "retry",
            "attempt": 3, "state": "failed", "scheduled_for": "2026-12-07T05:18:44.123456Z",
            "started_at": "2026-12-07T05:18:44.200000Z", "finished_at": "2026-12-07T05:22:49.2Z",
            "exit_code": 1, "error": "exit status 1, and a long explanation that goes on and on and on",
        });
        let mut zones = Zones::new(false);
        zones.learn("a-rather-long-job-name-for-a-table", "Australia/Lord_Howe");
        let text = runs(&[run], &zones);
        assert!(
            text.lines().all(|l| l.chars().count() <= MAX_WIDTH),
            "{text}"
        );
        assert!(text.contains("retry 3"), "{text}");
        assert!(text.contains("2026-12-07 16:18:44 +11"), "{text}");
        assert!(text.contains("4m05s"), "{text}");
        assert!(text.contains('…'), "{text}");
    }
}
