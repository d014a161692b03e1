//! Chronos ISO 8601 schedules with `scheduleTimeZone`, converted to tempora's.

use super::*;

/// Split an ISO 8601 datetime into its civil part and drop the offset (`Z`, `+01:00`, …).
pub(super) fn civil_part(start: &str) -> Option<DateTime> {
    let s = start.trim_end_matches(['Z', 'z']);
    s.parse::<DateTime>().ok()
}

/// Turn a Chronos `schedule` + `scheduleTimeZone` into tempora's `schedule` + `timezone`.
///
/// The zone keeps the wall-clock fields of the start (Joda's `withZoneRetainFields`): any offset
/// written in the start is dropped and the start is read in the zone. An empty start means "now"
/// and is written down, so the job keeps its phase. Non-ISO schedules (cron, macros) pass through.
pub fn convert_schedule(
    schedule: &str,
    zone: Option<&str>,
    now: Timestamp,
) -> Result<(String, String), ValidationError> {
    let timezone = match zone.map(str::trim).filter(|z| !z.is_empty()) {
        Some(z) => resolve_zone(z)?,
        None => "UTC".to_owned(),
    };
    let expr = schedule.trim();
    if !(expr.starts_with(['R', 'r']) && expr.contains('/')) {
        return Ok((expr.to_owned(), timezone));
    }
    let cannot = |why: &str| {
        ValidationError::new(
            "schedule",
            "invalid_schedule",
            format!("cannot parse schedule `{expr}`: {why}"),
        )
    };
    let parts: Vec<&str> = expr.split('/').collect();
    if parts.len() != 3 {
        return Err(cannot("expected R[n]/[start]/period"));
    }
    let period = if parts[2].eq_ignore_ascii_case("P") {
        let reps = parts[0].get(1..).unwrap_or_default();
        if !matches!(reps, "0" | "1") {
            return Err(cannot(
                "a bare `P` (zero period) is only allowed with R0 or R1",
            ));
        }
        "PT0S"
    } else {
        parts[2]
    };
    let start = if parts[1].trim().is_empty() {
        let now = Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
        if zone.is_some_and(|z| !z.trim().is_empty()) {
            let tz = parse_timezone(&timezone).map_err(|e| cannot(&e.message))?;
            now.to_zoned(tz).datetime().to_string()
        } else {
            now.to_string()
        }
    } else if zone.is_some_and(|z| !z.trim().is_empty()) {
        civil_part(parts[1])
            .ok_or_else(|| cannot("the start is not an ISO 8601 datetime"))?
            .to_string()
    } else {
        parts[1].to_owned()
    };
    Ok((format!("{}/{start}/{period}", parts[0]), timezone))
}

/// An empty start (`R5//PT1H`) means "from now" when a job is created; on an update it keeps the
/// stored start when the repetitions, period and zone are unchanged, so the job keeps its phase
/// and does not run again.
pub(super) fn kept_start(
    written: &str,
    converted: &str,
    zone: &str,
    existing: &JobSpec,
) -> Option<String> {
    if written.trim().split('/').nth(1) != Some("") || existing.timezone != zone {
        return None;
    }
    let have = existing.schedule.as_deref()?;
    differs_only_in_start(converted, have).then(|| have.to_owned())
}

/// Whether two ISO 8601 `R[n]/start/period` schedules have the same repetitions and period
/// (their starts may differ).
pub fn differs_only_in_start(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    a.len() == 3 && b.len() == 3 && a[0] == b[0] && a[2] == b[2]
}
