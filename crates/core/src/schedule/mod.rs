//! Schedules: parsing every form tempora accepts, and the next-fire-time math.
//!
//! Forms: Unix cron (5 fields, cronie), Quartz (6–7 fields), macros (`@hourly`…), `@every
//! <duration>` (from the job's creation), `@at <timestamp>` (once), ISO 8601 `R[n]/[start]/period`.
//!
//! **Unix cron** follows cronie: `dow` 0–7 (0 and 7 are Sunday), names, lists, ranges, steps; when
//! the day-of-month and day-of-week fields both restrict (neither starts with `*`), a day matches
//! if *either* matches, otherwise both must.
//!
//! **Quartz** (`sec min hour dom mon dow [year]`) follows Quartz 2.3: `dow` 1–7 = SUN–SAT, `?`,
//! `L`, `L-n`, `nW` (nearest weekday, never crossing the month), `LW`, `nL`, `n#k`, wrap-around
//! ranges (`22-2`), years 1970–2099. Quartz requires `?` in exactly one of dom/dow; tempora also
//! accepts `*` there (and `*` in both = every day), but refuses both restricted.
//!
//! **DST** (all cron forms), as cronie decides it: a job is *wild* when its minute field or its
//! hour field starts with `*` (`*`, `*/15`: cronie's `MIN_STAR`/`HR_STAR` flags), otherwise
//! *fixed* (`30 2`, `0-23/2`, `1-3`, `5,35`). When a forward jump skips wall-clock times, a fixed
//! job that matches any of them, or the first wall-clock minute after the jump, fires once at the
//! instant of the jump; a wild job only fires if the time after the jump matches. A wall-clock
//! time repeated by a backward jump fires once (first pass) for fixed jobs, on both passes for
//! wild jobs. So `* 2 * * *` and `*/15 2 * * *` do not fire on a spring-forward night in Berlin,
//! while `30 0-23/2 * * *` fires at 03:00.
//!
//! How it is computed: time is cut into segments between the zone's transitions; inside one the
//! offset is constant, so the next matching wall-clock time is plain calendar search
//! ([`cron::Cron::next_civil`]), and the DST rules apply exactly at segment boundaries.

mod cron;
mod describe;

use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp, Zoned};

/// No fire time is searched beyond this many years ahead.
const HORIZON_YEARS: i16 = 400;

/// An invalid schedule; the message names the bad field and token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    /// What is wrong, in words.
    pub message: String,
}

