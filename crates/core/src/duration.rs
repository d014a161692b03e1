//! Durations as users write them: ISO 8601 (`PT30S`, `PT1H30M`, `P1D`, `P1DT2H`, `PT0.5S`; a day
//! is 24 h here, months and years are refused) or short forms (`30s`, `5m`, `1h30m`, `2d`,
//! `500ms`, `1h 30m`). A bare number is refused by [`parse_duration`]; the serde helpers also
//! accept a JSON number of seconds.

use std::time::Duration;

/// A malformed duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DurationError {
    /// What was wrong.
    pub message: String,
}

fn err(s: &str, why: &str) -> DurationError {
    DurationError {
        message: format!("invalid duration `{s}`: {why} (examples: 30s, 5m, 1h30m, PT30S, P1D)"),
    }
}

/// Parse a duration in ISO 8601 or short form.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(err(s, "empty"));
    }
    if t.starts_with('-') {
        return Err(err(s, "a duration cannot be negative"));
    }
    if t.starts_with(['P', 'p']) {
        parse_iso(s, t)
    } else {
        parse_short(s, t)
    }
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000_000,
        "d" | "day" | "days" => 86_400_000_000_000,
        "w" | "week" | "weeks" => 604_800_000_000_000,
        _ => return None,
    })
}

/// `<number><unit>` pairs, optionally separated by spaces.
fn parse_short(orig: &str, t: &str) -> Result<Duration, DurationError> {
    let mut total: u128 = 0;
    let mut rest = t;
    let mut pairs = 0;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err(orig, "expected a number"));
        }
        let num = &rest[..num_len];
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(err(orig, "a unit is required (s, m, h, d, ms)"));
        }
        // Units are case-sensitive: `M` could be read as months.
        let per = unit_nanos(unit).ok_or_else(|| err(orig, &format!("unknown unit `{unit}`")))?;
        total = total
            .checked_add(scaled(orig, num, per)?)
            .ok_or_else(|| err(orig, "too large"))?;
        pairs += 1;
    }
    if pairs == 0 {
        return Err(err(orig, "empty"));
    }
    to_duration(orig, total)
}

/// `number × per` nanoseconds, where number may have a fraction.
fn scaled(orig: &str, num: &str, per: u128) -> Result<u128, DurationError> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(err(orig, &format!("bad number `{num}`")));
    }
    let i: u128 = if int.is_empty() {
        0
    } else {
        int.parse()
            .map_err(|_| err(orig, &format!("bad number `{num}`")))?
    };
    let mut v = i.checked_mul(per).ok_or_else(|| err(orig, "too large"))?;
    if !frac.is_empty() {
        let digits = frac.len().min(18) as u32;
        let f: u128 = frac[..digits as usize]
            .parse()
            .map_err(|_| err(orig, &format!("bad number `{num}`")))?;
        v += f * per / 10u128.pow(digits);
    }
    Ok(v)
}

fn to_duration(orig: &str, nanos: u128) -> Result<Duration, DurationError> {
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| err(orig, "too large"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// `P[nW][nD][T[nH][nM][n[.f]S]]`.
fn parse_iso(orig: &str, t: &str) -> Result<Duration, DurationError> {
    let up = t.to_ascii_uppercase();
    let body = &up[1..];
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return Err(err(orig, "nothing after T"));
            }
            (d, Some(t))
        }
        None => (body, None),
    };
    if date.is_empty() && time.is_none() {
        return Err(err(orig, "nothing after P"));
    }
    let mut total: u128 = 0;
    let mut eat = |part: &str, units: &[(char, u128)]| -> Result<(), DurationError> {
        let mut rest = part;
        let mut last = 0usize;
        while !rest.is_empty() {
            let n = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
                .ok_or_else(|| err(orig, "missing unit designator"))?;
            if n == 0 {
                return Err(err(orig, "expected a number"));
            }
            let num = rest[..n].replace(',', ".");
            let unit = rest[n..].chars().next().unwrap_or(' ');
            let pos = units
                .iter()
                .position(|(u, _)| *u == unit)
                .ok_or_else(|| match unit {
                    'Y' => err(orig, "years are not a fixed duration"),
                    'M' => err(orig, "months are not a fixed duration (use days)"),
                    _ => err(orig, &format!("unexpected `{unit}`")),
                })?;
            if pos < last {
                return Err(err(orig, "units out of order"));
            }
            last = pos + 1;
            total = total
                .checked_add(scaled(orig, &num, units[pos].1)?)
                .ok_or_else(|| err(orig, "too large"))?;
            rest = &rest[n + unit.len_utf8()..];
        }
        Ok(())
    };
    eat(
        date,
        &[('W', 604_800_000_000_000), ('D', 86_400_000_000_000)],
    )?;
    if let Some(tp) = time {
        eat(
            tp,
            &[
                ('H', 3_600_000_000_000),
                ('M', 60_000_000_000),
                ('S', 1_000_000_000),
            ],
        )?;
    }
    to_duration(orig, total)
}

