//! The job specification and its validation.
//!
//! [`JobSpec`] is what users write (API body, job file). It is deserialized strictly: unknown
//! fields are refused, so a typo never silently drops a setting. [`JobSpec::validate`] checks
//! every field and returns the first problem as a [`ValidationError`] naming the field.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{serde_duration, serde_opt_duration};
use crate::schedule::{Schedule, parse_timezone};

/// Longest accepted job name.
pub const MAX_NAME_LEN: usize = 200;
/// Longest accepted command (bytes).
pub const MAX_COMMAND_LEN: usize = 65_536;
/// Highest accepted `retries`.
pub const MAX_RETRIES: u32 = 1_000;

/// What happens when an occurrence fires while an earlier run of the job is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// The new occurrence becomes a `skipped` run.
    #[default]
    Forbid,
    /// Runs overlap.
    Allow,
    /// Cancel the running one, start the new one.
    Replace,
    /// Start the new one when the running one ends (at most one waiting).
    Queue,
}

/// What happens to occurrences missed during downtime or failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Missed occurrences within `epsilon` collapse into one run for the latest of them.
    #[default]
    RunOnce,
    /// Each missed occurrence within `epsilon` runs, oldest first (at most 100).
    RunAll,
    /// Missed occurrences are recorded as skipped.
    Skip,
}

fn default_true() -> bool {
    true
}
fn default_timezone() -> String {
    "UTC".to_owned()
}
fn default_backoff() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(600)
}
/// Longest `epsilon`. A run started more than a day after its time is not a catch-up any more
/// (the next daily occurrence is due), and the cap bounds the planner's work for a job found
/// behind: it walks at most `epsilon` worth of occurrences (86,400 at the one-second minimum),
/// and jumps over anything older.
pub const MAX_EPSILON: Duration = Duration::from_secs(86_400);

fn default_epsilon() -> Duration {
    Duration::from_secs(60)
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// The fields of a job that the scheduler's timer needs: the store hands these (read from the
/// stored spec, the other fields skipped) to the leader's loop, which keeps no more per job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TimerSpec {
    /// See [`JobSpec::schedule`].
    #[serde(default)]
    pub schedule: Option<String>,
    /// See [`JobSpec::timezone`].
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// See [`JobSpec::misfire`].
    #[serde(default)]
    pub misfire: Misfire,
    /// See [`JobSpec::epsilon`].
    #[serde(default = "default_epsilon", with = "serde_duration")]
    pub epsilon: Duration,
}

