//! Rules both backends and the workers apply the same way: a job's stored cursor (its next
//! occurrence) when it is written, and the environment a run starts with.

use jiff::Timestamp;
use tempora_core::job::{JobSpec, ValidationError};
use tempora_core::run::Run;

use crate::{JobRecord, StoreResult};

/// The first occurrence to store for a job being written at `now`.
///
/// Backends share this so they agree: a job whose schedule and zone did not change keeps its
/// cursor (a pending occurrence is not lost by editing, say, the command); otherwise the first
/// occurrence strictly after `now` is taken (no backfill of the past). Paused jobs keep no cursor.
pub fn compute_cursor(
    spec: &JobSpec,
    created_at: Timestamp,
    now: Timestamp,
    previous: Option<&JobRecord>,
) -> StoreResult<Option<Timestamp>> {
    spec.validate()?;
    if spec.paused || spec.schedule.is_none() {
        return Ok(None);
    }
    if let Some(prev) = previous
        && !prev.spec.paused
        && prev.spec.schedule == spec.schedule
        && prev.spec.timezone == spec.timezone
    {
        return Ok(prev.next_fire_at);
    }
    first_occurrence(spec, created_at, now)
}

/// The first occurrence of a schedule saved at `now` (None: it has none left, or the job has no
/// schedule). An ISO 8601 interval's or an `@at`'s occurrence that fell due within `epsilon`
/// before the save still runs (an empty ISO start means "now", so `R1//PT24H` runs at once, as in
/// Chronos); the other forms start with the first occurrence after the save. A cron expression
/// that never fires is an error.
pub fn first_occurrence(
    spec: &JobSpec,
    created_at: Timestamp,
    now: Timestamp,
) -> StoreResult<Option<Timestamp>> {
    let valid = spec.validate()?;
    let Some(schedule) = valid.schedule else {
        return Ok(None);
    };
    let from = if matches!(schedule.kind(), "iso8601" | "at") {
        let eps =
            jiff::SignedDuration::try_from(spec.epsilon).unwrap_or(jiff::SignedDuration::ZERO);
        now.checked_sub(eps)
            .unwrap_or(now)
            .checked_sub(jiff::SignedDuration::from_micros(1))
            .unwrap_or(now)
    } else {
        now
    };
    let next = schedule.next_after(from, &valid.timezone, created_at);
    if next.is_none() && matches!(schedule.kind(), "cron" | "quartz") {
        return Err(ValidationError::new(
            "schedule",
            "invalid_schedule",
            format!("`{}` never fires", schedule.as_str()),
        )
        .into());
    }
    Ok(next)
}

/// Environment variables a run's process sees, besides the job's own `env` and
/// the trigger's overrides: `TEMPORA_*` and the Chronos ones (set last, so a job's `env` cannot
/// override them, as in Chronos).
pub fn run_environment(run: &Run, spec: &JobSpec) -> Vec<(String, String)> {
    let task_id = tempora_core::chronos::TaskId::of(run, spec).to_string();
    let resource = |k: &str, default: &str| {
        spec.chronos
            .get(k)
            .map_or_else(|| default.to_owned(), |v| v.to_string())
    };
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let host = HOST
        .get_or_init(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .unwrap_or_default()
        })
        .clone();
    vec![
        ("TEMPORA_JOB".into(), run.job.clone()),
        ("TEMPORA_RUN_ID".into(), run.id.to_string()),
        (
            "TEMPORA_SCHEDULED_FOR".into(),
            run.scheduled_for.to_string(),
        ),
        ("TEMPORA_ATTEMPT".into(), run.attempt.to_string()),
        ("mesos_task_id".into(), task_id.clone()),
        ("MESOS_TASK_ID".into(), task_id),
        ("CHRONOS_JOB_NAME".into(), run.job.clone()),
        (
            "CHRONOS_JOB_OWNER".into(),
            spec.owner.clone().unwrap_or_default(),
        ),
        (
            "CHRONOS_JOB_RUN_TIME".into(),
            run.scheduled_for.as_millisecond().to_string(),
        ),
        (
            "CHRONOS_JOB_RUN_ATTEMPT".into(),
            run.attempt.saturating_sub(1).to_string(),
        ),
        ("CHRONOS_RESOURCE_CPU".into(), resource("cpus", "0.1")),
        ("CHRONOS_RESOURCE_MEM".into(), resource("mem", "128.0")),
        ("CHRONOS_RESOURCE_DISK".into(), resource("disk", "256.0")),
        ("HOST".into(), host),
    ]
}
