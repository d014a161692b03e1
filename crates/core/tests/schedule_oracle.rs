//! The schedule engine against an independent brute-force oracle.
//!
//! The oracle shares no code with the engine: it has its own tiny field matcher, written again
//! from cronie's and Quartz's rules, and it scans every minute (every 10 s for Quartz) of UTC
//! time, converting each instant to wall-clock time with jiff.
//!
//! For Unix cron the oracle is a minute-by-minute simulation of cronie's main loop (`cron.c`):
//! a virtual clock in local minutes, the wake-up classified by how far the local clock moved
//! (one minute, a few, 6–180 minutes forward, backward, or more), and each virtual minute
//! checked for *wild* jobs (minute or hour field starting with `*`), *fixed* jobs, or both, as
//! cronie does. For Quartz (seconds, no cronie to imitate) it applies the same rule from what
//! the scan observes: a forward jump at instant t fires a fixed job at t if a skipped wall time
//! matched; a fixed job skips the second pass of a repeated wall time.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use tempora_core::schedule::Schedule;

/// The oracle's view of one expression.
struct Oracle {
    quartz: bool,
    fields: Vec<String>,
    /// cronie's MIN_STAR | HR_STAR.
    wild: bool,
}

fn names(f: usize, quartz: bool) -> Vec<(&'static str, u32)> {
    let months = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let days = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let (month_f, dow_f) = if quartz { (4, 5) } else { (3, 4) };
    if f == month_f {
        months
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i as u32 + 1))
            .collect()
    } else if f == dow_f {
        let base = if quartz { 1 } else { 0 };
        days.iter()
            .enumerate()
            .map(|(i, n)| (*n, i as u32 + base))
            .collect()
    } else {
        vec![]
    }
}

fn num(s: &str, f: usize, quartz: bool) -> u32 {
    let up = s.to_ascii_uppercase();
    names(f, quartz)
        .iter()
        .find(|(n, _)| *n == up)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| s.parse().unwrap())
}

/// Does plain field text (lists, ranges, steps, `*`) contain value `v`?
fn plain(text: &str, v: u32, min: u32, max: u32, f: usize, quartz: bool) -> bool {
    text.split(',').any(|item| {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().unwrap()),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" || range.is_empty() {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a, f, quartz), num(b, f, quartz))
        } else if item.contains('/') {
            (num(range, f, quartz), max)
        } else {
            (num(range, f, quartz), num(range, f, quartz))
        };
        // Walk the (possibly wrapping) range.
        let mut x = lo;
        let mut steps = 0;
        loop {
            if x == v && steps % step == 0 {
                return true;
            }
            if x == hi {
                return false;
            }
            x = if x == max { min } else { x + 1 };
            steps += 1;
        }
    })
}

impl Oracle {
    fn new(expr: &str) -> Oracle {
        let fields: Vec<String> = expr.split_whitespace().map(str::to_owned).collect();
        let quartz = fields.len() >= 6;
        let off = usize::from(quartz);
        Oracle {
            quartz,
            wild: fields[off].starts_with('*') || fields[off + 1].starts_with('*'),
            fields,
        }
    }