/// A job as users define it. Field names and defaults are the README's job table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique name, `^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`. Optional in a `PUT` body (taken from the URL).
    #[serde(default)]
    pub name: String,
    /// The command: a shell line (`shell: true`) or a program (`shell: false`).
    #[serde(default)]
    pub command: String,
    /// Run `command` with `/bin/sh -c` (default) or directly as a program.
    #[serde(default = "default_true")]
    pub shell: bool,
    /// argv after the program (or `$1…` for a shell command).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// When to run; absent = only when triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Parent jobs (dependent jobs). Mutually exclusive with `schedule`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// IANA time zone in which the schedule is read.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secret environment variables: sealed at rest, never returned (reads show `***`; a write
    /// that sends `***` keeps the stored value), masked as `***` in the run's output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Working directory of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Kill the run after this long.
    #[serde(
        default,
        with = "serde_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "30m")]
    pub timeout: Option<Duration>,
    /// How many times a failed, timed-out or lost attempt is retried.
    #[serde(default)]
    pub retries: u32,
    /// First retry delay; doubles for each further attempt.
    #[serde(default = "default_backoff", with = "serde_duration")]
    #[schema(value_type = String, example = "30s")]
    pub retry_backoff: Duration,
    /// Cap of the retry delay.
    #[serde(default = "default_backoff_max", with = "serde_duration")]
    #[schema(value_type = String, example = "30s")]
    pub retry_backoff_max: Duration,
    /// Overlap policy.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Missed-occurrence policy.
    #[serde(default)]
    pub misfire: Misfire,
    /// How late an occurrence may still start.
    #[serde(default = "default_epsilon", with = "serde_duration")]
    #[schema(value_type = String, example = "30s")]
    pub epsilon: Duration,
    /// A paused job does not fire (manual triggers still work).
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who owns the job (free text, e.g. an e-mail address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A failure still counts as success for dependents (Chronos's `softError`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub soft_error: bool,
    /// The run is not over when its process exits 0: it stays `running` until the job reports
    /// its outcome with the Chronos completion call `PUT /scheduler/task/{taskId}` (Chronos's
    /// `async`). A non-zero exit still ends the run at once.
    #[serde(default, rename = "async", skip_serializing_if = "is_false")]
    pub is_async: bool,
    /// Chronos job fields tempora stores and returns unchanged but does not act on (`cpus`,
    /// `mem`, `disk`, `runAsUser`, `container`, …), so a job read through the Chronos API
    /// round-trips. See `docs/chronos.md`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub chronos: BTreeMap<String, serde_json::Value>,
    /// Worker labels a run of this job requires: only a worker whose labels include every
    /// `key: value` pair here may claim it (empty: any worker).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Run the processes as this user (login name or numeric uid): its uid, gid and groups.
    /// Setting it to another user than the server's own needs role `admin`; a server that
    /// cannot switch users refuses the job (Chronos's `runAsUser`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// An HTTP job: each run sends this request instead of starting `command` (which stays
    /// empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::http_job::HttpSpec>,
    /// A container job: each run starts a container from this image, with `command`,
    /// `arguments`, `env` and `secrets` (an empty `command` runs the image's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::container::ContainerSpec>,
    /// An uploaded script or binary to run instead of `command` (`sha256:<hex>`, see
    /// `POST /api/v1/artifacts`): the worker fetches it, checks its hash and runs it with the
    /// job's `arguments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// The program that runs the artifact (`python3`, `/bin/bash -e`: words, the artifact's path
    /// and the arguments after them); absent: the artifact is run itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// Who hears of the job's runs: `[{on: [failure|success|retry_exhausted|timed_out|lost],
    /// webhook | email | slack}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<crate::notify::NotifyRule>,
}

/// A refused field: which field, a stable machine code and a message in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The offending field (`schedule`, `env.FOO`, …).
    pub field: String,
    /// Stable machine-readable code (`invalid_schedule`, `invalid_name`, …).
    pub code: &'static str,
    /// Human explanation.
    pub message: String,
}

impl ValidationError {
    /// Build an error for `field` with `code` and `message`.
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// Check a job name against `^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    let bad = |msg: &str| Err(ValidationError::new("name", "invalid_name", msg));
    if name.is_empty() {
        return bad("name is required");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("name is longer than 200 characters");
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return bad(
            "name must start with a letter or digit (pattern ^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$)",
        );
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return bad(
            "name may contain only ASCII letters, digits, '.', '_' and '-' (pattern ^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$)",
        );
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.contains('\0') {
        return Err(ValidationError::new(
            field,
            "invalid_value",
            "must not contain NUL bytes",
        ));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            "invalid_value",
            format!("longer than {max} bytes"),
        ));
    }
    Ok(())
}

fn check_map(
    field: &str,
    map: &BTreeMap<String, String>,
    env: bool,
) -> Result<(), ValidationError> {
    if map.len() > 1000 {
        return Err(ValidationError::new(
            field,
            "invalid_value",
            "at most 1000 entries",
        ));
    }
    for (k, v) in map {
        let f = format!("{field}.{k}");
        if k.is_empty() || k.len() > 256 {
            return Err(ValidationError::new(
                field,
                "invalid_value",
                "keys must be 1-256 bytes",
            ));
        }
        if env && (k.contains('=') || k.contains('\0')) {
            return Err(ValidationError::new(
                f,
                "invalid_value",
                "environment variable names must not contain '=' or NUL",
            ));
        }
        if env && is_reserved_variable(k) {
            return Err(ValidationError::new(
                f,
                "invalid_value",
                "tempora sets this variable for every run (`TEMPORA_*`, `CHRONOS_*`, \
                 `MESOS_TASK_ID`); a job or a trigger cannot",
            ));
        }
        check_text(&f, k, 256)?;
        check_text(&f, v, 65_536)?;
    }
    Ok(())
}

