//! Backfill end to end: `tempora job backfill` over a range of past hours runs each occurrence
//! once (asked twice, nothing more), one after another, with `scheduled_for` the occurrence and
//! trigger `backfill`; `--dry-run` lists and creates nothing; bad ranges are refused naming the
//! field.

mod common;

use std::time::Duration;

use common::Server;
use jiff::{Timestamp, ToSpan, Unit};
use serde_json::{Value, json};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn backfill_runs_each_past_occurrence_once_one_after_another() {
    let s = Server::start(&[]);
    let ledger = s.scratch().join("ledger");
    s.put_job(
        "hourly",
        json!({
            "command": format!(
                "echo \"start $TEMPORA_SCHEDULED_FOR\" >> {l}; sleep 0.2; echo \"end $TEMPORA_SCHEDULED_FOR\" >> {l}",
                l = ledger.display()
            ),
            "schedule": "0 * * * *",
            "concurrency": "allow",
        }),
    );
    let hour = Timestamp::now().round(Unit::Hour).unwrap();
    let hour = if hour > Timestamp::now() {
        hour - 1.hour()
    } else {
        hour
    };
    let (from, to) = ((hour - 5.hours()).to_string(), hour.to_string());
    let backfill = |extra: &[&str]| {
        let mut args = vec!["job", "backfill", "hourly", "--from", &from, "--to", &to];
        args.extend_from_slice(extra);
        s.cli(&args)
    };
    // Dry run: the five occurrences, nothing created.
    let o = backfill(&["--dry-run"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(out.starts_with("5 occurrence(s) of job hourly"), "{out}");
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(s.runs("hourly").is_empty());
    // The backfill: five runs, oldest first, never two at once.
    let o = backfill(&[]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).contains("5 run(s) created, 0 occurrence(s) had a run already"),
        "{}",
        stdout(&o)
    );
    let runs = s.wait_for(Duration::from_secs(30), "five backfilled runs", || {
        let runs = s.runs("hourly");
        (runs.len() == 5 && runs.iter().all(|r| r["state"] == "succeeded")).then_some(runs)
    });
    assert!(runs.iter().all(|r| r["trigger"] == "backfill"), "{runs:?}");
    let mut due: Vec<Timestamp> = runs
        .iter()
        .map(|r| common::ts(&r["scheduled_for"]))
        .collect();
    due.sort();
    let want: Vec<Timestamp> = (0..5).map(|i| hour - (5 - i).hours()).collect();
    assert_eq!(due, want);
    let text = std::fs::read_to_string(&ledger).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10, "{text}");
    for (i, pair) in lines.chunks(2).enumerate() {
        assert!(
            pair[0].starts_with("start ") && pair[1].starts_with("end "),
            "overlap: {text}"
        );
        assert_eq!(pair[0][6..], pair[1][4..], "{text}");
        assert_eq!(
            common::ts(&Value::String(pair[0][6..].to_owned())),
            want[i],
            "oldest first: {text}"
        );
    }
    // Asked again: nothing more.
    let o = backfill(&[]);
    assert!(
        stdout(&o).contains("0 run(s) created, 5 occurrence(s) had a run already"),
        "{o:?}"
    );
    assert_eq!(s.runs("hourly").len(), 5);
    // Refused, naming the field, changing nothing.
    let o = backfill(&["--max", "3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("more than 3 occurrences"),
        "{o:?}"
    );
    let ask = |body: Value| s.send("POST", "/api/v1/jobs/hourly/backfill", &body.to_string());
    let future = (Timestamp::now() + 2.hours()).to_string();
    for (body, field) in [
        (json!({"from": from, "to": future}), "to"),
        (json!({"from": to, "to": from}), "to"),
        (json!({"from": "yesterday", "to": to}), "from"),
        (json!({"from": from, "to": to, "max": 0}), "max"),
        (json!({"from": from, "to": to, "max": 1_000_000}), "max"),
    ] {
        let (st, v) = ask(body.clone());
        assert_eq!(st, 400, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    let (st, v) = ask(json!({"from": from, "to": to, "extra": 1}));
    assert_eq!(st, 400, "{v}");
    s.put_job("manual-only", json!({"command": "true"}));
    let (st, v) = s.send(
        "POST",
        "/api/v1/jobs/manual-only/backfill",
        &json!({"from": from, "to": to}).to_string(),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("no_schedule")),
        "{v}"
    );
    let (st, _) = s.send(
        "POST",
        "/api/v1/jobs/nope/backfill",
        &json!({"from": from, "to": to}).to_string(),
    );
    assert_eq!(st, 404);
    assert_eq!(s.runs("hourly").len(), 5);
}
