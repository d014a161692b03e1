//! Schedules in words: every cron form (Unix and Quartz, with `L`, `W`, `#`, steps, ranges,
//! cronie's day-of-month *or* day-of-week), `@every`, `@at` and ISO 8601 intervals.

use tempora_core::schedule::Schedule;

fn says(expr: &str, zone: &str) -> String {
    Schedule::parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .describe(zone)
}

#[test]
fn cron_forms_in_words() {
    let cases = [
        (
            "30 2 * * 1-5",
            "Europe/Berlin",
            "At 02:30, Monday through Friday, in Europe/Berlin",
        ),
        ("0 0 * * *", "UTC", "At 00:00 every day, in UTC"),
        ("@daily", "UTC", "At 00:00 every day, in UTC"),
        ("@hourly", "UTC", "At minute 0 past every hour, in UTC"),
        ("* * * * *", "UTC", "Every minute, in UTC"),
        (
            "*/15 9-17 * * 1-5",
            "UTC",
            "Every 15 minutes, between 09:00 and 17:59, Monday through Friday, in UTC",
        ),
        (
            "5,35 * * * *",
            "UTC",
            "At minutes 5 and 35 past every hour, in UTC",
        ),
        (
            "30 */2 * * *",
            "UTC",
            "At minute 30 past every 2 hours, in UTC",
        ),
        (
            "0 9,12,18 * * *",
            "UTC",
            "At 09:00, 12:00 and 18:00 every day, in UTC",
        ),
        (
            "0 12 1,15 * *",
            "UTC",
            "At 12:00, on days 1 and 15 of the month, in UTC",
        ),
        (
            "0 12 1 * 1",
            "UTC",
            "At 12:00, on day 1 of the month or on Monday, in UTC",
        ),
        (
            "0 12 * * 0,6",
            "UTC",
            "At 12:00, on Saturday and Sunday, in UTC",
        ),
        (
            "0 9 * * 5-7",
            "UTC",
            "At 09:00, Friday through Sunday, in UTC",
        ),
        // cronie: day-of-month *or* day-of-week, and one of them names every day.
        ("0 9 1 * 1-7", "UTC", "At 09:00 every day, in UTC"),
        ("0 9 1 * 0,1,2,3,4,5,6", "UTC", "At 09:00 every day, in UTC"),
        ("0 9 1-31 * 1", "UTC", "At 09:00 every day, in UTC"),
        (
            "0 6 * 1-3 *",
            "UTC",
            "At 06:00, in January through March, in UTC",
        ),
        (
            "30 2 * * *",
            "Australia/Lord_Howe",
            "At 02:30 every day, in Australia/Lord_Howe",
        ),
    ];
    for (expr, zone, want) in cases {
        assert_eq!(says(expr, zone), want, "{expr}");
    }
}

#[test]
fn quartz_forms_in_words() {
    let cases = [
        (
            "0 0 12 L * ?",
            "At 12:00, on the last day of the month, in UTC",
        ),
        (
            "0 0 12 L-3 * ?",
            "At 12:00, 3 days before the last day of the month, in UTC",
        ),
        (
            "0 0 12 15W * ?",
            "At 12:00, on the weekday nearest day 15 of the month (never in another month), in UTC",
        ),
        (
            "0 0 12 LW * ?",
            "At 12:00, on the last weekday of the month, in UTC",
        ),
        (
            "0 0 12 ? * 6#3",
            "At 12:00, on the third Friday of the month, in UTC",
        ),
        (
            "0 0 12 ? * 2L",
            "At 12:00, on the last Monday of the month, in UTC",
        ),
        (
            "0 0 12 ? * MON-FRI",
            "At 12:00, Monday through Friday, in UTC",
        ),
        ("*/10 * * * * ?", "Every 10 seconds, in UTC"),
        ("15 30 10 * * ?", "At 10:30:15 every day, in UTC"),
        (
            "0 0 9 ? JAN-MAR MON 2027",
            "At 09:00, on Monday, in January through March, in 2027, in UTC",
        ),
        (
            "0 0 9 1 1 ? 2027-2030",
            "At 09:00, on day 1 of the month, in January, in 2027 through 2030, in UTC",
        ),
        (
            "0 0 2 1 1 ? 2027,2029,2031",
            "At 02:00, on day 1 of the month, in January, in 2027, 2029 and 2031, in UTC",
        ),
        (
            "0 0 2 1 1 ? 2027/2",
            "At 02:00, on day 1 of the month, in January, every 2 years from 2027 through 2099, in UTC",
        ),
        (
            "0 0 2 1 1 ? 2027-2035/4",
            "At 02:00, on day 1 of the month, in January, in 2027, 2031 and 2035, in UTC",
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(says(expr, "UTC"), want, "{expr}");
    }
}

#[test]
fn intervals_and_instants_in_words() {
    let cases = [
        ("@every 90m", "Every 1h30m, counted from the job's creation"),
        ("@at 2027-01-01T09:00:00Z", "Once, at 2027-01-01T09:00:00Z"),
        (
            "@at 2027-01-01T09:00:00",
            "Once, at 2027-01-01T09:00:00, in Europe/Berlin",
        ),
        (
            "R5/2027-01-01T09:00:00/P1D",
            "Every 1 day, 5 times, from 2027-01-01T09:00:00 in Europe/Berlin",
        ),
        (
            "R/2027-01-01T09:00:00Z/PT2H30M",
            "Every 2 hours 30 minutes, from 2027-01-01T09:00:00Z",
        ),
        ("R//PT1H", "Every 1 hour, from the job's creation"),
        (
            "R1/2027-06-01T00:00:00/PT0S",
            "Once, at 2027-06-01T00:00:00 in Europe/Berlin",
        ),
        (
            "R0//PT24H",
            "Never (R0: no occurrence; the job runs when triggered)",
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(says(expr, "Europe/Berlin"), want, "{expr}");
    }
}
