//! A schedule in words ("At 02:30, Monday through Friday, in Europe/Berlin"), for the schedule
//! preview, `tempora schedule explain` and the job views. Cron forms are described from their
//! parsed fields, so what is said is what fires: Quartz's `L`, `W` and `#`, cronie's "day of
//! month *or* day of week", steps and ranges.

use super::cron::{Bits, Cron, Dom, Dow};

const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const ORDINALS: [&str; 5] = ["first", "second", "third", "fourth", "fifth"];

/// At most this many times of day are listed one by one ("At 09:00, 12:00 and 18:00").
const MAX_LISTED_TIMES: usize = 6;

fn members(b: &Bits, min: u32, max: u32) -> Vec<u32> {
    (min..=max).filter(|&v| b.has(v)).collect()
}

/// `a, b and c`.
fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// How a subset of `min..=max` reads: every member, a step from some start to the end, or a
/// list in which runs of three or more are ranges.
enum Set {
    All,
    Step { start: u32, step: u32 },
    List(Vec<(u32, u32)>),
}

fn shape(values: &[u32], min: u32, max: u32) -> Set {
    if values.len() as u32 == max - min + 1 {
        return Set::All;
    }
    if let [first, second, ..] = values {
        let step = second - first;
        let regular = values.windows(2).all(|w| w[1] - w[0] == step);
        if step > 1 && regular && values.len() > 2 && values[values.len() - 1] + step > max {
            return Set::Step {
                start: *first,
                step,
            };
        }
    }
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &v in values {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == v => *end = v,
            _ => runs.push((v, v)),
        }
    }
    // A run of two reads better as two items.
    let mut out = Vec::new();
    for (a, b) in runs {
        if b == a + 1 {
            out.push((a, a));
            out.push((b, b));
        } else {
            out.push((a, b));
        }
    }
    Set::List(out)
}

fn list(runs: &[(u32, u32)], name: &dyn Fn(u32) -> String) -> String {
    let items: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                name(a)
            } else {
                format!("{} through {}", name(a), name(b))
            }
        })
        .collect();
    join(&items)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 { one } else { many }.to_owned()
}

/// The time-of-day part: "At 02:30", "Every 15 minutes, between 09:00 and 17:59", ….
fn time_part(c: &Cron) -> (String, bool) {
    let secs = members(&c.secs, 0, 59);
    let mins = members(&c.mins, 0, 59);
    let hours = members(&c.hours, 0, 23);
    let listed = secs.len() == 1 && mins.len() * hours.len() <= MAX_LISTED_TIMES;
    if listed {
        let mut times = Vec::new();
        for h in &hours {
            for m in &mins {
                times.push(if secs[0] == 0 {
                    format!("{h:02}:{m:02}")
                } else {
                    format!("{h:02}:{m:02}:{:02}", secs[0])
                });
            }
        }
        return (format!("At {}", join(&times)), true);
    }
    let number = |v: u32| v.to_string();
    let mut parts = Vec::new();
    let sec_all = matches!(shape(&secs, 0, 59), Set::All);
    match shape(&secs, 0, 59) {
        Set::All => parts.push("every second".to_owned()),
        Set::Step { start, step } => parts.push(step_words(start, step, "seconds")),
        Set::List(runs) if secs != [0] => parts.push(format!(
            "at {} {}",
            plural(secs.len(), "second", "seconds"),
            list(&runs, &number)
        )),
        Set::List(_) => {}
    }
    let minute_at = match shape(&mins, 0, 59) {
        Set::All if !sec_all && parts.is_empty() => {
            parts.push("every minute".to_owned());
            false
        }
        Set::All => false,
        Set::Step { start, step } => {
            parts.push(step_words(start, step, "minutes"));
            false
        }
        Set::List(runs) => {
            parts.push(format!(
                "at {} {}",
                plural(mins.len(), "minute", "minutes"),
                list(&runs, &number)
            ));
            true
        }
    };
    match shape(&hours, 0, 23) {
        Set::All if minute_at => parts.push("past every hour".to_owned()),
        Set::All => {}
        Set::Step { start, step } if minute_at => {
            parts.push(format!("past every {step} hours{}", from_hour(start)))
        }
        Set::Step { start, step } => parts.push(format!(
            "in every {} hour{}",
            ordinal(step),
            from_hour(start)
        )),
        Set::List(runs) => match runs.as_slice() {
            [(a, b)] if a != b => parts.push(format!("between {a:02}:00 and {b:02}:59")),
            _ => parts.push(format!(
                "during {} {}",
                plural(hours.len(), "hour", "hours"),
                list(&runs, &|h| format!("{h:02}"))
            )),
        },
    }
    let mut text = parts.join(", ");
    if let Some(first) = text.get(..1) {
        text = first.to_ascii_uppercase() + &text[1..];
    }
    // "past every 2 hours" reads as a place in the hour, not a second list.
    (text.replace(", past", " past"), false)
}

fn from_hour(start: u32) -> String {
    if start == 0 {
        String::new()
    } else {
        format!(" from {start:02}:00")
    }
}

/// `2nd`, `3rd`, `11th`, `21st`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn step_words(start: u32, step: u32, unit: &str) -> String {
    if start == 0 {
        format!("every {step} {unit}")
    } else {
        format!("every {step} {unit} from {start}")
    }
}

