//! Crontab import: the entries of a user's crontab (or of a system crontab, with its user
//! column) as job definitions for `tempora apply`.
//!
//! What is carried over, as cronie reads a crontab:
//! - `CRON_TZ=Zone` sets the zone of the entries after it (else `--tz`, else the importing
//!   machine's zone: cron fires in the machine's local time);
//! - `MAILTO=address` becomes the `owner` of the entries after it (`MAILTO=""`: none);
//! - `SHELL=/path` other than `/bin/sh` runs the entries after it with that shell (`-c`);
//! - every other `NAME=value` line (`PATH`, `TZ`, …) goes into the environment of the entries
//!   after it; quotes around a value are removed;
//! - a comment block right above an entry becomes its `description`;
//! - `%` in a command: the text after the first unescaped `%` is the command's standard input, each
//!   further `%` a newline; `\%` is a literal `%`;
//! - `@reboot` has no equivalent (tempora schedules by time): the entry is reported, not imported;
//!   so is an entry whose schedule tempora cannot read.
//!
//! Job names are `<prefix><first word of the command>` (letters, digits, `.`, `_`, `-`), with
//! `-2`, `-3`, … when two entries would share one.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::job::JobSpec;

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The zone of entries before any `CRON_TZ=` line.
    pub timezone: String,
    /// Run every entry as this user (`run_as`).
    pub user: Option<String>,
    /// A system crontab (`/etc/crontab`, `/etc/cron.d/*`): a user column after the schedule.
    pub system: bool,
    /// Prefix of every job name.
    pub prefix: String,
}

/// The result: job documents (as `tempora apply` reads them) and what could not be imported.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// One document per imported entry, only the fields the crontab sets.
    pub jobs: Vec<Value>,
    /// `line N: why`, for every entry left out.
    pub skipped: Vec<String>,
}

/// Longest job name made (before a `-N` suffix).
const NAME_MAX: usize = 60;

/// Import the crontab `text`.
pub fn import(text: &str, opts: &ImportOptions) -> Imported {
    let mut out = Imported::default();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut zone = opts.timezone.clone();
    let mut owner: Option<String> = None;
    let mut shell: Option<String> = None;
    let mut comment: Vec<String> = Vec::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            comment.clear();
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            comment.push(c.trim().to_owned());
            continue;
        }
        if let Some((name, value)) = assignment(line) {
            comment.clear();
            match name.as_str() {
                "CRON_TZ" => match crate::schedule::parse_timezone(&value) {
                    Ok(_) => zone = value,
                    Err(e) => out.skipped.push(format!(
                        "line {n}: CRON_TZ: {}; the entries after it keep the zone {zone}",
                        e.message
                    )),
                },
                "MAILTO" => owner = Some(value).filter(|v| !v.is_empty()),
                "SHELL" => shell = Some(value).filter(|v| v != "/bin/sh"),
                _ => {
                    env.insert(name, value);
                }
            }
            continue;
        }
        let description = (!comment.is_empty()).then(|| comment.join("\n"));
        comment.clear();
        match entry(line, opts.system) {
            Err(why) => out.skipped.push(format!("line {n}: {why}")),
            Ok((schedule, user, command)) => {
                let (command, stdin) = split_percent(&command);
                let name = unique_name(&mut names, &opts.prefix, &command);
                let command = match stdin {
                    Some(input) => format!("printf '%s' {} | {{ {command}\n}}", quote(&input)),
                    None => command,
                };
                let mut doc = Map::new();
                doc.insert("name".into(), json!(name));
                match &shell {
                    Some(sh) => {
                        doc.insert("command".into(), json!(sh));
                        doc.insert("shell".into(), json!(false));
                        doc.insert("arguments".into(), json!(["-c", command]));
                    }
                    None => {
                        doc.insert("command".into(), json!(command));
                    }
                }
                doc.insert("schedule".into(), json!(schedule));
                doc.insert("timezone".into(), json!(zone));
                if !env.is_empty() {
                    doc.insert("env".into(), json!(env));
                }
                if let Some(o) = &owner {
                    doc.insert("owner".into(), json!(o));
                }
                if let Some(u) = user.or_else(|| opts.user.clone()) {
                    doc.insert("run_as".into(), json!(u));
                }
                if let Some(d) = description {
                    doc.insert("description".into(), json!(d));
                }
                doc.insert("labels".into(), json!({"imported-from": "crontab"}));
                // What `apply` would refuse is reported here, line by line.
                let checked = serde_json::from_value::<JobSpec>(Value::Object(doc.clone()))
                    .map_err(|e| e.to_string())
                    .and_then(|mut spec| {
                        spec.take_zone_prefix().map_err(|e| e.message)?;
                        spec.validate()
                            .map_err(|e| format!("{}: {}", e.field, e.message))
                    });
                match checked {
                    Ok(_) => out.jobs.push(Value::Object(doc)),
                    Err(why) => {
                        names.remove(&name);
                        out.skipped.push(format!("line {n}: {why}"));
                    }
                }
            }
        }
    }
    out
}