fn err(message: impl Into<String>) -> ScheduleError {
    ScheduleError {
        message: message.into(),
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(Box<cron::Cron>),
    Every(Duration),
    At(When),
    /// Boxed: a `Span` is large, and the scheduler keeps one `Schedule` per job.
    Iso(Box<Iso>),
}

/// An ISO 8601 repeating interval `R[n]/start/period`.
#[derive(Debug, Clone)]
struct Iso {
    count: Option<u64>,
    start: Option<When>,
    period: Span,
}

/// An instant, or a civil datetime to be read in the job's zone.
#[derive(Debug, Clone, PartialEq)]
enum When {
    Instant(Timestamp),
    Civil(DateTime),
}

impl When {
    /// Parse an instant or a civil datetime, truncated to microseconds: run times are stored
    /// with microsecond precision, and an occurrence must compare equal to its stored self.
    fn parse(s: &str) -> Option<When> {
        if let Ok(t) = s.parse::<Timestamp>() {
            return Timestamp::from_microsecond(t.as_microsecond())
                .ok()
                .map(When::Instant);
        }
        let dt = s.parse::<DateTime>().ok()?;
        let micros = dt.subsec_nanosecond() / 1000 * 1000;
        dt.with()
            .subsec_nanosecond(micros)
            .build()
            .ok()
            .map(When::Civil)
    }

    fn zoned(&self, tz: &TimeZone) -> Option<Zoned> {
        match self {
            When::Instant(t) => Some(t.to_zoned(tz.clone())),
            When::Civil(dt) => dt.to_zoned(tz.clone()).ok(),
        }
    }
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    kind: Kind,
}

impl PartialEq for Schedule {
    /// Two schedules are equal when written the same (after trimming).
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

/// Split a `CRON_TZ=Zone ` (or `TZ=Zone `) prefix off a schedule, as cronie, robfig/cron and
/// Kubernetes write it: `CRON_TZ=Asia/Tokyo 0 9 * * *` is `0 9 * * *` in Asia/Tokyo. Returns the
/// zone (not yet checked) and the rest; no prefix gives `(None, expr)`.
pub fn split_zone_prefix(expr: &str) -> (Option<&str>, &str) {
    let e = expr.trim_start();
    for key in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = e.strip_prefix(key) {
            let (zone, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return (Some(zone), rest.trim_start());
        }
    }
    (None, expr)
}

/// Parse a zone name (IANA, e.g. `Europe/Berlin`, or `UTC`).
pub fn parse_timezone(name: &str) -> Result<TimeZone, ScheduleError> {
    if name.trim().is_empty() {
        return Err(err("time zone is empty"));
    }
    TimeZone::get(name).map_err(|_| {
        err(format!(
            "unknown time zone `{name}` (use an IANA name such as Europe/Berlin or UTC)"
        ))
    })
}

impl Schedule {
    /// Parse any schedule form.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let e = expr.trim();
        if e.is_empty() {
            return Err(err("schedule is empty"));
        }
        let kind = if let Some(rest) = e.strip_prefix('@') {
            let (word, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let arg = arg.trim();
            let macro_expr = match word.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => Some("0 0 1 1 *"),
                "monthly" => Some("0 0 1 * *"),
                "weekly" => Some("0 0 * * 0"),
                "daily" | "midnight" => Some("0 0 * * *"),
                "hourly" => Some("0 * * * *"),
                "every" => None,
                "at" => None,
                "reboot" => {
                    return Err(err("`@reboot` is not supported: tempora schedules by time"));
                }
                other => {
                    return Err(err(format!(
                        "unknown macro `@{other}` (use @yearly, @monthly, @weekly, @daily, @hourly, @every <duration> or @at <timestamp>)"
                    )));
                }
            };
            match (macro_expr, word.to_ascii_lowercase().as_str()) {
                (Some(m), _) => {
                    if !arg.is_empty() {
                        return Err(err(format!("`@{word}` takes no argument")));
                    }
                    let fields: Vec<&str> = m.split(' ').collect();
                    Kind::Cron(Box::new(cron::parse(&fields)?))
                }
                (None, "every") => {
                    let d = crate::duration::parse_duration(arg)
                        .map_err(|e| err(format!("invalid `@every`: {e}")))?;
                    if d < Duration::from_secs(1) {
                        return Err(err("invalid `@every`: the interval must be at least 1s"));
                    }
                    Kind::Every(d)
                }
                _ => {
                    let w = When::parse(arg).ok_or_else(|| {
                        err(format!("invalid `@at`: `{arg}` is not an RFC 3339 timestamp such as 2027-01-01T09:00:00Z"))
                    })?;
                    Kind::At(w)
                }
            }
        } else if e.starts_with(['R', 'r']) && e.contains('/') {
            parse_iso(e)?
        } else {
            let fields: Vec<&str> = e.split_whitespace().collect();
            if !(5..=7).contains(&fields.len()) {
                return Err(err(format!(
                    "expected 5 fields (Unix cron: min hour dom mon dow) or 6-7 fields (Quartz: sec min hour dom mon dow [year]), got {}",
                    fields.len()
                )));
            }
            Kind::Cron(Box::new(cron::parse(&fields)?))
        };
        Ok(Schedule {
            expr: e.to_owned(),
            kind,
        })
    }

    /// The kind: `cron`, `quartz`, `every`, `at` or `iso8601`.
    pub fn kind(&self) -> &'static str {
        match &self.kind {
            Kind::Cron(c) if c.quartz => "quartz",
            Kind::Cron(_) => "cron",
            Kind::Every(_) => "every",
            Kind::At(_) => "at",
            Kind::Iso(_) => "iso8601",
        }
    }

    /// The schedule in words, read in zone `zone` (an IANA name): "At 02:30, Monday through
    /// Friday, in Europe/Berlin", "Every 1h30m, counted from the job's creation".
    pub fn describe(&self, zone: &str) -> String {
        let in_zone = format!(", in {zone}");
        match &self.kind {
            Kind::Cron(c) => describe::cron(c) + &in_zone,
            Kind::Every(d) => format!(
                "Every {}, counted from the job's creation",
                crate::duration::format_duration(*d)
            ),
            Kind::At(When::Instant(t)) => format!("Once, at {t}"),
            Kind::At(When::Civil(dt)) => format!("Once, at {dt}{in_zone}"),
            Kind::Iso(iso) => {
                let from = match &iso.start {
                    Some(When::Instant(t)) => format!("from {t}"),
                    Some(When::Civil(dt)) => format!("from {dt} in {zone}"),
                    None => "from the job's creation".to_owned(),
                };
                match iso.count {
                    Some(0) => "Never (R0: no occurrence; the job runs when triggered)".to_owned(),
                    Some(1) => format!("Once, {}", from.replacen("from", "at", 1)),
                    Some(n) => format!("Every {}, {n} times, {from}", describe::span(&iso.period)),
                    None => format!("Every {}, {from}", describe::span(&iso.period)),
                }
            }
        }
    }

    /// The expression as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// Where a listing of the fire times of a schedule saved at `now` starts (the `after` of
    /// [`Schedule::upcoming`]): an ISO interval without a start begins at `now` itself (a job
    /// saved now runs at once), so just before it; every other form strictly after `now`.
    pub fn listing_after(&self, now: Timestamp) -> Timestamp {
        match &self.kind {
            Kind::Iso(iso) if iso.start.is_none() => now
                .checked_sub(SignedDuration::from_micros(1))
                .unwrap_or(now),
            _ => now,
        }
    }

    /// Up to `count` successive fire times strictly after `after`.
    pub fn upcoming(
        &self,
        after: Timestamp,
        tz: &TimeZone,
        anchor: Timestamp,
        count: usize,
    ) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(count.min(1024));
        let mut t = after;
        while out.len() < count {
            match self.next_after(t, tz, anchor) {
                Some(n) => {
                    out.push(n);
                    t = n;
                }
                None => break,
            }
        }
        out
    }

    /// The first fire time strictly after `after` in zone `tz`; `anchor` (the job's creation) is
    /// the origin of `@every` and the start of an ISO interval without one.
    pub fn next_after(
        &self,
        after: Timestamp,
        tz: &TimeZone,
        anchor: Timestamp,
    ) -> Option<Timestamp> {
        match &self.kind {
            Kind::Cron(c) => next_cron(c, after, tz),
            Kind::Every(d) => {
                let d = i128::try_from(d.as_nanos()).ok()?;
                let since = after.as_nanosecond() - anchor.as_nanosecond();
                let k = if since < 0 { 1 } else { since / d + 1 };
                Timestamp::from_nanosecond(anchor.as_nanosecond().checked_add(k.checked_mul(d)?)?)
                    .ok()
            }
            Kind::At(w) => w.zoned(tz).map(|z| z.timestamp()).filter(|t| *t > after),
            Kind::Iso(iso) => {
                let start = match &iso.start {
                    Some(When::Civil(dt)) => IsoStart::Civil(*dt, dt.to_zoned(tz.clone()).ok()?),
                    Some(When::Instant(t)) => IsoStart::Zoned(t.to_zoned(tz.clone())),
                    None => IsoStart::Zoned(anchor.to_zoned(tz.clone())),
                };
                next_iso(&start, iso.period, iso.count, after)
            }
        }
    }
}

