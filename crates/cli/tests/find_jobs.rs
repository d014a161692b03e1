//! Finding jobs: `GET /api/v1/jobs?q=&label=&owner=&state=` and the same filters on
//! `tempora job ls`, which shows each job's state, next fire and last result.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

fn names(v: &Value) -> Vec<String> {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn jobs_are_found_by_name_label_owner_and_state() {
    let s = Server::start(&[]);
    s.put_job(
        "backup-db",
        json!({"command": "true", "schedule": "0 3 * * *", "description": "Nightly DB dump",
               "owner": "ops@example.com", "labels": {"team": "data", "env": "prod"}}),
    );
    s.put_job(
        "report",
        json!({"command": "true", "schedule": "0 8 * * 1", "paused": true,
               "labels": {"team": "bi"}}),
    );
    s.put_job("flaky", json!({"command": "exit 3"}));
    s.put_job("sleeper", json!({"command": "sleep 30"}));
    let id = s.trigger("flaky")["id"].as_i64().unwrap();
    assert_eq!(s.wait_final(id, Duration::from_secs(10))["state"], "failed");
    let sleeping = s.trigger("sleeper")["id"].as_i64().unwrap();
    s.wait_for(Duration::from_secs(10), "the sleeper to run", || {
        (s.run(sleeping)["state"] == "running").then_some(())
    });
    let find = |query: &str| {
        let (st, v) = s.get(&format!("/api/v1/jobs?{query}"));
        assert_eq!(st, 200, "{query}: {v}");
        names(&v)
    };
    assert_eq!(find("q=back"), ["backup-db"]);
    assert_eq!(
        find("q=NIGHTLY"),
        ["backup-db"],
        "the description, any case"
    );
    assert_eq!(find("label=team%3Ddata"), ["backup-db"]);
    assert_eq!(find("label=team%3Ddata%2Cenv%3Dprod"), ["backup-db"]);
    assert!(find("label=team%3Ddata%2Cenv%3Ddev").is_empty());
    assert_eq!(find("owner=OPS%40"), ["backup-db"]);
    assert_eq!(find("state=paused"), ["report"]);
    assert_eq!(find("state=active"), ["backup-db", "flaky", "sleeper"]);
    assert_eq!(find("state=failing"), ["flaky"]);
    assert_eq!(find("state=running"), ["sleeper"]);
    assert_eq!(find("state=active&label=team%3Dbi").len(), 0);
    // Pages of matches, continued with next_after.
    let (_, v) = s.get("/api/v1/jobs?state=active&limit=2");
    assert_eq!(names(&v), ["backup-db", "flaky"]);
    let next = v["next_after"].as_str().unwrap().to_owned();
    let (_, v) = s.get(&format!("/api/v1/jobs?state=active&limit=2&after={next}"));
    assert_eq!(names(&v), ["sleeper"]);
    assert!(v["next_after"].is_null(), "{v}");
    // The last result and failing flag are on every job.
    let (_, v) = s.get("/api/v1/jobs/flaky");
    assert_eq!(v["status"]["last_result"], "failed");
    assert_eq!(v["status"]["failing"], true);
    // Bad filters: 400 naming the parameter.
    for (query, field) in [
        ("limit=abc", "limit"),
        ("state=paused&state=active", "state"),
        ("state=bogus", "state"),
        ("label=nokv", "label"),
        ("label=%3Dv", "label"),
        (&*format!("q={}", "x".repeat(300)), "q"),
    ] {
        let (st, v) = s.get(&format!("/api/v1/jobs?{query}"));
        assert_eq!(st, 400, "{query}: {v}");
        assert_eq!(v["error"]["field"], field, "{query}: {v}");
    }
    // The CLI: the same filters; the table shows state, next fire and last result.
    let o = s.cli(&["job", "ls"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let header = out.lines().next().unwrap();
    for col in ["NAME", "STATE", "NEXT", "LAST"] {
        assert!(header.contains(col), "{out}");
    }
    let sleeper = out.lines().find(|l| l.starts_with("sleeper")).unwrap();
    assert!(sleeper.contains("running"), "{out}");
    let (_, v) = s.get("/api/v1/jobs?state=running");
    assert_eq!(v["jobs"][0]["status"]["running"], true, "{v}");
    let flaky = out.lines().find(|l| l.starts_with("flaky")).unwrap();
    assert!(
        flaky.contains("failing") && flaky.contains("failed"),
        "{out}"
    );
    let o = s.cli(&[
        "job",
        "ls",
        "--label",
        "team=data",
        "--label",
        "env=prod",
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{o:?}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(names(&v), ["backup-db"]);
    let o = s.cli(&["job", "ls", "--state", "paused", "-q", "rep"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("report"), "{out}");
    let o = s.cli(&["job", "ls", "--state", "sleeping"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let o = s.cli(&["job", "ls", "--label", "oops"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("key=value"),
        "{o:?}"
    );
}