/// Short form that [`parse_duration`] reads back to the same value (`1h30m`, `45s`, `250ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, per) in [("d", 86_400u64), ("h", 3_600), ("m", 60)] {
        if secs >= per {
            out.push_str(&format!("{}{unit}", secs / per));
            secs %= per;
        }
    }
    let nanos = d.subsec_nanos();
    if secs > 0 || (nanos > 0 && !nanos.is_multiple_of(1_000_000)) {
        if nanos == 0 {
            out.push_str(&format!("{secs}s"));
        } else {
            let frac = format!("{:09}", nanos);
            out.push_str(&format!("{secs}.{}s", frac.trim_end_matches('0')));
        }
    } else if nanos > 0 {
        out.push_str(&format!("{}ms", nanos / 1_000_000));
    }
    out
}

fn from_value<E: serde::de::Error>(v: serde_json::Value) -> Result<Duration, E> {
    match v {
        serde_json::Value::String(s) => parse_duration(&s).map_err(E::custom),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Ok(Duration::from_secs(u)),
            (None, Some(f)) if f >= 0.0 && f.is_finite() && f < 1e15 => {
                Ok(Duration::from_secs_f64(f))
            }
            _ => Err(E::custom(format!(
                "invalid duration {n}: expected a non-negative number of seconds or a string such as \"30s\""
            ))),
        },
        other => Err(E::custom(format!(
            "invalid duration {other}: expected a string such as \"30s\" or \"PT30S\", or a number of seconds"
        ))),
    }
}

/// `#[serde(with = "serde_duration")]`: a [`Duration`] as a short-form string; reads strings in
/// either syntax or a number of seconds.
pub mod serde_duration {
    use std::time::Duration;

    /// Serialize as the short form.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Deserialize from a string or a number of seconds.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v: serde_json::Value = serde::Deserialize::deserialize(d)?;
        super::from_value(v)
    }
}

/// Like [`serde_duration`] for `Option<Duration>` (`null` = none).
pub mod serde_opt_duration {
    use std::time::Duration;

    /// Serialize as the short form or null.
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize from null, a string or a number of seconds.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let v: serde_json::Value = serde::Deserialize::deserialize(d)?;
        if v.is_null() {
            return Ok(None);
        }
        super::from_value(v).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let ok = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("2d", 172_800_000),
            ("500ms", 500),
            ("1.5s", 1_500),
            ("PT30S", 30_000),
            ("PT1H30M", 5_400_000),
            ("P1D", 86_400_000),
            ("P1DT2H", 93_600_000),
            ("PT0.5S", 500),
            ("pt2m", 120_000),
            ("P1W", 604_800_000),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s).unwrap().as_millis(), ms, "{s}");
        }
        for bad in [
            "", "30", "abc", "5x", "P", "PT", "P1M", "P1Y", "PT1S1H", "s", "1.2.3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let negative = parse_duration("-1s").unwrap_err().to_string();
        assert!(negative.contains("cannot be negative"), "{negative}");
    }

    #[test]
    fn format_round_trips() {
        for ms in [
            0u64, 1, 250, 1000, 1500, 59_000, 60_000, 90_000, 3_600_000, 5_400_500, 90_061_000,
        ] {
            let d = Duration::from_millis(ms);
            let f = format_duration(d);
            assert_eq!(parse_duration(&f).unwrap(), d, "{f}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    }
}
