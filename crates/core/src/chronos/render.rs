//! A job rendered as Chronos job JSON, with its counters and times in Chronos's formats.

use super::*;

/// Job counters shown in the Chronos job JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Successful runs.
    pub success_count: u64,
    /// Failed runs.
    pub error_count: u64,
    /// Failed runs since the last success.
    pub errors_since_last_success: u64,
    /// End of the last successful run.
    pub last_success_at: Option<Timestamp>,
    /// End of the last failed run.
    pub last_error_at: Option<Timestamp>,
}

/// Chronos's date format for `lastSuccess`/`lastError`: UTC, milliseconds.
pub fn chronos_time(t: Option<Timestamp>) -> String {
    match t {
        Some(t) => {
            let ms = Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t);
            ms.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        }
        None => String::new(),
    }
}

/// A duration as an ISO 8601 period, e.g. `PT60S`.
pub fn iso_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("PT{}S", d.as_secs())
    } else {
        format!("PT{}.{:03}S", d.as_secs(), d.subsec_millis())
    }
}

/// The Chronos job JSON of a job (Chronos 3.x field set plus 2.x's `epsilon` and `async`).
pub fn render(spec: &JobSpec, c: &Counters) -> Value {
    let kept = |k: &str| {
        spec.chronos
            .get(k)
            .cloned()
            .or_else(|| kept_default(k))
            .unwrap_or(Value::Null)
    };
    let env: Vec<Value> = spec
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .chain(
            spec.secrets
                .keys()
                .map(|k| json!({"name": k, "value": crate::secret::MASK, "secret": true})),
        )
        .collect();
    let mut o = Map::new();
    o.insert("name".into(), json!(spec.name));
    o.insert("command".into(), json!(spec.command));
    o.insert("shell".into(), json!(spec.shell));
    o.insert("executor".into(), kept("executor"));
    o.insert("executorFlags".into(), kept("executorFlags"));
    o.insert("taskInfoData".into(), kept("taskInfoData"));
    o.insert("retries".into(), json!(spec.retries));
    o.insert(
        "owner".into(),
        json!(spec.owner.clone().unwrap_or_default()),
    );
    o.insert("ownerName".into(), kept("ownerName"));
    o.insert(
        "description".into(),
        json!(spec.description.clone().unwrap_or_default()),
    );
    o.insert("successCount".into(), json!(c.success_count));
    o.insert("errorCount".into(), json!(c.error_count));
    o.insert("lastSuccess".into(), json!(chronos_time(c.last_success_at)));
    o.insert("lastError".into(), json!(chronos_time(c.last_error_at)));
    o.insert("cpus".into(), kept("cpus"));
    o.insert("disk".into(), kept("disk"));
    o.insert("mem".into(), kept("mem"));
    o.insert("disabled".into(), json!(spec.paused));
    o.insert("softError".into(), json!(spec.soft_error));
    o.insert(
        "dataProcessingJobType".into(),
        kept("dataProcessingJobType"),
    );
    o.insert(
        "errorsSinceLastSuccess".into(),
        json!(c.errors_since_last_success),
    );
    o.insert("fetch".into(), kept("fetch"));
    o.insert("uris".into(), kept("uris"));
    o.insert("environmentVariables".into(), Value::Array(env));
    o.insert("arguments".into(), json!(spec.arguments));
    o.insert("highPriority".into(), kept("highPriority"));
    o.insert(
        "runAsUser".into(),
        json!(spec.run_as.as_deref().unwrap_or_default()),
    );
    o.insert(
        "concurrent".into(),
        json!(spec.concurrency == Concurrency::Allow),
    );
    o.insert("maxCompletionTime".into(), kept("maxCompletionTime"));
    if let Some(c) = &spec.container {
        o.insert("container".into(), container_to_chronos(c));
    }
    o.insert("constraints".into(), kept("constraints"));
    let epsilon = match spec.chronos.get("epsilon").and_then(Value::as_str) {
        Some(e) if parse_duration(e).is_ok_and(|d| d == spec.epsilon) => e.to_owned(),
        _ => iso_duration(spec.epsilon),
    };
    o.insert("epsilon".into(), json!(epsilon));
    o.insert("async".into(), json!(spec.is_async));
    if spec.parents.is_empty() {
        // A job without a schedule (run only when triggered) never fires: `R0`.
        let schedule = spec.schedule.clone().unwrap_or_else(|| "R0//PT24H".into());
        let zone = match spec.chronos.get("scheduleTimeZone").and_then(Value::as_str) {
            Some(z) if resolve_zone(z).is_ok_and(|r| r == spec.timezone) => z.to_owned(),
            _ if spec.timezone == "UTC" => String::new(),
            _ => spec.timezone.clone(),
        };
        o.insert("schedule".into(), json!(schedule));
        o.insert("scheduleTimeZone".into(), json!(zone));
    } else {
        o.insert("parents".into(), json!(spec.parents));
    }
    Value::Object(o)
}