    fn day(&self, d: Date) -> bool {
        let (dom, dow) = if self.quartz {
            (&self.fields[3], &self.fields[5])
        } else {
            (&self.fields[2], &self.fields[4])
        };
        let day = d.day() as u32;
        let last = d.days_in_month() as u32;
        let wd = d.weekday().to_sunday_zero_offset() as u32; // 0 = Sunday
        if !self.quartz {
            let dom_ok = plain(dom, day, 1, 31, 2, false);
            let dow_ok =
                plain(dow, wd, 0, 7, 4, false) || (wd == 0 && plain(dow, 7, 0, 7, 4, false));
            return if dom.starts_with('*') || dow.starts_with('*') {
                dom_ok && dow_ok
            } else {
                dom_ok || dow_ok
            };
        }
        let is_weekday = |x: u32| {
            let dd = d.with().day(x as i8).build().unwrap();
            !matches!(dd.weekday().to_sunday_zero_offset(), 0 | 6)
        };
        if dom != "?" && dom != "*" {
            let up = dom.to_ascii_uppercase();
            return if up == "L" {
                day == last
            } else if up == "LW" {
                // the last day that is a weekday
                (1..=last).rev().find(|&x| is_weekday(x)) == Some(day)
            } else if let Some(n) = up.strip_prefix("L-") {
                last > n.parse::<u32>().unwrap() && day == last - n.parse::<u32>().unwrap()
            } else if let Some(n) = up.strip_suffix('W') {
                let n: u32 = n.parse().unwrap();
                if n > last {
                    return false;
                }
                // nearest weekday within the month, preferring the earlier one on ties
                let mut best = None;
                for dist in 0..3i32 {
                    for cand in [n as i32 - dist, n as i32 + dist] {
                        if best.is_none()
                            && cand >= 1
                            && cand <= last as i32
                            && is_weekday(cand as u32)
                        {
                            best = Some(cand as u32);
                        }
                    }
                }
                best == Some(day)
            } else {
                plain(dom, day, 1, 31, 3, true)
            };
        }
        if dow != "?" && dow != "*" {
            let up = dow.to_ascii_uppercase();
            let q = wd + 1; // Quartz numbering
            return if up == "L" {
                q == 7
            } else if let Some(n) = up.strip_suffix('L') {
                q == num(n, 5, true) && day + 7 > last
            } else if let Some((n, k)) = up.split_once('#') {
                q == num(n, 5, true) && (day - 1) / 7 + 1 == k.parse::<u32>().unwrap()
            } else {
                plain(dow, q, 1, 7, 5, true)
            };
        }
        true
    }

    fn wall(&self, dt: DateTime) -> bool {
        let q = self.quartz;
        let (sec_ok, off) = if q {
            (
                plain(&self.fields[0], dt.second() as u32, 0, 59, 0, true),
                1,
            )
        } else {
            (dt.second() == 0, 0)
        };
        let year_ok = !q
            || self.fields.len() < 7
            || plain(&self.fields[6], dt.year() as u32, 1970, 2099, 6, true);
        sec_ok
            && year_ok
            && plain(&self.fields[off], dt.minute() as u32, 0, 59, off, q)
            && plain(&self.fields[off + 1], dt.hour() as u32, 0, 23, off + 1, q)
            && plain(&self.fields[off + 3], dt.month() as u32, 1, 12, off + 3, q)
            && self.day(dt.date())
    }

    /// Fire instants in [from, to), scanning every `step` seconds.
    fn scan(&self, tz: &TimeZone, from: Timestamp, to: Timestamp, step: i64) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut t = from;
        let mut prev_off = tz.to_offset(t - SignedDuration::from_secs(step));
        while t < to {
            let off = tz.to_offset(t);
            let wall = t.to_zoned(tz.clone()).datetime();
            if off > prev_off && !self.wild {
                // Forward jump at t: skipped wall times were [t + prev_off, t + off).
                let mut w = t.to_zoned(TimeZone::fixed(prev_off)).datetime();
                let end = t.to_zoned(TimeZone::fixed(off)).datetime();
                let mut hit = false;
                while w < end {
                    hit |= self.wall(w);
                    w = w.checked_add(SignedDuration::from_secs(step)).unwrap();
                }
                if hit {
                    out.push(t);
                }
            }
            if self.wall(wall) {
                // Second pass of a repeated wall time: is there an earlier instant with this wall time?
                let earlier = tz.to_ambiguous_timestamp(wall);
                let second_pass =
                    earlier.is_ambiguous() && earlier.compatible().map(|e| e < t).unwrap_or(false);
                if !second_pass || self.wild {
                    out.push(t);
                }
            }
            prev_off = off;
            t = t.checked_add(SignedDuration::from_secs(step)).unwrap();
        }
        out.dedup();
        out
    }
}

fn engine(expr: &str, tz: &TimeZone, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
    let s = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut out = Vec::new();
    let mut t = from - SignedDuration::from_nanos(1);
    while let Some(n) = s.next_after(t, tz, from) {
        if n >= to {
            break;
        }
        out.push(n);
        t = n;
    }
    out
}

