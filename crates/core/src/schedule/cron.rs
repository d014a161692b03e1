//! Cron expressions: Unix (5 fields, cronie) and Quartz (6–7 fields), parsed into bitsets, and
//! the search for the next matching wall-clock time inside a span of civil time.

use jiff::civil::{Date, DateTime, Time, Weekday};

use super::ScheduleError;

/// A set of small integers (0..192).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Bits(pub(super) [u64; 3]);

impl Bits {
    fn set(&mut self, v: u32) {
        self.0[(v / 64) as usize] |= 1 << (v % 64);
    }
    pub(crate) fn has(&self, v: u32) -> bool {
        v < 192 && self.0[(v / 64) as usize] & (1 << (v % 64)) != 0
    }
    /// Smallest member ≥ `from`, below `end`.
    fn next(&self, from: u32, end: u32) -> Option<u32> {
        (from..end.min(192)).find(|&v| self.has(v))
    }
    fn is_empty(&self) -> bool {
        self.0 == [0; 3]
    }
}

/// Day-of-month specification.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Dom {
    Set(Bits),
    /// `L` (0) or `L-n`.
    LastMinus(u8),
    /// `nW`.
    NearestWeekday(u8),
    /// `LW`.
    LastWeekday,
}

/// Day-of-week specification (0 = Sunday).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Dow {
    Set(Bits),
    /// `nL`: last such weekday of the month.
    Last(u8),
    /// `n#k`: k-th such weekday of the month.
    Nth(u8, u8),
}

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cron {
    pub(crate) quartz: bool,
    pub(super) secs: Bits,
    pub(super) mins: Bits,
    pub(super) hours: Bits,
    pub(super) dom: Dom,
    pub(super) months: Bits,
    pub(super) dow: Dow,
    /// Allowed years (sorted), when the Quartz year field restricts.
    pub(super) years: Option<Vec<u32>>,
    /// Which of dom/dow restrict days, and how they combine.
    pub(super) dom_active: bool,
    pub(super) dow_active: bool,
    pub(super) either: bool,
    /// cronie's "wildcard" job: the minute or the hour field starts with `*` (its `MIN_STAR` /
    /// `HR_STAR` flags). It fires on both passes of a repeated hour and never for a skipped one.
    pub(crate) wild: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: Option<(&'static [&'static str], u32)>,
    /// Ranges may wrap around (Quartz).
    wrap: bool,
}

fn bad(f: &Field, tok: &str, why: impl std::fmt::Display) -> ScheduleError {
    ScheduleError {
        message: format!("invalid {} field `{tok}`: {why}", f.name),
    }
}

fn value(f: &Field, whole: &str, s: &str) -> Result<u32, ScheduleError> {
    if let Some((names, base)) = f.names {
        let up = s.to_ascii_uppercase();
        if let Some(i) = names.iter().position(|n| *n == up) {
            return Ok(i as u32 + base);
        }
    }
    let v: u32 = s.parse().map_err(|_| {
        if s.is_empty() {
            bad(f, whole, "empty value")
        } else {
            bad(f, whole, format!("`{s}` is not a number or name"))
        }
    })?;
    if v < f.min || v > f.max {
        return Err(bad(
            f,
            whole,
            format!("value {v} out of range {}-{}", f.min, f.max),
        ));
    }
    Ok(v)
}

/// Parse a list of `*`, values, ranges and steps into a bitset.
fn parse_set(f: &Field, tok: &str) -> Result<Bits, ScheduleError> {
    let mut bits = Bits::default();
    for v in parse_values(f, tok)? {
        bits.set(v);
    }
    Ok(bits)
}

/// Parse a list of `*`, values, ranges and steps into the values it names.
fn parse_values(f: &Field, tok: &str) -> Result<Vec<u32>, ScheduleError> {
    let mut bits = Vec::new();
    for item in tok.split(',') {
        if item.is_empty() {
            return Err(bad(f, tok, "empty list item"));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| bad(f, tok, format!("step `{s}` is not a number")))?;
                if step == 0 {
                    return Err(bad(f, tok, "step must be at least 1"));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" || (range.is_empty() && step.is_some()) {
            (f.min, f.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(f, tok, a)?, value(f, tok, b)?);
            if b < a && !f.wrap {
                return Err(bad(f, tok, format!("range {a}-{b} is reversed")));
            }
            (a, b)
        } else {
            let a = value(f, tok, range)?;
            // `a/n` runs from a to the maximum.
            (a, if step.is_some() { f.max } else { a })
        };
        let step = step.unwrap_or(1);
        let span = f.max - f.min + 1;
        let len = if hi >= lo { hi - lo } else { hi + span - lo };
        let mut k = 0;
        while k <= len {
            let v = lo + k;
            bits.push(if v > f.max { v - span } else { v });
            k += step;
        }
    }
    bits.sort_unstable();
    bits.dedup();
    Ok(bits)
}

fn has_quartz_only(tok: &str) -> bool {
    tok.contains(['?', 'L', 'W', '#', 'l', 'w'])
        && !tok.to_ascii_uppercase().split([',', '-', '/']).all(|p| {
            MONTHS.contains(&p)
                || DAYS.contains(&p)
                || p.chars().all(|c| c.is_ascii_digit() || c == '*')
        })
}

