//! The Chronos job model: Chronos job JSON ⇄ [`JobSpec`], Chronos task ids and Java's short
//! time-zone ids. Pure functions; the HTTP handlers (`tempora-http`'s `chronos` module) and
//! `tempora apply` use them. What is mapped, what is kept verbatim and what differs from Chronos
//! is documented in `docs/chronos.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::DateTime;
use serde_json::{Map, Value, json};

use crate::duration::parse_duration;
use crate::job::{Concurrency, JobSpec, ValidationError};
use crate::run::Run;
use crate::schedule::parse_timezone;

mod container;
mod render;
mod schedule;
mod tasks;
mod zones;

pub use container::*;
pub use render::*;
pub use schedule::*;
pub use tasks::*;
pub use zones::*;

/// Chronos's default number of retries.
pub const DEFAULT_RETRIES: u32 = 2;

/// Chronos fields tempora keeps verbatim in [`JobSpec::chronos`] (normalised to their JSON type)
/// and returns, without acting on them.
pub const KEPT_FIELDS: &[&str] = &[
    "executor",
    "executorFlags",
    "taskInfoData",
    "ownerName",
    "cpus",
    "mem",
    "disk",
    "dataProcessingJobType",
    "highPriority",
    "maxCompletionTime",
    "uris",
    "fetch",
    "constraints",
    "container",
];

/// Keys that only a Chronos job document has (a native job file never does).
const CHRONOS_ONLY_KEYS: &[&str] = &[
    "runAsUser",
    "scheduleTimeZone",
    "environmentVariables",
    "softError",
    "disabled",
    "concurrent",
    "successCount",
    "errorCount",
    "lastSuccess",
    "lastError",
    "errorsSinceLastSuccess",
];

/// Which Chronos endpoint a job document came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /scheduler/iso8601`.
    Scheduled,
    /// `POST /scheduler/dependency`: `parents` is required.
    Dependent,
    /// A job file: the kind follows the fields present.
    Any,
}

/// True when a JSON object is a Chronos job document rather than a native one.
pub fn looks_like_chronos(obj: &Map<String, Value>) -> bool {
    obj.keys()
        .any(|k| CHRONOS_ONLY_KEYS.contains(&k.as_str()) || KEPT_FIELDS.contains(&k.as_str()))
        || obj
            .get("epsilon")
            .and_then(Value::as_str)
            .is_some_and(|e| e.starts_with('P'))
            && obj
                .get("schedule")
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with('R'))
}

fn bad(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, "invalid_value", message)
}

fn get_str(o: &Map<String, Value>, k: &str) -> Result<Option<String>, ValidationError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(k, "must be a string")),
    }
}

fn get_bool(o: &Map<String, Value>, k: &str) -> Result<Option<bool>, ValidationError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(bad(k, "must be true or false")),
    }
}

fn get_f64(o: &Map<String, Value>, k: &str) -> Result<Option<f64>, ValidationError> {
    let v = match o.get(k) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match v {
        Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
        _ => Err(bad(k, "must be a non-negative number")),
    }
}

fn get_u64(o: &Map<String, Value>, k: &str) -> Result<Option<u64>, ValidationError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(Value::String(s)) if s.trim().parse::<u64>().is_ok() => Ok(s.trim().parse().ok()),
        Some(_) => Err(bad(k, "must be a non-negative integer")),
    }
}

fn get_str_list(o: &Map<String, Value>, k: &str) -> Result<Option<Vec<String>>, ValidationError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(&format!("{k}[{i}]"), "must be a string"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad(k, "must be a list of strings")),
    }
}

/// Plain and secret variables of `environmentVariables` (an entry with `"secret": true` is a
/// secret: an extension Chronos clients pass through and ignore).
type EnvAndSecrets = (BTreeMap<String, String>, BTreeMap<String, String>);

fn get_env(o: &Map<String, Value>) -> Result<Option<EnvAndSecrets>, ValidationError> {
    let items = match o.get("environmentVariables") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(bad(
                "environmentVariables",
                "must be a list of {\"name\": …, \"value\": …}",
            ));
        }
    };
    let mut env = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("environmentVariables[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| bad(&field, "must be {\"name\": …, \"value\": …}"))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("{field}.name"), "is required and must be a string"))?;
        let value = match obj.get("value") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(_) => return Err(bad(&format!("{field}.value"), "must be a string")),
        };
        let secret = match obj.get("secret") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad(&format!("{field}.secret"), "must be true or false")),
        };
        if secret {
            secrets.insert(name.to_owned(), value);
        } else {
            env.insert(name.to_owned(), value);
        }
    }
    Ok(Some((env, secrets)))
}

