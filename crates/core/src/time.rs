//! Time formatting shared by the API and the CLI.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// RFC 3339 text of `t` with the offset that zone `tz` has at that instant
/// (e.g. `2026-03-08T03:00:00-04:00`; `Z` when the offset is zero).
pub fn rfc3339_in_zone(t: Timestamp, tz: &TimeZone) -> String {
    let offset = tz.to_offset(t);
    if offset.seconds() == 0 {
        t.to_string()
    } else {
        t.display_with_offset(offset).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_dst() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let t: Timestamp = "2026-03-08T07:00:00Z".parse().unwrap();
        assert_eq!(rfc3339_in_zone(t, &tz), "2026-03-08T03:00:00-04:00");
        let t: Timestamp = "2026-01-08T07:00:00Z".parse().unwrap();
        assert_eq!(rfc3339_in_zone(t, &tz), "2026-01-08T02:00:00-05:00");
    }
}