/// `NAME=value` (cronie: a name, optional blanks, `=`, the value; quotes removed).
fn assignment(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return None;
    }
    let value = value.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| {
            value
                .strip_prefix(*q)
                .and_then(|v| v.strip_suffix(*q))
                .filter(|_| value.len() >= 2)
        })
        .unwrap_or(value);
    Some((name.to_owned(), unquoted.to_owned()))
}

/// An entry: (schedule, user of a system crontab, command).
fn entry(line: &str, system: bool) -> Result<(String, Option<String>, String), String> {
    let mut rest = line;
    let mut take = |what: &str| -> Result<String, String> {
        let r = rest.trim_start();
        let end = r.find(char::is_whitespace).unwrap_or(r.len());
        if end == 0 {
            return Err(format!("{what} is missing"));
        }
        rest = &r[end..];
        Ok(r[..end].to_owned())
    };
    let first = take("the schedule")?;
    let schedule = if first.starts_with('@') {
        if first.eq_ignore_ascii_case("@reboot") {
            return Err(
                "@reboot has no equivalent in tempora (it schedules by time): not \
                        imported; start it with the machine's init system"
                    .to_owned(),
            );
        }
        first
    } else {
        let mut fields = vec![first];
        for _ in 0..4 {
            fields.push(take("a schedule field")?);
        }
        fields.join(" ")
    };
    let parsed = crate::schedule::Schedule::parse(&schedule)
        .map_err(|e| format!("schedule `{schedule}`: {}", e.message))?;
    let epoch = jiff::Timestamp::UNIX_EPOCH;
    if parsed
        .next_after(epoch, &jiff::tz::TimeZone::UTC, epoch)
        .is_none()
    {
        return Err(format!("schedule `{schedule}` never fires"));
    }
    let user = if system {
        Some(take("the user column (system crontab)")?)
    } else {
        None
    };
    let command = rest.trim().to_owned();
    if command.is_empty() {
        return Err("the command is missing".to_owned());
    }
    Ok((schedule, user, command))
}

/// Cron's `%`: the command, and the standard input after the first unescaped `%` (further `%`
/// are newlines); `\%` is a literal `%`.
fn split_percent(command: &str) -> (String, Option<String>) {
    let mut cmd = String::new();
    let mut input: Option<String> = None;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        let target = input.as_mut().unwrap_or(&mut cmd);
        match c {
            '\\' if chars.peek() == Some(&'%') => {
                target.push('%');
                chars.next();
            }
            '%' => match input.as_mut() {
                Some(i) => i.push('\n'),
                None => input = Some(String::new()),
            },
            c => target.push(c),
        }
    }
    (cmd, input)
}