impl Oracle {
    /// cronie's main loop, one wake-up per real minute in [from, to), with the job's zone as
    /// the system zone. Returns the real minutes at which the job was started.
    fn cronie(&self, tz: &TimeZone, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
        // Local minutes since the epoch, as cronie's clockTime = (now + GMToff) / 60.
        let local = |t: Timestamp| (t.as_second() + i64::from(tz.to_offset(t).seconds())) / 60;
        // find_jobs: does the job match local minute `v` (broken down with gmtime)?
        let matches = |v: i64| {
            let wall = Timestamp::from_second(v * 60)
                .unwrap()
                .to_zoned(TimeZone::UTC)
                .datetime();
            self.wall(wall)
        };
        let mut out = Vec::new();
        let mut t = from - SignedDuration::from_mins(1);
        let mut virtual_time = local(t);
        loop {
            t += SignedDuration::from_mins(1);
            if t >= to {
                break;
            }
            let running = local(t);
            let diff = running - virtual_time;
            let mut fire = false;
            let mut find = |v: i64, do_wild: bool, do_fixed: bool| {
                if matches(v) && ((self.wild && do_wild) || (!self.wild && do_fixed)) {
                    fire = true;
                }
            };
            if diff == 1 {
                virtual_time = running;
                find(virtual_time, true, true);
            } else if !(-180..=180).contains(&diff) {
                // Large: the clock jumped; run everything for now.
                virtual_time = running;
                find(running, true, true);
            } else if diff > 5 {
                // Medium (DST begins): wild jobs for now, fixed jobs for each minute missed.
                find(running, true, false);
                while virtual_time < running {
                    virtual_time += 1;
                    find(virtual_time, false, true);
                }
            } else if diff > 0 {
                // Small: woke late; everything for each virtual minute.
                while virtual_time < running {
                    virtual_time += 1;
                    find(virtual_time, true, true);
                }
            } else {
                // Negative (DST ends): wild jobs only; virtual time waits.
                find(running, true, false);
            }
            if fire {
                out.push(t);
            }
        }
        out
    }
}

fn compare(expr: &str, zone: &str, from: Timestamp, to: Timestamp, step: i64) {
    let tz = TimeZone::get(zone).unwrap();
    let oracle = Oracle::new(expr);
    let want = if oracle.quartz {
        oracle.scan(&tz, from, to, step)
    } else {
        oracle.cronie(&tz, from, to)
    };
    let got = engine(expr, &tz, from, to);
    if want != got {
        let fmt = |v: &[Timestamp]| {
            v.iter()
                .map(|t| t.to_zoned(tz.clone()).to_string())
                .collect::<Vec<_>>()
                .join("\n  ")
        };
        panic!(
            "`{expr}` in {zone} over {from}..{to}\noracle:\n  {}\nengine:\n  {}",
            fmt(&want),
            fmt(&got)
        );
    }
}

const ZONES: [&str; 7] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
];

/// Windows of ±36 h around every transition of 2024–2027 in the zone, plus fixed windows.
fn windows(zone: &str) -> Vec<(Timestamp, Timestamp)> {
    let tz = TimeZone::get(zone).unwrap();
    let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
    let end: Timestamp = "2028-01-01T00:00:00Z".parse().unwrap();
    let mut w: Vec<(Timestamp, Timestamp)> = tz
        .following(start)
        .take_while(|t| t.timestamp() < end)
        .map(|t| {
            let at = t.timestamp();
            (
                at - SignedDuration::from_hours(36),
                at + SignedDuration::from_hours(36),
            )
        })
        .collect();
    for (a, b) in [
        ("2028-02-27T00:00:00Z", "2028-03-02T00:00:00Z"),
        ("2026-12-30T00:00:00Z", "2027-01-02T00:00:00Z"),
        ("2026-04-29T12:00:00Z", "2026-05-01T12:00:00Z"),
    ] {
        w.push((a.parse().unwrap(), b.parse().unwrap()));
    }
    w
}