fn parse_iso(e: &str) -> Result<Kind, ScheduleError> {
    let parts: Vec<&str> = e.split('/').collect();
    if parts.len() != 3 {
        return Err(err(format!(
            "invalid ISO 8601 repeating interval `{e}`: expected R[n]/[start]/period"
        )));
    }
    let reps = &parts[0][1..];
    let count = if reps.is_empty() {
        None
    } else {
        Some(reps.parse::<u64>().map_err(|_| {
            err(format!(
                "invalid repetitions `{}`: expected R or Rn",
                parts[0]
            ))
        })?)
    };
    let start = if parts[1].is_empty() {
        None
    } else {
        Some(When::parse(parts[1]).ok_or_else(|| {
            err(format!(
                "invalid start `{}`: expected an ISO 8601 datetime such as 2026-01-01T10:00:00Z",
                parts[1]
            ))
        })?)
    };
    let period: Span = parts[2].parse().map_err(|_| {
        err(format!(
            "invalid period `{}`: expected an ISO 8601 duration such as PT1H or P1D",
            parts[2]
        ))
    })?;
    // A zero period is allowed only when it does not matter: `R0` or `R1` (Chronos's `R1//P`).
    if period.is_negative() || (period.is_zero() && !matches!(count, Some(0 | 1))) {
        return Err(err(format!(
            "invalid period `{}`: must be positive",
            parts[2]
        )));
    }
    // Below a second, a schedule is a busy loop (`PT0.000000001S` would keep the planner busy
    // walking occurrences): every schedule form fires at most once a second.
    let calendar = period.get_years() != 0
        || period.get_months() != 0
        || period.get_weeks() != 0
        || period.get_days() != 0;
    if !period.is_zero()
        && !calendar
        && period
            .total(jiff::Unit::Second)
            .is_ok_and(|secs| secs < 1.0)
    {
        return Err(err(format!(
            "invalid period `{}`: the shortest period is 1 second",
            parts[2]
        )));
    }
    Ok(Kind::Iso(Box::new(Iso {
        count,
        start,
        period,
    })))
}