/// Chronos's default for a field of [`KEPT_FIELDS`] (`None` for `container`).
fn kept_default(k: &str) -> Option<Value> {
    Some(match k {
        "executor" | "executorFlags" | "taskInfoData" | "ownerName" => json!(""),
        "cpus" => json!(0.1),
        "mem" => json!(128.0),
        "disk" => json!(256.0),
        "dataProcessingJobType" | "highPriority" => json!(false),
        "maxCompletionTime" => json!(0),
        "uris" | "fetch" | "constraints" => json!([]),
        _ => return None,
    })
}

/// The fields of [`KEPT_FIELDS`] present in `o`, normalised to their JSON type.
fn kept_fields(o: &Map<String, Value>) -> Result<BTreeMap<String, Value>, ValidationError> {
    let mut out = BTreeMap::new();
    for &k in KEPT_FIELDS {
        let v = match k {
            "cpus" | "mem" | "disk" => get_f64(o, k)?.map(|x| json!(x)),
            "maxCompletionTime" => get_u64(o, k)?.map(|x| json!(x)),
            "dataProcessingJobType" | "highPriority" => get_bool(o, k)?.map(Value::Bool),
            "executor" | "executorFlags" | "taskInfoData" | "ownerName" => {
                get_str(o, k)?.map(Value::String)
            }
            "uris" => get_str_list(o, k)?.map(|l| json!(l)),
            "fetch" | "constraints" => match o.get(k) {
                None | Some(Value::Null) => None,
                Some(v @ Value::Array(_)) => Some(v.clone()),
                Some(_) => return Err(bad(k, "must be a list")),
            },
            "container" => match o.get(k) {
                None | Some(Value::Null) => None,
                Some(Value::Object(c)) => {
                    if c.get("image").is_some_and(|i| !i.is_string()) {
                        return Err(bad("container.image", "must be a string"));
                    }
                    Some(Value::Object(c.clone()))
                }
                Some(_) => return Err(bad(k, "must be an object")),
            },
            _ => None,
        };
        // Defaults are not stored: rendering puts them back.
        if let Some(v) = v.filter(|v| Some(v) != kept_default(k).as_ref()) {
            out.insert(k.to_owned(), v);
        }
    }
    let non_empty = |k: &str| {
        out.get(k)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    if non_empty("uris") && non_empty("fetch") {
        return Err(bad("uris", "set either `uris` or `fetch`, not both"));
    }
    Ok(out)
}

/// Drop Chronos renderings that no longer match the job after a native edit: a
/// `scheduleTimeZone` that is not the job's zone, an `epsilon` spelling of another duration.
pub fn tidy(spec: &mut JobSpec) {
    let zone_ok = spec
        .chronos
        .get("scheduleTimeZone")
        .and_then(Value::as_str)
        .is_none_or(|z| {
            resolve_zone(z).is_ok_and(|r| r == spec.timezone) && spec.parents.is_empty()
        });
    if !zone_ok {
        spec.chronos.remove("scheduleTimeZone");
    }
    let eps_ok = spec
        .chronos
        .get("epsilon")
        .and_then(Value::as_str)
        .is_none_or(|e| parse_duration(e).is_ok_and(|d| d == spec.epsilon));
    if !eps_ok {
        spec.chronos.remove("epsilon");
    }
}

/// Build the [`JobSpec`] a Chronos job document describes. `existing` is the stored job of the
/// same name: fields Chronos cannot express (labels, timeout, misfire, …) are kept from it;
/// every Chronos field absent from the document takes Chronos's default, as a Chronos update
/// replaces the whole job.
pub fn to_spec(
    o: &Map<String, Value>,
    existing: Option<&JobSpec>,
    now: Timestamp,
    endpoint: Endpoint,
) -> Result<JobSpec, ValidationError> {
    let name = get_str(o, "name")?
        .ok_or_else(|| ValidationError::new("name", "missing_field", "name is required"))?;
    let mut spec = match existing {
        Some(e) => e.clone(),
        None => serde_json::from_value::<JobSpec>(json!({ "name": name }))
            .map_err(|e| bad("name", e.to_string()))?,
    };
    spec.name = name;
    spec.command = get_str(o, "command")?.unwrap_or_default();
    spec.shell = get_bool(o, "shell")?.unwrap_or(true);
    spec.arguments = get_str_list(o, "arguments")?.unwrap_or_default();
    spec.retries = match get_u64(o, "retries")? {
        Some(r) => u32::try_from(r).map_err(|_| bad("retries", "too large"))?,
        None => DEFAULT_RETRIES,
    };
    spec.owner = get_str(o, "owner")?.filter(|s| !s.is_empty());
    spec.description = get_str(o, "description")?.filter(|s| !s.is_empty());
    spec.soft_error = get_bool(o, "softError")?.unwrap_or(false);
    spec.paused = get_bool(o, "disabled")?.unwrap_or(false);
    spec.is_async = get_bool(o, "async")?.unwrap_or(false);
    (spec.env, spec.secrets) = get_env(o)?.unwrap_or_default();
    spec.run_as = get_str(o, "runAsUser")?.filter(|u| !u.trim().is_empty());
    spec.concurrency = match get_bool(o, "concurrent")? {
        Some(true) => Concurrency::Allow,
        _ => match existing.map(|e| e.concurrency) {
            Some(c) if c != Concurrency::Allow => c,
            _ => Concurrency::Queue,
        },
    };
    let epsilon = get_str(o, "epsilon")?;
    spec.epsilon = match &epsilon {
        Some(e) => parse_duration(e).map_err(|m| bad("epsilon", m.to_string()))?,
        None => existing.map_or(Duration::from_secs(60), |e| e.epsilon),
    };
    let mut kept = kept_fields(o)?;
    // The period as written (`PT15M`) is what Chronos returns; kept for rendering.
    if let Some(e) = epsilon.filter(|e| e.trim().starts_with(['P', 'p'])) {
        kept.insert("epsilon".to_owned(), Value::String(e.trim().to_owned()));
    }
    let parents = get_str_list(o, "parents")?;
    let schedule = get_str(o, "schedule")?;
    let zone = get_str(o, "scheduleTimeZone")?;
    if parents.is_some() && schedule.is_some() {
        return Err(bad(
            "parents",
            "a job has either `schedule` or `parents`, not both",
        ));
    }
    match (parents, schedule, endpoint) {
        (Some(p), _, _) => {
            if p.is_empty() {
                return Err(bad("parents", "a dependent job needs at least one parent"));
            }
            spec.parents = p;
            spec.schedule = None;
            spec.timezone = "UTC".to_owned();
        }
        (None, _, Endpoint::Dependent) => {
            return Err(ValidationError::new(
                "parents",
                "missing_field",
                "a dependent job needs `parents`",
            ));
        }
        (None, s, _) => {
            // No schedule: Chronos runs the job once, now.
            let s = s.unwrap_or_else(|| "R1//PT24H".to_owned());
            let (mut schedule, timezone) = convert_schedule(&s, zone.as_deref(), now)?;
            if let Some(kept) = existing.and_then(|e| kept_start(&s, &schedule, &timezone, e)) {
                schedule = kept;
            }
            spec.schedule = Some(schedule);
            spec.timezone = timezone;
            if let Some(z) = zone.filter(|z| !z.trim().is_empty()) {
                kept.insert("scheduleTimeZone".to_owned(), Value::String(z));
            }
            spec.parents.clear();
        }
    }
    // A Chronos container job is a native container job (it runs as one and reads back as
    // Chronos's `container`).
    spec.container = kept
        .remove("container")
        .map(|c| container_from_chronos(&c))
        .transpose()?;
    // What Chronos cannot say of a container is kept from the stored job, as for the job's
    // other native fields.
    if let (Some(new), Some(old)) = (
        spec.container.as_mut(),
        existing.and_then(|e| e.container.as_ref()),
    ) {
        if old.network.is_none() && new.network.as_deref() == Some("bridge") {
            new.network = None;
        }
        new.entrypoint = old.entrypoint.clone();
        new.user = old.user.clone();
        new.cpus = old.cpus;
        new.memory = old.memory.clone();
        if new.pull == crate::container::Pull::Missing && old.pull == crate::container::Pull::Never
        {
            new.pull = crate::container::Pull::Never;
        }
    }
    spec.chronos = kept;
    spec.validate().map_err(|mut e| {
        if e.field == "schedule" {
            e.message = format!(
                "cannot parse schedule: expected ISO 8601 `R[n]/[start]/period` (tempora also \
                 accepts cron): {}",
                e.message
            );
        }
        e
    })?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_word_by_word() {
        assert_eq!(quote_words("$(id) && echo X"), "'$(id)' '&&' 'echo' 'X'");
        assert_eq!(quote_words("it's"), r"'it'\''s'");
        assert_eq!(quote_words("  "), "");
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }
    fn now() -> Timestamp {
        "2026-11-22T10:00:00.123456Z".parse().unwrap()
    }

    #[test]
    fn task_ids_match_chronos_fixtures() {
        let t = TaskId {
            due_ms: 1420843781398,
            attempt: 0,
            job: "sample-name".into(),
            arguments: "-a 1 -b 2".into(),
        };
        assert_eq!(t.to_string(), "ct:1420843781398:0:sample-name:-a 1 -b 2");
        let p = TaskId::parse("ct:1420843781398:0:test:-a 1:2 --B test").unwrap();
        assert_eq!(p.job, "test");
        assert_eq!(p.arguments, "-a 1:2 --B test");
        let p = TaskId::parse("ct:1420843781398:0:test").unwrap();
        assert_eq!((p.job.as_str(), p.arguments.as_str()), ("test", ""));
        assert_eq!(clean_arguments("-c 1 ; ./evil.sh"), "-c 1  ./evil.sh");
        assert!(TaskId::parse("my_job_run_555_882083xkj302").is_none());
        assert!(TaskId::parse("ct:x:0:job:").is_none());
    }

    #[test]
    fn zone_keeps_wall_clock_fields() {
        let (s, tz) =
            convert_schedule("R/2008-03-01T13:00:00-04:00/P1D", Some("PST"), now()).unwrap();
        assert_eq!(s, "R/2008-03-01T13:00:00/P1D");
        assert_eq!(tz, "America/Los_Angeles");
        let (s, tz) = convert_schedule("R/2008-03-01/P1D", Some("PST"), now()).unwrap();
        assert_eq!(
            (s.as_str(), tz.as_str()),
            ("R/2008-03-01T00:00:00/P1D", "America/Los_Angeles")
        );
        assert_eq!(resolve_zone("BST").unwrap(), "Asia/Dhaka");
        assert_eq!(resolve_zone("GMT+02:00").unwrap(), "Etc/GMT-2");
        assert_eq!(resolve_zone("GMT-5").unwrap(), "Etc/GMT+5");
        assert_eq!(resolve_zone("UTC+0").unwrap(), "UTC");
        assert!(resolve_zone("GMT+05:30").is_err());
        assert!(convert_schedule("R//P", None, now()).is_err());
        assert_eq!(resolve_zone("Europe/Paris").unwrap(), "Europe/Paris");
        assert_eq!(
            resolve_zone("Mars/Olympus").unwrap_err().field,
            "scheduleTimeZone"
        );
        // No zone: kept as written, read in UTC.
        let (s, tz) = convert_schedule("R10/2012-10-01T05:52:00Z/PT2S", None, now()).unwrap();
        assert_eq!(
            (s.as_str(), tz.as_str()),
            ("R10/2012-10-01T05:52:00Z/PT2S", "UTC")
        );
        // Empty start: now, written down; bare P: zero period.
        let (s, _) = convert_schedule("R1//P", None, now()).unwrap();
        assert_eq!(s, "R1/2026-11-22T10:00:00.123Z/PT0S");
        assert!(convert_schedule("R/2020-01-01T00:00:00Z/P1D/x", None, now()).is_err());
        assert!(convert_schedule("R/yesterday/P1D", Some("UTC"), now()).is_err());
    }

    #[test]
    fn defaults_and_round_trip() {
        let doc = obj(json!({
            "schedule": "R10/2012-10-01T05:52:00Z/PT2S", "name": "SAMPLE_JOB1",
            "epsilon": "PT15M", "command": "echo 'FOO' >> /tmp/JOB1_OUT",
            "owner": "bob@airbnb.com", "async": false, "cpus": "0.5", "mem": "512",
            "shell": "false", "invocationCount": 3
        }));
        let spec = to_spec(&doc, None, now(), Endpoint::Scheduled).unwrap();
        assert_eq!(spec.retries, 2);
        assert_eq!(spec.epsilon, Duration::from_secs(900));
        assert!(!spec.shell);
        assert_eq!(spec.concurrency, Concurrency::Queue);
        let out = render(&spec, &Counters::default());
        assert_eq!(out["cpus"], json!(0.5));
        assert_eq!(out["mem"], json!(512.0));
        assert_eq!(out["disk"], json!(256.0));
        assert_eq!(out["epsilon"], json!("PT15M"));
        assert_eq!(out["scheduleTimeZone"], json!(""));
        let again = to_spec(out.as_object().unwrap(), Some(&spec), now(), Endpoint::Any).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn bad_documents_name_the_field() {
        let e = |v: Value, ep| to_spec(&obj(v), None, now(), ep).unwrap_err().field;
        assert_eq!(e(json!({"command": "x"}), Endpoint::Any), "name");
        assert_eq!(
            e(
                json!({"name": "a", "command": "x", "schedule": "R/x/P1D"}),
                Endpoint::Any
            ),
            "schedule"
        );
        assert_eq!(
            e(
                json!({"name": "a", "command": "x", "parents": []}),
                Endpoint::Dependent
            ),
            "parents"
        );
        assert_eq!(
            e(json!({"name": "a", "command": "x"}), Endpoint::Dependent),
            "parents"
        );
        assert_eq!(
            e(
                json!({"name": "a", "command": "x", "schedule": "R//P1D", "scheduleTimeZone": "Nope/Zone"}),
                Endpoint::Any
            ),
            "scheduleTimeZone"
        );
        assert_eq!(
            e(
                json!({"name": "a", "command": "x", "retries": -1}),
                Endpoint::Any
            ),
            "retries"
        );
        assert_eq!(
            e(
                json!({"name": "a", "command": "x", "uris": ["u"], "fetch": [{"uri": "u"}]}),
                Endpoint::Any
            ),
            "uris"
        );
    }

    #[test]
    fn an_update_with_an_empty_start_keeps_the_phase() {
        let doc = obj(json!({"name": "a", "command": "x", "schedule": "R//PT1H"}));
        let first = to_spec(&doc, None, now(), Endpoint::Any).unwrap();
        let later: Timestamp = "2026-11-22T10:30:00Z".parse().unwrap();
        let again = to_spec(&doc, Some(&first), later, Endpoint::Any).unwrap();
        assert_eq!(again.schedule, first.schedule);
        let other = obj(json!({"name": "a", "command": "x", "schedule": "R//PT2H"}));
        let changed = to_spec(&other, Some(&first), later, Endpoint::Any).unwrap();
        assert_eq!(
            changed.schedule.as_deref(),
            Some("R/2026-11-22T10:30:00Z/PT2H")
        );
    }

    #[test]
    fn tidy_drops_stale_renderings() {
        let doc = obj(json!({"name": "a", "command": "x", "schedule": "R//PT1H",
                             "scheduleTimeZone": "PST", "epsilon": "PT15M"}));
        let mut spec = to_spec(&doc, None, now(), Endpoint::Any).unwrap();
        tidy(&mut spec);
        assert_eq!(spec.chronos.len(), 2);
        spec.timezone = "Europe/Paris".into();
        spec.epsilon = Duration::from_secs(60);
        tidy(&mut spec);
        assert!(spec.chronos.is_empty());
    }

    #[test]
    fn detects_chronos_documents() {
        assert!(looks_like_chronos(&obj(
            json!({"name": "a", "scheduleTimeZone": ""})
        )));
        assert!(looks_like_chronos(&obj(
            json!({"name": "a", "schedule": "R/2020-01-01T00:00:00Z/PT1H", "epsilon": "PT30M"})
        )));
        assert!(!looks_like_chronos(&obj(
            json!({"name": "a", "schedule": "*/5 * * * *", "retries": 2})
        )));
    }
}