/// Prefix of the variables tempora sets for every run; a job or a trigger cannot set them.
pub const RESERVED_ENV_PREFIX: &str = "TEMPORA_";

/// Whether tempora sets this variable for every run (so that a job or a trigger may not):
/// `TEMPORA_*`, `CHRONOS_*` and the Mesos task id.
pub fn is_reserved_variable(name: &str) -> bool {
    name.starts_with(RESERVED_ENV_PREFIX)
        || name.starts_with("CHRONOS_")
        || name.eq_ignore_ascii_case("MESOS_TASK_ID")
}

/// Whether a variable changes how the dynamic loader or the shell starts (`LD_*`, `BASH_ENV`,
/// `ENV`, `BASH_FUNC_*`, `SHELLOPTS`): setting one runs code of the setter's choosing in a job
/// whose command the setter could not change, so a trigger may set one only as an admin.
pub fn is_startup_variable(name: &str) -> bool {
    name.starts_with("LD_")
        || name.starts_with("BASH_FUNC_")
        || matches!(name, "BASH_ENV" | "ENV" | "SHELLOPTS")
}

/// Check a manual trigger's `env` (field `env`) and `arguments`: the bounds of a job's `env`,
/// no `TEMPORA_*` variable, and no start-up variable ([`is_startup_variable`]) unless the
/// caller is `privileged` (an admin).
pub fn validate_trigger(
    env: &BTreeMap<String, String>,
    arguments: Option<&[String]>,
    privileged: bool,
) -> Result<(), ValidationError> {
    check_map("env", env, true)?;
    if let Some(k) = env.keys().find(|k| k.as_str() == "HOST") {
        return Err(ValidationError::new(
            format!("env.{k}"),
            "invalid_value",
            "tempora sets HOST for every run (the worker's host name)",
        ));
    }
    if !privileged && let Some(k) = env.keys().find(|k| is_startup_variable(k)) {
        return Err(ValidationError::new(
            format!("env.{k}"),
            "forbidden",
            "variables that change how the loader or the shell starts (LD_*, BASH_ENV, ENV, \
             BASH_FUNC_*, SHELLOPTS) may be set by a trigger only with an admin token",
        ));
    }
    if let Some(args) = arguments {
        if args.len() > 1000 {
            return Err(ValidationError::new(
                "arguments",
                "invalid_value",
                "at most 1000 arguments",
            ));
        }
        for (i, a) in args.iter().enumerate() {
            check_text(&format!("arguments[{i}]"), a, 65_536)?;
        }
    }
    Ok(())
}

impl JobSpec {
    /// The fields the scheduler's timer needs.
    pub fn timer_spec(&self) -> TimerSpec {
        TimerSpec {
            schedule: self.schedule.clone(),
            timezone: self.timezone.clone(),
            misfire: self.misfire,
            epsilon: self.epsilon,
        }
    }