const UNIX: [&str; 24] = [
    "* 2 * * *",
    "*/15 2 * * *",
    "30 0-23/2 * * *",
    "0 3 * * *",
    "15 2-3 * * *",
    "*/20 1-3 * * *",
    "30 2 * * *",
    "0 * * * *",
    "*/30 * * * *",
    "15 1 * * *",
    "0 0 * * *",
    "45 2 * * 0",
    "0 0 1,15 * 1",
    "0 0 */2 * 1",
    "0 1-3 * * *",
    "0 */3 * * *",
    "5 0 * * *",
    "59 23 * * *",
    "0 0 29 2 *",
    "45 2,3 * * *",
    "0,30 0-4 * * *",
    "0 2 * * 1-5",
    "0 12 * 2,3 SUN",
    "10 */2 * * MON-FRI",
];

#[test]
fn unix_cron_matches_the_oracle_across_dst() {
    for zone in ZONES {
        for (from, to) in windows(zone) {
            for expr in UNIX {
                compare(expr, zone, from, to, 60);
            }
        }
    }
}

const QUARTZ: [&str; 10] = [
    "0 30 2 * * ?",
    "0 0/30 * * * ?",
    "30 15 1 ? * *",
    "0 0 0 * * ?",
    "0 45 2 ? * SUN",
    "0,30 0 1-3 * * ?",
    "0 0 22-2 * * ?",
    "20 0 */2 * * ?",
    "0 0 2 L * ?",
    "0 15 0 ? * 1#1",
];

#[test]
fn quartz_matches_the_oracle_across_dst() {
    for zone in ZONES {
        for (from, to) in windows(zone).into_iter().step_by(2) {
            for expr in QUARTZ {
                compare(expr, zone, from, to, 10);
            }
        }
    }
}

#[test]
fn quartz_day_rules_match_the_oracle_for_years() {
    let from: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let to: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let tz = TimeZone::UTC;
    for dom_dow in [
        "L * ?",
        "L-3 * ?",
        "L-30 * ?",
        "15W * ?",
        "1W * ?",
        "31W * ?",
        "LW * ?",
        "? * 6L",
        "? * 2#1",
        "? * 6#5",
        "? * 1#3",
        "? * L",
        "? * MON-WED",
        "1,15,31 * ?",
        "? * FRI-MON",
        "29 2 ?",
        "25-5 * ?",
    ] {
        let expr = format!("0 0 12 {dom_dow}");
        let oracle = Oracle::new(&expr);
        let mut want = Vec::new();
        let mut d = Date::new(2026, 1, 1).unwrap();
        while d < Date::new(2030, 1, 1).unwrap() {
            let noon = d.to_datetime(jiff::civil::time(12, 0, 0, 0));
            if oracle.wall(noon) {
                want.push(noon.to_zoned(tz.clone()).unwrap().timestamp());
            }
            d = d.tomorrow().unwrap();
        }
        assert_eq!(engine(&expr, &tz, from, to), want, "{expr}");
    }
}