/// Parse a 5-field (Unix) or 6/7-field (Quartz) expression.
pub(crate) fn parse(fields: &[&str]) -> Result<Cron, ScheduleError> {
    let quartz = fields.len() >= 6;
    let (sec, rest) = if quartz {
        (Some(fields[0]), &fields[1..])
    } else {
        (None, fields)
    };
    let f = |name, min, max| Field {
        name,
        min,
        max,
        names: None,
        wrap: quartz,
    };
    if !quartz {
        for (tok, name) in
            rest.iter()
                .zip(["minute", "hour", "day-of-month", "month", "day-of-week"])
        {
            if has_quartz_only(tok) {
                return Err(ScheduleError {
                    message: format!(
                        "invalid {name} field `{tok}`: `?`, `L`, `W` and `#` are Quartz syntax; use the 6-field form `sec min hour dom mon dow`"
                    ),
                });
            }
        }
    }
    let secs = match sec {
        Some(s) => parse_set(&f("second", 0, 59), s)?,
        None => {
            let mut b = Bits::default();
            b.set(0);
            b
        }
    };
    let mins = parse_set(&f("minute", 0, 59), rest[0])?;
    let hours = parse_set(&f("hour", 0, 23), rest[1])?;
    let months = parse_set(
        &Field {
            name: "month",
            min: 1,
            max: 12,
            names: Some((&MONTHS, 1)),
            wrap: quartz,
        },
        rest[3],
    )?;
    let wild = rest[0].starts_with('*') || rest[1].starts_with('*');
    let (dom_tok, dow_tok) = (rest[2], rest[4]);
    let years = match fields.get(6) {
        Some(y) if *y != "*" && *y != "?" => Some(parse_values(&f("year", 1970, 2099), y)?),
        _ => None,
    };
    if quartz {
        parse_quartz_days(dom_tok, dow_tok).map(|(dom, dow, dom_active, dow_active)| Cron {
            quartz,
            secs,
            mins,
            hours,
            dom,
            months,
            dow,
            years,
            dom_active,
            dow_active,
            either: false,
            wild,
        })
    } else {
        let dom = parse_set(&f("day-of-month", 1, 31), dom_tok)?;
        let dow_raw = parse_set(
            &Field {
                name: "day-of-week",
                min: 0,
                max: 7,
                names: Some((&DAYS, 0)),
                wrap: false,
            },
            dow_tok,
        )?;
        let mut dow = Bits::default();
        for d in 0..=7 {
            if dow_raw.has(d) {
                dow.set(d % 7);
            }
        }
        // cronie: a field whose text starts with `*` does not restrict (AND); else OR.
        let dom_star = dom_tok.starts_with('*');
        let dow_star = dow_tok.starts_with('*');
        Ok(Cron {
            quartz,
            secs,
            mins,
            hours,
            dom: Dom::Set(dom),
            months,
            dow: Dow::Set(dow),
            years,
            dom_active: true,
            dow_active: true,
            either: !dom_star && !dow_star,
            wild,
        })
    }
}

fn parse_quartz_days(
    dom_tok: &str,
    dow_tok: &str,
) -> Result<(Dom, Dow, bool, bool), ScheduleError> {
    let dom_f = Field {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: None,
        wrap: true,
    };
    let dow_f = Field {
        name: "day-of-week",
        min: 1,
        max: 7,
        names: Some((&DAYS, 1)),
        wrap: true,
    };
    let dom_any = dom_tok == "?" || dom_tok == "*";
    let dow_any = dow_tok == "?" || dow_tok == "*";
    if !dom_any && !dow_any {
        return Err(ScheduleError {
            message: format!(
                "invalid day-of-month field `{dom_tok}` with day-of-week field `{dow_tok}`: Quartz needs `?` in one of them (restricting both is not supported)"
            ),
        });
    }
    if dom_tok == "?" && dow_tok == "?" {
        return Err(ScheduleError {
            message: "invalid day-of-month field `?`: `?` may stand in day-of-month or day-of-week, not both".into(),
        });
    }
    let up = dom_tok.to_ascii_uppercase();
    let dom = if dom_any {
        Dom::Set(Bits::default())
    } else if up == "L" {
        Dom::LastMinus(0)
    } else if up == "LW" {
        Dom::LastWeekday
    } else if let Some(n) = up.strip_prefix("L-") {
        let n: u8 = n
            .parse()
            .ok()
            .filter(|&n| n <= 30)
            .ok_or_else(|| bad(&dom_f, dom_tok, "`L-n` needs n from 0 to 30"))?;
        Dom::LastMinus(n)
    } else if let Some(n) = up
        .strip_suffix('W')
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    {
        let n = value(&dom_f, dom_tok, n)?;
        Dom::NearestWeekday(n as u8)
    } else if up.contains(['L', 'W', '?', '#']) {
        return Err(bad(
            &dom_f,
            dom_tok,
            "`L`, `L-n`, `nW` and `LW` must stand alone",
        ));
    } else {
        Dom::Set(parse_set(&dom_f, dom_tok)?)
    };
    let upw = dow_tok.to_ascii_uppercase();
    let last_of = upw
        .strip_suffix('L')
        .filter(|n| !n.is_empty() && (n.chars().all(|c| c.is_ascii_digit()) || DAYS.contains(n)));
    let dow = if dow_any {
        Dow::Set(Bits::default())
    } else if upw == "L" {
        Dow::Set({
            let mut b = Bits::default();
            b.set(6);
            b
        })
    } else if let Some(n) = last_of {
        Dow::Last((value(&dow_f, dow_tok, n)? - 1) as u8)
    } else if let Some((n, k)) = upw.split_once('#') {
        let n = value(&dow_f, dow_tok, n)?;
        let k: u8 = k
            .parse()
            .ok()
            .filter(|k| (1..=5).contains(k))
            .ok_or_else(|| bad(&dow_f, dow_tok, "`n#k` needs k from 1 to 5"))?;
        Dow::Nth((n - 1) as u8, k)
    } else {
        let raw = parse_set(&dow_f, dow_tok)?;
        let mut b = Bits::default();
        for d in 1..=7 {
            if raw.has(d) {
                b.set(d - 1);
            }
        }
        Dow::Set(b)
    };
    Ok((dom, dow, !dom_any, !dow_any))
}