    /// Move a `CRON_TZ=Zone ` prefix of the schedule into `timezone` (see
    /// [`crate::schedule::split_zone_prefix`]), so the stored job says its zone in one place. A
    /// prefix naming another zone than an explicit non-UTC `timezone` is an error.
    pub fn take_zone_prefix(&mut self) -> Result<(), ValidationError> {
        let Some(expr) = &self.schedule else {
            return Ok(());
        };
        let (Some(zone), rest) = crate::schedule::split_zone_prefix(expr) else {
            return Ok(());
        };
        crate::schedule::parse_timezone(zone)
            .map_err(|e| ValidationError::new("schedule", "invalid_timezone", e.message))?;
        if self.timezone != zone && self.timezone != "UTC" {
            return Err(ValidationError::new(
                "schedule",
                "conflicting_timezone",
                format!(
                    "the schedule's CRON_TZ={zone} differs from the job's timezone `{}`: give the \
                     zone in one of them",
                    self.timezone
                ),
            ));
        }
        let (zone, rest) = (zone.to_owned(), rest.to_owned());
        self.timezone = zone;
        self.schedule = Some(rest);
        Ok(())
    }

    /// Validate every field. On success returns the parsed schedule (if any) and zone, which the
    /// caller uses to compute the first occurrence.
    pub fn validate(&self) -> Result<ValidatedJob, ValidationError> {
        validate_name(&self.name)?;
        crate::kind::check_kind(self)?;
        check_text("command", &self.command, MAX_COMMAND_LEN)?;
        if self.arguments.len() > 1000 {
            return Err(ValidationError::new(
                "arguments",
                "invalid_value",
                "at most 1000 arguments",
            ));
        }
        for (i, a) in self.arguments.iter().enumerate() {
            check_text(&format!("arguments[{i}]"), a, 65_536)?;
        }
        let timezone = parse_timezone(&self.timezone)
            .map_err(|e| ValidationError::new("timezone", "invalid_timezone", e.message))?;
        if self.schedule.is_some() && !self.parents.is_empty() {
            return Err(ValidationError::new(
                "parents",
                "invalid_value",
                "a job has either a schedule or parents, not both",
            ));
        }
        if self.parents.len() > 100 {
            return Err(ValidationError::new(
                "parents",
                "invalid_value",
                "at most 100 parents",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.parents.iter().enumerate() {
            validate_name(p).map_err(|e| {
                ValidationError::new(format!("parents[{i}]"), "invalid_name", e.message)
            })?;
            if *p == self.name {
                return Err(ValidationError::new(
                    "parents",
                    "cycle",
                    format!("job `{p}` cannot be its own parent"),
                ));
            }
            if !seen.insert(p) {
                return Err(ValidationError::new(
                    "parents",
                    "invalid_value",
                    format!("parent `{p}` is listed twice"),
                ));
            }
        }
        let schedule = match &self.schedule {
            None => None,
            Some(expr) => Some(
                Schedule::parse(expr)
                    .map_err(|e| ValidationError::new("schedule", "invalid_schedule", e.message))?,
            ),
        };
        check_map("env", &self.env, true)?;
        if self.secrets.len() > 100 {
            return Err(ValidationError::new(
                "secrets",
                "invalid_value",
                "at most 100 entries",
            ));
        }
        check_map("secrets", &self.secrets, true)?;
        if let Some(k) = self.secrets.keys().find(|k| self.env.contains_key(*k)) {
            return Err(ValidationError::new(
                format!("secrets.{k}"),
                "invalid_value",
                "also in `env`: a variable is either plain or secret",
            ));
        }
        check_map("labels", &self.labels, false)?;
        if self.chronos.len() > 100 {
            return Err(ValidationError::new(
                "chronos",
                "invalid_value",
                "at most 100 entries",
            ));
        }
        if let Some(w) = &self.workdir {
            if w.is_empty() {
                return Err(ValidationError::new(
                    "workdir",
                    "invalid_value",
                    "must not be empty",
                ));
            }
            check_text("workdir", w, 4096)?;
            if !w.starts_with('/') {
                return Err(ValidationError::new(
                    "workdir",
                    "invalid_value",
                    format!(
                        "`{w}` is not an absolute path (a relative one would depend on where \
                         the worker was started)"
                    ),
                ));
            }
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ValidationError::new(
                "timeout",
                "invalid_value",
                "must be greater than 0 (omit it for no timeout)",
            ));
        }
        if let Some(u) = &self.run_as {
            let ok = !u.is_empty()
                && u.len() <= 32
                && !u.starts_with('-')
                && u.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(ValidationError::new(
                    "run_as",
                    "invalid_value",
                    "a user name or uid: 1-32 of A-Z a-z 0-9 . _ - (not starting with -)",
                ));
            }
        }
        if self.epsilon > MAX_EPSILON {
            return Err(ValidationError::new(
                "epsilon",
                "invalid_value",
                "at most 1 day (P1D): an occurrence found later than that is no longer caught up",
            ));
        }
        if self.retries > MAX_RETRIES {
            return Err(ValidationError::new(
                "retries",
                "invalid_value",
                format!("at most {MAX_RETRIES}"),
            ));
        }
        if self.retry_backoff > self.retry_backoff_max {
            return Err(ValidationError::new(
                "retry_backoff",
                "invalid_value",
                "must not exceed retry_backoff_max",
            ));
        }
        if let Some(d) = &self.description {
            check_text("description", d, 16_384)?;
        }
        if let Some(o) = &self.owner {
            check_text("owner", o, 1024)?;
        }
        validate_labels("selector", &self.selector)?;
        crate::kind::check_not_reserved("selector", &self.selector)?;
        crate::notify::validate(&self.notify)?;
        crate::notify::check_references(&self.notify, |n| {
            self.env.contains_key(n) || self.secrets.contains_key(n)
        })?;
        Ok(ValidatedJob { schedule, timezone })
    }
}

/// Most entries of a job `selector` or of a worker's labels.
pub const MAX_LABELS: usize = 32;

/// Check one label key like a Kubernetes label key: an optional DNS-style prefix and `/`, then a
/// name of 1–63 characters `[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?`.
fn label_key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Some("the key prefix must be a lowercase DNS subdomain (e.g. `example.com/`)");
        }
    }
    if name.is_empty() {
        return Some("the key name must not be empty");
    }
    label_value_problem(name)
}