/// Single-quote `s` for `/bin/sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `<prefix><first word of the command>`, unique among `taken`.
fn unique_name(taken: &mut BTreeSet<String>, prefix: &str, command: &str) -> String {
    let word = command
        .split_whitespace()
        .find(|w| !w.contains('='))
        .unwrap_or("job");
    let word = word.rsplit('/').next().unwrap_or(word);
    let slug: String = word
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let slug = if slug.is_empty() { "job" } else { slug };
    let mut base = format!("{prefix}{slug}");
    base.truncate(NAME_MAX);
    if !base.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        base.insert(0, 'j');
    }
    let mut name = base.clone();
    let mut k = 2;
    while taken.contains(&name) {
        name = format!("{base}-{k}");
        k += 1;
    }
    taken.insert(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ImportOptions {
        ImportOptions {
            timezone: "Europe/Berlin".into(),
            prefix: "cron-".into(),
            ..ImportOptions::default()
        }
    }

    #[test]
    fn a_user_crontab() {
        let text = r#"
# m h dom mon dow command
SHELL=/bin/sh
PATH=/usr/local/bin:/usr/bin:/bin
MAILTO="ops@example.com"

# Nightly backup
# (keeps 7 days)
30 2 * * * /usr/local/bin/backup.sh --all > /var/log/backup.log 2>&1
@hourly  /usr/bin/true
CRON_TZ=Asia/Tokyo
0 9 * * 1-5 echo "good morning" | mail -s hi root
@reboot /opt/start-agent
0 0 31 2 * echo never
*/5 * * * * date +\%H:\%M >> /tmp/t
15 4 * * * cat > /tmp/in%line one%line two
MAILTO=""
61 * * * * echo bad
0 3 * * * /usr/bin/true
"#;
        let out = import(text, &opts());
        let names: Vec<&str> = out
            .jobs
            .iter()
            .map(|j| j["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "cron-backup.sh",
                "cron-true",
                "cron-echo",
                "cron-date",
                "cron-cat",
                "cron-true-2"
            ]
        );
        let backup = &out.jobs[0];
        assert_eq!(backup["schedule"], "30 2 * * *");
        assert_eq!(backup["timezone"], "Europe/Berlin");
        assert_eq!(backup["owner"], "ops@example.com");
        assert_eq!(backup["env"]["PATH"], "/usr/local/bin:/usr/bin:/bin");
        assert_eq!(backup["description"], "Nightly backup\n(keeps 7 days)");
        assert_eq!(
            backup["command"],
            "/usr/local/bin/backup.sh --all > /var/log/backup.log 2>&1"
        );
        assert_eq!(out.jobs[1]["schedule"], "@hourly");
        assert!(out.jobs[1].get("description").is_none());
        assert_eq!(out.jobs[2]["timezone"], "Asia/Tokyo");
        assert_eq!(out.jobs[3]["command"], "date +%H:%M >> /tmp/t");
        assert_eq!(
            out.jobs[4]["command"],
            "printf '%s' 'line one\nline two' | { cat > /tmp/in\n}"
        );
        assert!(out.jobs[5].get("owner").is_none(), "MAILTO=\"\" clears it");
        // @reboot, Feb 31 (never fires, in cronie either) and a bad minute are reported.
        assert_eq!(out.skipped.len(), 3, "{:?}", out.skipped);
        assert!(
            out.skipped[0].starts_with("line 13: @reboot"),
            "{:?}",
            out.skipped
        );
        assert!(
            out.skipped[1].starts_with("line 14: schedule `0 0 31 2 *` never fires"),
            "{:?}",
            out.skipped
        );
        assert!(
            out.skipped[2].starts_with("line 18: schedule `61 * * * *`"),
            "{:?}",
            out.skipped
        );
    }

    #[test]
    fn a_system_crontab_and_another_shell() {
        let text = "SHELL=/bin/bash\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n\
                    25 6 * * * www-data [[ -x /usr/bin/x ]] && /usr/bin/x\n0 1 * * *\n";
        let out = import(
            text,
            &ImportOptions {
                system: true,
                ..opts()
            },
        );
        assert_eq!(out.jobs.len(), 2, "{:?}", out.skipped);
        let j = &out.jobs[1];
        assert_eq!(j["run_as"], "www-data");
        assert_eq!(j["command"], "/bin/bash");
        assert_eq!(j["shell"], false);
        assert_eq!(
            j["arguments"],
            json!(["-c", "[[ -x /usr/bin/x ]] && /usr/bin/x"])
        );
        assert_eq!(out.jobs[0]["name"], "cron-cd");
        assert_eq!(out.skipped.len(), 1);
        assert!(out.skipped[0].contains("user column"), "{:?}", out.skipped);
    }

    #[test]
    fn every_imported_document_is_a_valid_job() {
        let text = "CRON_TZ=America/New_York\n0 2 * * * a\n@weekly b\n*/10 9-17 * * 1-5 c\n";
        let out = import(
            text,
            &ImportOptions {
                user: Some("alice".into()),
                ..opts()
            },
        );
        for j in &out.jobs {
            let spec: JobSpec = serde_json::from_value(j.clone()).unwrap();
            spec.validate().unwrap();
            assert_eq!(spec.run_as.as_deref(), Some("alice"));
            assert_eq!(spec.timezone, "America/New_York");
        }
        assert_eq!(out.jobs.len(), 3);
    }
}