/// Where an ISO interval starts.
enum IsoStart {
    /// An instant (a start with an offset, or the job's creation).
    Zoned(Zoned),
    /// A wall-clock start read in the job's zone, and that reading. Calendar units are added to
    /// the wall-clock time, not to its reading: a start inside a DST gap (02:30 on a
    /// spring-forward night) is read as 03:30 that day only, later days keep 02:30.
    Civil(DateTime, Zoned),
}

impl IsoStart {
    fn zoned(&self) -> &Zoned {
        match self {
            IsoStart::Zoned(z) | IsoStart::Civil(_, z) => z,
        }
    }
}

/// Occurrence k = start + k·period, computed from the start (no drift). As jiff does for a
/// zoned datetime: calendar units (years to days) move the wall clock, which is then read in the
/// zone; time units (hours and below) are exact durations added to that instant.
fn occurrence(start: &IsoStart, period: Span, k: i64) -> Option<Timestamp> {
    let span = period.checked_mul(k).ok()?;
    match start {
        IsoStart::Zoned(z) => z.checked_add(span).ok().map(|z| z.timestamp()),
        IsoStart::Civil(dt, z) => {
            let calendar = Span::new()
                .years(span.get_years())
                .months(span.get_months())
                .weeks(span.get_weeks())
                .days(span.get_days());
            let time = Span::new()
                .hours(span.get_hours())
                .minutes(span.get_minutes())
                .seconds(span.get_seconds())
                .milliseconds(span.get_milliseconds())
                .microseconds(span.get_microseconds())
                .nanoseconds(span.get_nanoseconds());
            let day = dt.checked_add(calendar).ok()?;
            let read = day.to_zoned(z.time_zone().clone()).ok()?;
            read.checked_add(time).ok().map(|z| z.timestamp())
        }
    }
}