/// Check one label value: at most 63 characters `[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?`
/// (empty allowed).
fn label_value_problem(v: &str) -> Option<&'static str> {
    if v.len() > 63 {
        return Some("at most 63 characters");
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    if v.starts_with(['-', '_', '.']) || v.ends_with(['-', '_', '.']) {
        return Some("must start and end with a letter or digit");
    }
    None
}

/// Validate a label map (a job `selector`, a worker's labels) like Kubernetes labels: at most
/// [`MAX_LABELS`] entries; errors name `<field>.<key>`.
pub fn validate_labels(
    field: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    if labels.len() > MAX_LABELS {
        return Err(ValidationError::new(
            field,
            "invalid_value",
            format!("at most {MAX_LABELS} entries"),
        ));
    }
    for (k, v) in labels {
        let f = format!("{field}.{k}");
        if let Some(p) = label_key_problem(k) {
            return Err(ValidationError::new(
                f,
                "invalid_value",
                format!("invalid label key: {p}"),
            ));
        }
        if let Some(p) = label_value_problem(v) {
            return Err(ValidationError::new(
                f,
                "invalid_value",
                format!("invalid label value: {p}"),
            ));
        }
    }
    Ok(())
}

/// Parse `k=v,k2=v2` (worker and server `--labels` flags) and validate it.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, ValidationError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(ValidationError::new(
                "labels",
                "invalid_value",
                format!("`{part}` is not `key=value`"),
            ));
        };
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    validate_labels("labels", &out)?;
    Ok(out)
}

