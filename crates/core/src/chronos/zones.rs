//! Chronos's Java zone ids (`PST`, `GMT+05:30`, …) as IANA zones.

use super::*;

/// Java's `ZoneId.SHORT_IDS`: the three-letter ids `java.util.TimeZone` accepts, which Chronos
/// users write in `scheduleTimeZone` (`PST`, `BST` = Bangladesh, …).
pub(super) const JAVA_SHORT_IDS: &[(&str, &str)] = &[
    ("ACT", "Australia/Darwin"),
    ("AET", "Australia/Sydney"),
    ("AGT", "America/Argentina/Buenos_Aires"),
    ("ART", "Africa/Cairo"),
    ("AST", "America/Anchorage"),
    ("BET", "America/Sao_Paulo"),
    ("BST", "Asia/Dhaka"),
    ("CAT", "Africa/Harare"),
    ("CNT", "America/St_Johns"),
    ("CST", "America/Chicago"),
    ("CTT", "Asia/Shanghai"),
    ("EAT", "Africa/Addis_Ababa"),
    ("ECT", "Europe/Paris"),
    ("IET", "America/Indiana/Indianapolis"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("MIT", "Pacific/Apia"),
    ("NET", "Asia/Yerevan"),
    ("NST", "Pacific/Auckland"),
    ("PLT", "Asia/Karachi"),
    ("PNT", "America/Phoenix"),
    ("PRT", "America/Puerto_Rico"),
    ("PST", "America/Los_Angeles"),
    ("SST", "Pacific/Guadalcanal"),
    ("VST", "Asia/Ho_Chi_Minh"),
    ("EST", "-05:00"),
    ("MST", "-07:00"),
    ("HST", "-10:00"),
];

/// Resolve a `scheduleTimeZone` to the zone name tempora stores: Java's short ids first (as
/// Chronos did), then IANA names. Unlike Chronos, an unknown id is an error, not GMT.
pub fn resolve_zone(id: &str) -> Result<String, ValidationError> {
    let id = id.trim();
    if let Some((_, zone)) = JAVA_SHORT_IDS.iter().find(|(k, _)| *k == id) {
        return Ok(match *zone {
            "-05:00" => "Etc/GMT+5".to_owned(),
            "-07:00" => "Etc/GMT+7".to_owned(),
            "-10:00" => "Etc/GMT+10".to_owned(),
            z => z.to_owned(),
        });
    }
    if let Some(etc) = gmt_offset(id) {
        return etc;
    }
    parse_timezone(id)
        .map(|_| id.to_owned())
        .map_err(|e| ValidationError::new("scheduleTimeZone", "invalid_timezone", e.message))
}

/// Java's custom ids `GMT+2`, `GMT+02:00`, `UTC-5`: whole-hour offsets map to the IANA `Etc/GMT∓h`
/// zones (whose sign is inverted); other offsets are refused. `None` when `id` is not of that form.
pub(super) fn gmt_offset(id: &str) -> Option<Result<String, ValidationError>> {
    let rest = id
        .strip_prefix("GMT")
        .or_else(|| id.strip_prefix("UTC"))
        .or_else(|| id.strip_prefix("UT"))?;
    let (sign, digits) = match rest.chars().next()? {
        '+' => (1, &rest[1..]),
        '-' => (-1, &rest[1..]),
        _ => return None,
    };
    let (h, m) = digits.split_once(':').unwrap_or((digits, "0"));
    let ok = |x: &str| !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || !ok(m) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if m != 0 || h > 14 {
        return Some(Err(ValidationError::new(
            "scheduleTimeZone",
            "invalid_timezone",
            format!("`{id}`: only whole-hour GMT offsets are supported (use an IANA zone)"),
        )));
    }
    Some(Ok(match sign * h {
        0 => "UTC".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }))
}