fn weekday0(d: Date) -> u8 {
    d.weekday().to_sunday_zero_offset() as u8
}

impl Cron {
    fn dom_matches(&self, d: Date) -> bool {
        let day = d.day() as u8;
        let last = d.days_in_month() as u8;
        match &self.dom {
            Dom::Set(b) => b.has(u32::from(day)),
            Dom::LastMinus(n) => last > *n && day == last - n,
            Dom::LastWeekday => {
                let l = d.last_of_month();
                let target = match l.weekday() {
                    Weekday::Saturday => last - 1,
                    Weekday::Sunday => last - 2,
                    _ => last,
                };
                day == target
            }
            Dom::NearestWeekday(n) => {
                if *n > last {
                    return false;
                }
                let Ok(base) = d.with().day(*n as i8).build() else {
                    return false;
                };
                let target = match base.weekday() {
                    Weekday::Saturday if *n == 1 => 3,
                    Weekday::Saturday => n - 1,
                    Weekday::Sunday if *n == last => n - 2,
                    Weekday::Sunday => n + 1,
                    _ => *n,
                };
                day == target
            }
        }
    }

    fn dow_matches(&self, d: Date) -> bool {
        let wd = weekday0(d);
        match &self.dow {
            Dow::Set(b) => b.has(u32::from(wd)),
            Dow::Last(n) => wd == *n && d.day() + 7 > d.days_in_month(),
            Dow::Nth(n, k) => wd == *n && (d.day() as u8 - 1) / 7 + 1 == *k,
        }
    }

    fn day_matches(&self, d: Date) -> bool {
        if self.quartz {
            if self.dom_active {
                self.dom_matches(d)
            } else if self.dow_active {
                self.dow_matches(d)
            } else {
                true
            }
        } else if self.either {
            self.dom_matches(d) || self.dow_matches(d)
        } else {
            self.dom_matches(d) && self.dow_matches(d)
        }
    }

    /// First matching (h, m, s) at or after `t` within a day.
    fn time_from(&self, t: Time) -> Option<Time> {
        let (h0, m0, s0) = (t.hour() as u32, t.minute() as u32, t.second() as u32);
        let mut h = self.hours.next(h0, 24)?;
        loop {
            let m_from = if h == h0 { m0 } else { 0 };
            let mut m = self.mins.next(m_from, 60);
            while let Some(mm) = m {
                let s_from = if h == h0 && mm == m0 { s0 } else { 0 };
                if let Some(s) = self.secs.next(s_from, 60) {
                    return Time::new(h as i8, mm as i8, s as i8, 0).ok();
                }
                m = self.mins.next(mm + 1, 60);
            }
            h = self.hours.next(h + 1, 24)?;
        }
    }

    /// The first matching wall-clock time in `[lo, hi)` (civil time, no zone).
    pub(crate) fn next_civil(&self, lo: DateTime, hi: DateTime) -> Option<DateTime> {
        if self.secs.is_empty() || self.mins.is_empty() || self.hours.is_empty() {
            return None;
        }
        let mut date = lo.date();
        let mut from = lo.time();
        while date <= hi.date() {
            if let Some(years) = &self.years
                && years.binary_search(&(date.year() as u32)).is_err()
            {
                let next_year = years.iter().find(|&&y| y > date.year() as u32)?;
                date = Date::new(*next_year as i16, 1, 1).ok()?;
                from = Time::midnight();
                continue;
            }
            if !self.months.has(date.month() as u32) {
                date = date.last_of_month().tomorrow().ok()?;
                from = Time::midnight();
                continue;
            }
            if self.day_matches(date)
                && let Some(t) = self.time_from(from)
            {
                let dt = date.to_datetime(t);
                return (dt < hi).then_some(dt);
            }
            date = date.tomorrow().ok()?;
            from = Time::midnight();
        }
        None
    }
}