/// True when `labels` include every pair of `selector`.
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The parsed parts of a valid job.
#[derive(Debug, Clone)]
pub struct ValidatedJob {
    /// The parsed schedule (None: triggered only).
    pub schedule: Option<Schedule>,
    /// The parsed zone.
    pub timezone: jiff::tz::TimeZone,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<JobSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn defaults_follow_design() {
        let s = spec(r#"{"name":"a","command":"true"}"#).unwrap();
        assert!(s.shell);
        assert_eq!(s.timezone, "UTC");
        assert_eq!(s.retries, 0);
        assert_eq!(s.retry_backoff, Duration::from_secs(10));
        assert_eq!(s.retry_backoff_max, Duration::from_secs(600));
        assert_eq!(s.epsilon, Duration::from_secs(60));
        assert_eq!(s.concurrency, Concurrency::Forbid);
        assert_eq!(s.misfire, Misfire::RunOnce);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn unknown_field_refused() {
        let e = spec(r#"{"name":"a","command":"true","retires":3}"#).unwrap_err();
        assert!(e.to_string().contains("retires"), "{e}");
    }

    #[test]
    fn names() {
        for ok in ["a", "A9", "x.y-z_1", &"a".repeat(200)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"a".repeat(201)] {
            assert_eq!(validate_name(bad).unwrap_err().field, "name", "{bad}");
        }
    }

    #[test]
    fn field_errors_name_the_field() {
        let cases = [
            (
                r#"{"name":"a","command":"x","schedule":"61 * * * *"}"#,
                "schedule",
            ),
            (
                r#"{"name":"a","command":"x","timezone":"Mars/Base"}"#,
                "timezone",
            ),
            (r#"{"name":"a","command":" "}"#, "command"),
            (r#"{"name":"a","command":"x","timeout":"0s"}"#, "timeout"),
            (
                r#"{"name":"a","command":"x","retry_backoff":"1h","retry_backoff_max":"1m"}"#,
                "retry_backoff",
            ),
            (r#"{"name":"a","command":"x","env":{"A=B":"1"}}"#, "env.A=B"),
        ];
        for (json, field) in cases {
            let e = spec(json).unwrap().validate().unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
        }
    }

    #[test]
    fn selector_is_validated_and_matched() {
        let s = spec(
            r#"{"name":"a","command":"x","selector":{"zone":"eu-1","example.com/gpu":"yes"}}"#,
        )
        .unwrap();
        assert!(s.validate().is_ok());
        let back: JobSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.selector, s.selector);
        let plain = spec(r#"{"name":"a","command":"x"}"#).unwrap();
        assert!(!serde_json::to_string(&plain).unwrap().contains("selector"));
        for (bad, field) in [
            (r#"{"zone":"eu 1"}"#, "selector.zone"),
            (r#"{"-x":"a"}"#, "selector.-x"),
            (r#"{"Bad_Prefix/x":"a"}"#, "selector.Bad_Prefix/x"),
            (r#"{"x":"-a"}"#, "selector.x"),
        ] {
            let s = spec(&format!(r#"{{"name":"a","command":"x","selector":{bad}}}"#)).unwrap();
            assert_eq!(s.validate().unwrap_err().field, field, "{bad}");
        }
        let many: BTreeMap<String, String> =
            (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert_eq!(
            validate_labels("selector", &many).unwrap_err().field,
            "selector"
        );
        let labels = parse_labels("zone=eu-1, gpu=yes").unwrap();
        assert!(selector_matches(&BTreeMap::new(), &labels));
        assert!(selector_matches(
            &parse_labels("zone=eu-1").unwrap(),
            &labels
        ));
        assert!(!selector_matches(
            &parse_labels("zone=us-1").unwrap(),
            &labels
        ));
        assert!(parse_labels("zone").is_err());
    }

    #[test]
    fn durations_accept_both_forms() {
        let s = spec(
            r#"{"name":"a","command":"x","timeout":"PT1M30S","epsilon":"2m","retry_backoff":5}"#,
        )
        .unwrap();
        assert_eq!(s.timeout, Some(Duration::from_secs(90)));
        assert_eq!(s.epsilon, Duration::from_secs(120));
        assert_eq!(s.retry_backoff, Duration::from_secs(5));
    }
}