fn field(min: u32, max: u32) -> impl Strategy<Value = String> {
    let v = move || min..=max;
    prop_oneof![
        Just("*".to_owned()),
        v().prop_map(|a| a.to_string()),
        (v(), v()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1u32..=(max - min + 1).min(12)).prop_map(|s| format!("*/{s}")),
        (v(), v(), 1u32..5).prop_map(|(a, b, s)| format!("{}-{}/{s}", a.min(b), a.max(b))),
        proptest::collection::vec(v(), 1..4).prop_map(|xs| xs
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random Unix expressions agree with the oracle over random DST windows in random zones.
    #[test]
    fn random_unix_cron_matches_the_oracle(
        m in field(0, 59), h in field(0, 23), dom in field(1, 31), mon in field(1, 12), dow in field(0, 7),
        zone in 0usize..ZONES.len(), pick in 0usize..1000,
    ) {
        let expr = format!("{m} {h} {dom} {mon} {dow}");
        let w = windows(ZONES[zone]);
        let (from, to) = w[pick % w.len()];
        compare(&expr, ZONES[zone], from, to, 60);
    }

    /// Whatever the input, parsing never panics, and the next fire time is strictly later.
    #[test]
    fn parse_never_panics_and_next_is_later(s in "\\PC{0,40}", t in 0i64..4_000_000_000) {
        if let Ok(sched) = Schedule::parse(&s) {
            let after = Timestamp::from_second(t).unwrap();
            if let Some(n) = sched.next_after(after, &TimeZone::UTC, after) {
                prop_assert!(n > after);
            }
        }
    }

    /// next_after is monotone and stable: asking just before a fire time gives that fire time.
    #[test]
    fn next_after_is_consistent(expr in prop::sample::select(UNIX.to_vec()), zone in 0usize..ZONES.len(), t in 1_700_000_000i64..1_900_000_000) {
        let tz = TimeZone::get(ZONES[zone]).unwrap();
        let s = Schedule::parse(expr).unwrap();
        let after = Timestamp::from_second(t).unwrap();
        let n1 = s.next_after(after, &tz, after).unwrap();
        let n2 = s.next_after(n1, &tz, after).unwrap();
        prop_assert!(n1 > after && n2 > n1);
        prop_assert_eq!(s.next_after(n1 - SignedDuration::from_nanos(1), &tz, after), Some(n1));
    }
}

#[test]
fn iso8601_intervals_use_calendar_arithmetic() {
    let utc = TimeZone::UTC;
    let s = Schedule::parse("R3/2026-01-31T10:00:00Z/P1M").unwrap();
    let got: Vec<String> = s
        .upcoming(
            "2026-01-01T00:00:00Z".parse().unwrap(),
            &utc,
            Timestamp::UNIX_EPOCH,
            10,
        )
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        got,
        [
            "2026-01-31T10:00:00Z",
            "2026-02-28T10:00:00Z",
            "2026-03-31T10:00:00Z"
        ]
    );
    // A daily interval keeps its wall-clock time across DST in the job's zone.
    let ny = TimeZone::get("America/New_York").unwrap();
    let s = Schedule::parse("R/2026-03-06T09:30:00/P1D").unwrap();
    let got: Vec<String> = s
        .upcoming(
            "2026-03-06T00:00:00Z".parse().unwrap(),
            &ny,
            Timestamp::UNIX_EPOCH,
            4,
        )
        .iter()
        .map(|t| t.to_zoned(ny.clone()).datetime().to_string())
        .collect();
    assert_eq!(
        got,
        [
            "2026-03-06T09:30:00",
            "2026-03-07T09:30:00",
            "2026-03-08T09:30:00",
            "2026-03-09T09:30:00"
        ]
    );
    // A wall-clock start inside a DST gap: that day's occurrence is read after the jump, later
    // days keep the wall-clock time; hours stay exact durations from the start.
    let wall = |expr: &str, count| -> Vec<String> {
        Schedule::parse(expr)
            .unwrap()
            .upcoming(
                "2027-03-13T00:00:00Z".parse().unwrap(),
                &ny,
                Timestamp::UNIX_EPOCH,
                count,
            )
            .iter()
            .map(|t| t.to_zoned(ny.clone()).to_string())
            .collect()
    };
    assert_eq!(
        wall("R/2027-03-14T02:30:00/P1D", 3),
        [
            "2027-03-14T03:30:00-04:00[America/New_York]",
            "2027-03-15T02:30:00-04:00[America/New_York]",
            "2027-03-16T02:30:00-04:00[America/New_York]"
        ]
    );
    assert_eq!(
        wall("R/2027-03-14T02:30:00/P1DT12H", 3),
        [
            "2027-03-14T03:30:00-04:00[America/New_York]",
            "2027-03-15T14:30:00-04:00[America/New_York]",
            "2027-03-17T02:30:00-04:00[America/New_York]"
        ]
    );
    assert_eq!(
        wall("R3/2027-03-14T02:30:00/PT12H", 3),
        [
            "2027-03-14T03:30:00-04:00[America/New_York]",
            "2027-03-14T15:30:00-04:00[America/New_York]",
            "2027-03-15T03:30:00-04:00[America/New_York]"
        ]
    );
    // No start: from the anchor. R0 never fires.
    let anchor: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
    let s = Schedule::parse("R//PT90M").unwrap();
    assert_eq!(
        s.next_after(anchor, &utc, anchor).unwrap().to_string(),
        "2026-05-01T01:30:00Z"
    );
    assert_eq!(
        Schedule::parse("R0//PT1M")
            .unwrap()
            .next_after(anchor, &utc, anchor),
        None
    );
    // Far from the start, still exact.
    let s = Schedule::parse("R/2020-01-31T00:00:00Z/P1M").unwrap();
    assert_eq!(
        s.next_after("2026-02-10T00:00:00Z".parse().unwrap(), &utc, anchor)
            .unwrap()
            .to_string(),
        "2026-02-28T00:00:00Z"
    );
    // Starts are kept to the microsecond (the store's precision), so an occurrence equals its
    // stored record.
    let s = Schedule::parse("R1/2026-11-23T00:59:14.009710718Z/PT1S").unwrap();
    let before: Timestamp = "2026-11-23T00:59:00Z".parse().unwrap();
    assert_eq!(
        s.next_after(before, &utc, anchor).unwrap().to_string(),
        "2026-11-23T00:59:14.00971Z"
    );
    let s = Schedule::parse("R1/2026-11-23T00:59:14.009710718/PT1S").unwrap();
    assert_eq!(
        s.next_after(before, &utc, anchor).unwrap().as_nanosecond() % 1000,
        0
    );
}

#[test]
fn every_and_at() {
    let utc = TimeZone::UTC;
    let anchor: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
    let s = Schedule::parse("@every 90s").unwrap();
    assert_eq!(
        s.next_after(anchor, &utc, anchor).unwrap().to_string(),
        "2026-05-01T00:01:30Z"
    );
    let t: Timestamp = "2026-05-01T00:10:00Z".parse().unwrap();
    assert_eq!(
        s.next_after(t, &utc, anchor).unwrap().to_string(),
        "2026-05-01T00:10:30Z"
    );
    let at = Schedule::parse("@at 2027-01-01T09:00:00+01:00").unwrap();
    assert_eq!(
        at.next_after(anchor, &utc, anchor).unwrap().to_string(),
        "2027-01-01T08:00:00Z"
    );
    assert_eq!(
        at.next_after("2027-06-01T00:00:00Z".parse().unwrap(), &utc, anchor),
        None
    );
    let ny = TimeZone::get("America/New_York").unwrap();
    let civil = Schedule::parse("@at 2027-01-01T09:00:00").unwrap();
    assert_eq!(
        civil.next_after(anchor, &ny, anchor).unwrap().to_string(),
        "2027-01-01T14:00:00Z"
    );
}

#[test]
fn errors_name_the_field() {
    for (expr, needle) in [
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day-of-week"),
        ("* * * FOO *", "month"),
        ("5-2 * * * *", "minute"),
        ("*/0 * * * *", "minute"),
        ("* * L * *", "Quartz"),
        ("60 * * * * ?", "second"),
        ("0 0 0 ? * * 1969", "year"),
        ("0 0 12 1 * 2", "day-of-week"),
        ("0 0 12 ? * 2#6", "day-of-week"),
        ("* * *", "5 fields"),
        ("@reboot", "@reboot"),
        ("@every 0s", "@every"),
        ("@at tomorrow", "@at"),
        ("R/2026-01-01T00:00:00Z/P0D", "period"),
        // Shorter than a second: a busy loop, refused in every form.
        ("R/2020-01-01T00:00:00Z/PT0.000000001S", "1 second"),
        ("R/2020-01-01T00:00:00Z/PT0.5S", "1 second"),
        ("@every 500ms", "at least 1s"),
        ("R5/garbage/PT1M", "start"),
    ] {
        let e = Schedule::parse(expr).unwrap_err();
        assert!(e.message.contains(needle), "`{expr}`: {}", e.message);
    }
}