fn dom_part(c: &Cron) -> Option<String> {
    if !c.dom_active {
        return None;
    }
    Some(match &c.dom {
        Dom::Set(b) => {
            let days = members(b, 1, 31);
            match shape(&days, 1, 31) {
                Set::All => return None,
                Set::Step { start, step } => {
                    format!("every {step} days of the month from day {start}")
                }
                Set::List(runs) => format!(
                    "on {} {} of the month",
                    plural(days.len(), "day", "days"),
                    list(&runs, &|d| d.to_string())
                ),
            }
        }
        Dom::LastMinus(0) => "on the last day of the month".to_owned(),
        Dom::LastMinus(n) => format!(
            "{n} {} before the last day of the month",
            plural(usize::from(*n), "day", "days")
        ),
        Dom::NearestWeekday(n) => {
            format!("on the weekday nearest day {n} of the month (never in another month)")
        }
        Dom::LastWeekday => "on the last weekday of the month".to_owned(),
    })
}

fn dow_part(c: &Cron) -> Option<String> {
    if !c.dow_active {
        return None;
    }
    let day = |d: u32| DAY_NAMES[(d % 7) as usize].to_owned();
    Some(match &c.dow {
        Dow::Set(b) => {
            // Monday first, Sunday last (7), as people read a week.
            let mut days: Vec<u32> = members(b, 0, 6)
                .into_iter()
                .map(|d| if d == 0 { 7 } else { d })
                .collect();
            days.sort_unstable();
            match shape(&days, 1, 7) {
                Set::All => return None,
                // Steps of weekdays read better as the days themselves.
                Set::Step { .. } => format!(
                    "on {}",
                    join(&days.iter().map(|&d| day(d)).collect::<Vec<_>>())
                ),
                Set::List(runs) if runs.len() == 1 && runs[0].0 != runs[0].1 => list(&runs, &day),
                Set::List(runs) => format!("on {}", list(&runs, &day)),
            }
        }
        Dow::Last(d) => format!("on the last {} of the month", day(u32::from(*d))),
        Dow::Nth(d, k) => format!(
            "on the {} {} of the month",
            ORDINALS
                .get(usize::from(*k).saturating_sub(1))
                .copied()
                .unwrap_or("fifth"),
            day(u32::from(*d))
        ),
    })
}

fn month_part(c: &Cron) -> Option<String> {
    let months = members(&c.months, 1, 12);
    match shape(&months, 1, 12) {
        Set::All => None,
        Set::Step { .. } => Some(format!(
            "in {}",
            join(
                &months
                    .iter()
                    .map(|&m| MONTH_NAMES[(m - 1) as usize].to_owned())
                    .collect::<Vec<_>>()
            )
        )),
        Set::List(runs) => Some(format!(
            "in {}",
            list(&runs, &|m| MONTH_NAMES[(m - 1) as usize].to_owned())
        )),
    }
}

fn year_part(c: &Cron) -> Option<String> {
    let years = c.years.as_ref()?;
    let (first, last) = (*years.first()?, *years.last()?);
    let offsets: Vec<u32> = years.iter().map(|y| y - first).collect();
    let runs: Vec<(u32, u32)> = match shape(&offsets, 0, last - first) {
        Set::List(runs) => runs
            .into_iter()
            .map(|(a, b)| (a + first, b + first))
            .collect(),
        Set::All => vec![(first, last)],
        Set::Step { step, .. } if years.len() > 5 => {
            return Some(format!("every {step} years from {first} through {last}"));
        }
        Set::Step { .. } => years.iter().map(|&y| (y, y)).collect(),
    };
    Some(format!("in {}", list(&runs, &|y| y.to_string())))
}

/// A cron expression (Unix or Quartz) in words, without the zone.
pub(super) fn cron(c: &Cron) -> String {
    let (time, at_times) = time_part(c);
    let mut parts = vec![time];
    // cronie's "either" with a field that names every day is every day.
    let every_day_either = c.either
        && ((c.dom_active && dom_part(c).is_none()) || (c.dow_active && dow_part(c).is_none()));
    let days = match (dom_part(c), dow_part(c)) {
        _ if every_day_either => None,
        (Some(dom), Some(dow)) if c.either => Some(format!("{dom} or {dow}")),
        (Some(dom), Some(dow)) => Some(format!("{dom} and {dow}")),
        (dom, dow) => dom.or(dow),
    };
    let restricted = days.is_some() || c.years.is_some() || month_part(c).is_some();
    if let Some(d) = days {
        parts.push(d);
    }
    if let Some(m) = month_part(c) {
        parts.push(m);
    }
    if let Some(y) = year_part(c) {
        parts.push(y);
    }
    if at_times && !restricted {
        parts[0].push_str(" every day");
    }
    parts.join(", ")
}

/// A span (an ISO 8601 period) in words: `1 day`, `2 hours 30 minutes`.
pub(super) fn span(p: &jiff::Span) -> String {
    let units: [(i64, &str, &str); 7] = [
        (i64::from(p.get_years()), "year", "years"),
        (i64::from(p.get_months()), "month", "months"),
        (i64::from(p.get_weeks()), "week", "weeks"),
        (i64::from(p.get_days()), "day", "days"),
        (i64::from(p.get_hours()), "hour", "hours"),
        (p.get_minutes(), "minute", "minutes"),
        (p.get_seconds(), "second", "seconds"),
    ];
    let words: Vec<String> = units
        .iter()
        .filter(|(n, _, _)| *n != 0)
        .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
        .collect();
    if words.is_empty() {
        p.to_string()
    } else {
        words.join(" ")
    }
}