fn next_iso(
    start: &IsoStart,
    period: Span,
    count: Option<u64>,
    after: Timestamp,
) -> Option<Timestamp> {
    let limit = count.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
    if limit == Some(0) {
        return None;
    }
    if period.is_zero() {
        // Only `R1` reaches here: the start is the single occurrence.
        return Some(start.zoned().timestamp()).filter(|t| *t > after);
    }
    // Estimate k from the period's approximate length, then correct.
    let approx = period
        .total((jiff::Unit::Second, start.zoned()))
        .ok()
        .filter(|s| *s > 0.0)?;
    let elapsed = after
        .duration_since(start.zoned().timestamp())
        .as_secs_f64();
    let mut k = if elapsed <= 0.0 {
        0
    } else {
        (elapsed / approx).floor() as i64
    };
    while k > 0 && occurrence(start, period, k).is_none_or(|t| t > after) {
        k -= 1;
    }
    loop {
        if limit.is_some_and(|l| k >= l) {
            return None;
        }
        let t = occurrence(start, period, k)?;
        if t > after {
            return Some(t);
        }
        k += 1;
    }
}

/// The next fire time of a cron expression, segment by segment between zone transitions.
fn next_cron(c: &cron::Cron, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    // Cron resolution is one second: candidates are whole seconds strictly after `after`.
    let secs = after.as_second();
    let lo = Timestamp::from_second(secs.checked_add(1)?).ok()?;
    let horizon = lo.to_zoned(tz.clone()).year().checked_add(HORIZON_YEARS)?;
    let horizon_dt = DateTime::new(horizon.min(9998), 1, 1, 0, 0, 0, 0).ok()?;
    // The segment containing `lo` began at the last transition at or before it.
    let first = tz
        .preceding(lo.checked_add(SignedDuration::from_nanos(1)).ok()?)
        .next();
    let mut seg_start = first.as_ref().map(|t| t.timestamp());
    let mut offset = tz.to_offset(lo);
    let mut prev_offset: Option<Offset> =
        seg_start.map(|s| tz.to_offset(s - SignedDuration::from_nanos(1)));
    loop {
        let next_tr = match seg_start {
            Some(s) => tz.following(s).next(),
            None => tz.following(lo).next(),
        };
        let seg_end = next_tr.as_ref().map(|t| t.timestamp());
        // A forward jump at the start of this segment: fixed-time jobs fire once, at the jump,
        // if a skipped wall-clock time matched.
        if !c.wild
            && let (Some(s), Some(p)) = (seg_start, prev_offset)
            && p < offset
            && s >= lo
        {
            let gap_lo = s.to_zoned(TimeZone::fixed(p)).datetime();
            let gap_hi = s.to_zoned(TimeZone::fixed(offset)).datetime();
            if c.next_civil(gap_lo, gap_hi).is_some() {
                return Some(s);
            }
        }
        let mut wall_lo = lo
            .max(seg_start.unwrap_or(lo))
            .to_zoned(TimeZone::fixed(offset))
            .datetime();
        // After a backward jump, fixed-time jobs skip the repeated wall-clock times.
        if !c.wild
            && let (Some(s), Some(p)) = (seg_start, prev_offset)
            && p > offset
        {
            let repeated_until = s.to_zoned(TimeZone::fixed(p)).datetime();
            wall_lo = wall_lo.max(repeated_until);
        }
        let wall_hi = match seg_end {
            Some(e) => e
                .to_zoned(TimeZone::fixed(offset))
                .datetime()
                .min(horizon_dt),
            None => horizon_dt,
        };
        if wall_lo < wall_hi
            && let Some(w) = c.next_civil(wall_lo, wall_hi)
        {
            return w
                .to_zoned(TimeZone::fixed(offset))
                .ok()
                .map(|z| z.timestamp());
        }
        let (Some(end), Some(tr)) = (seg_end, next_tr) else {
            return None;
        };
        if end.to_zoned(TimeZone::fixed(offset)).datetime() >= horizon_dt {
            return None;
        }
        prev_offset = Some(offset);
        offset = tr.offset();
        seg_start = Some(end);
    }
}
