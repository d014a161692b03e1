//! The API's handling of bad input (4xx naming the field, nothing stored), the operational
//! endpoints, and the CLI against a real server.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

fn err_field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

#[test]
fn bad_input_is_refused_with_the_field_and_stores_nothing() {
    let s = Server::start(&[]);
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "schedule": "61 * * * *"}),
            400,
            "schedule",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "schedule": "* * * *"}),
            400,
            "schedule",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "schedule": "0 0 12 1 * 2"}),
            400,
            "schedule",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "timezone": "Mars/Olympus"}),
            400,
            "timezone",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "workdir": "relative/dir"}),
            400,
            "workdir",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "retires": 3}),
            400,
            "retires",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "retries": "many"}),
            400,
            "retries",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "timeout": "soon"}),
            400,
            "timeout",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": ""}),
            400,
            "command",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"name": "b", "command": "x"}),
            400,
            "name",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "concurrency": "sometimes"}),
            400,
            "concurrency",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "env": {"A=B": "1"}}),
            400,
            "env.A=B",
        ),
        (
            "PUT",
            "/api/v1/jobs/bad%20name",
            json!({"command": "x"}),
            400,
            "name",
        ),
        (
            "POST",
            "/api/v1/jobs",
            json!({"name": "-x", "command": "x"}),
            400,
            "name",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "parents": ["p"]}),
            400,
            "parents",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "parents": ["a"]}),
            400,
            "parents",
        ),
        (
            "PUT",
            "/api/v1/jobs/a",
            json!({"command": "x", "parents": ["p"], "schedule": "@hourly"}),
            400,
            "parents",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let (st, v) = s.send(method, path, &body.to_string());
        assert_eq!(st, status, "{method} {path} {body}: {v}");
        assert_eq!(err_field(&v), field, "{body}: {v}");
        assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string());
    }
    for body in ["[]", "\"x\"", "42"] {
        let (st, v) = s.send("PUT", "/api/v1/jobs/a", body);
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (400, Some("invalid_json")),
            "{body}: {v}"
        );
    }
    let (st, v) = s.send("DELETE", "/api/v1/jobs", "");
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (st, v) = s.send("PUT", "/api/v1/jobs/a", "{not json");
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_json");
    let huge = format!(r#"{{"command": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let (st, v) = s.send("PUT", "/api/v1/jobs/a", &huge);
    assert_eq!(st, 413, "{v}");
    // Nothing was stored by any refused write.
    let (_, list) = s.get("/api/v1/jobs");
    assert_eq!(list["jobs"], json!([]));
    assert_eq!(s.get("/api/v1/jobs/a").0, 404);
    // Duplicate create is a conflict; PUT replaces (200) after creating (201).
    assert_eq!(
        s.send("POST", "/api/v1/jobs", r#"{"name":"d","command":"true"}"#)
            .0,
        201
    );
    let (code, dup) = s.send("POST", "/api/v1/jobs", r#"{"name":"d","command":"true"}"#);
    assert_eq!(code, 409);
    assert_eq!(dup["error"]["code"], "already_exists");
    assert_eq!(dup["error"]["field"], "name");
    assert_eq!(
        s.send("PUT", "/api/v1/jobs/d", r#"{"command":"false"}"#).0,
        200
    );
    // A refused update leaves the job as it was.
    let (st, _) = s.send(
        "PUT",
        "/api/v1/jobs/d",
        r#"{"command":"x","schedule":"bad"}"#,
    );
    assert_eq!(st, 400);
    assert_eq!(s.get("/api/v1/jobs/d").1["command"], "false");
    // Unknown things are 404 with the JSON error shape.
    for p in [
        "/api/v1/jobs/nope",
        "/api/v1/runs/42",
        "/api/v1/runs/abc",
        "/api/v1/jobs/nope/runs",
        "/nowhere",
    ] {
        let (st, v) = s.get(p);
        assert_eq!(st, 404, "{p}");
        assert_eq!(v["error"]["code"], "not_found", "{p}");
    }
    assert_eq!(s.send("DELETE", "/api/v1/jobs/nope", "").0, 404);
    assert_eq!(s.send("POST", "/api/v1/jobs/nope/runs", "").0, 404);
    assert_eq!(s.get("/api/v1/jobs?limit=0").0, 400);
    assert_eq!(s.get("/api/v1/jobs?limit=5000").0, 400);
    assert!(!s.log().contains("panicked"));
}

#[test]
fn preview_health_status_metrics() {
    let s = Server::start(&[]);
    let (st, v) = s.send(
        "POST",
        "/api/v1/schedules/preview",
        r#"{"schedule":"30 2 * * *","timezone":"America/New_York","after":"2026-03-07T00:00:00Z","count":3}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["next"],
        json!([
            "2026-03-07T02:30:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:30:00-04:00"
        ])
    );
    let (st, v) = s.send(
        "POST",
        "/api/v1/schedules/preview",
        r#"{"schedule":"CRON_TZ=Europe/Berlin 30 2 * * 1-5"}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["description"],
        "At 02:30, Monday through Friday, in Europe/Berlin"
    );
    // An ISO interval without a start begins now (a job saved now runs at once): listed first.
    let before = jiff::Timestamp::now();
    let (st, v) = s.send(
        "POST",
        "/api/v1/schedules/preview",
        r#"{"schedule":"R//PT1H","count":2}"#,
    );
    assert_eq!(st, 200, "{v}");
    let first = common::ts(&v["next"][0]);
    assert!(
        first >= before - std::time::Duration::from_secs(1) && first <= jiff::Timestamp::now(),
        "{v}"
    );
    let (st, v) = s.send(
        "POST",
        "/api/v1/schedules/preview",
        r#"{"schedule":"0 0 32 * *"}"#,
    );
    assert_eq!(st, 400);
    assert_eq!(err_field(&v), "schedule");
    assert_eq!(s.get_text("/health"), (200, "OK\n".to_owned()));
    assert_eq!(s.get_text("/ready").0, 200);
    s.put_job("m", json!({"command": "true"}));
    let id = s.trigger("m")["id"].as_i64().unwrap();
    s.wait_final(id, Duration::from_secs(10));
    let (_, st) = s.get("/api/v1/status");
    assert_eq!(st["node"], "test-node");
    assert_eq!(st["counts"]["jobs"], 1);
    assert!(st["version"].is_string());
    let (code, metrics) = s.get_text("/metrics?format=prometheus");
    assert_eq!(code, 200);
    for needle in [
        "tempora_runs_finished_total{state=\"succeeded\"}",
        "tempora_http_requests_total",
        "route=\"/api/v1/jobs/{name}\"",
        "tempora_runs_queued",
        "tempora_runs_running",
        "# HELP tempora_runs_finished_total Runs this node's worker finished, by state",
        "# HELP tempora_http_requests_total",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn cli_drives_the_server() {
    let s = Server::start(&[]);
    let file = s.scratch().join("job.json");
    std::fs::write(&file, r#"{"name":"hello","command":"echo hi from $TEMPORA_JOB","schedule":"0 3 * * *","timezone":"Europe/Berlin"}"#).unwrap();
    let o = s.cli(&["job", "put", file.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let o = s.cli(&["job", "ls"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.contains("hello") && out.contains("Europe/Berlin"),
        "{out}"
    );
    let o = s.cli(&["job", "get", "hello", "--output", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"]["next_fire_at"].as_str().unwrap().len(), 20);
    let o = s.cli(&["job", "run", "hello", "-o", "json"]);
    assert!(o.status.success(), "{o:?}");
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = run["id"].as_i64().unwrap().to_string();
    s.wait_final(run["id"].as_i64().unwrap(), Duration::from_secs(10));
    assert_eq!(stdout(&s.cli(&["run", "logs", &id])), "hi from hello\n");
    assert_eq!(
        stdout(&s.cli(&["run", "logs", "-f", &id])),
        "hi from hello\n"
    );
    let o = s.cli(&["run", "ls", "hello"]);
    assert!(stdout(&o).contains("succeeded"), "{o:?}");
    let o = s.cli(&["run", "get", &id, "-o", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "succeeded");
    assert!(s.cli(&["job", "pause", "hello"]).status.success());
    assert_eq!(s.get("/api/v1/jobs/hello").1["paused"], true);
    assert!(s.cli(&["job", "resume", "hello"]).status.success());
    // Cancel through the CLI.
    s.put_job("sleepy", json!({"command": "sleep 60"}));
    let o = s.cli(&["job", "run", "sleepy", "-o", "json"]);
    let rid = serde_json::from_slice::<Value>(&o.stdout).unwrap()["id"]
        .as_i64()
        .unwrap();
    s.wait_for(Duration::from_secs(5), "running", || {
        (s.run(rid)["state"] == "running").then_some(())
    });
    assert!(s.cli(&["run", "cancel", &rid.to_string()]).status.success());
    assert_eq!(
        s.wait_final(rid, Duration::from_secs(15))["state"],
        "cancelled"
    );
    // Exit codes scripts rely on.
    assert_eq!(s.cli(&["job", "get", "nope"]).status.code(), Some(3));
    assert_eq!(s.cli(&["run", "get", "999999"]).status.code(), Some(3));
    let o = s.cli(&["job", "run", "hello", "--env", "NOEQUALS"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(s.cli(&["job", "rm", "hello"]).status.success());
    assert_eq!(s.cli(&["job", "rm", "hello"]).status.code(), Some(3));
    let o = std::process::Command::new(common::bin())
        .args(["job", "ls", "--server", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach"));
}

/// `GET /api/v1/runs` lists runs of every job, newest first, filtered by job, state, trigger
/// and occurrence window; `tempora run ls` without a job does the same.
#[test]
fn runs_across_jobs_with_filters() {
    let s = Server::start(&[]);
    s.put_job("across-a", json!({"command": "true"}));
    s.put_job("across-b", json!({"command": "exit 1"}));
    let a = s.trigger("across-a")["id"].as_i64().unwrap();
    let b = s.trigger("across-b")["id"].as_i64().unwrap();
    s.wait_final(a, Duration::from_secs(10));
    s.wait_final(b, Duration::from_secs(10));
    let ids = |q: &str| -> Vec<i64> {
        let (st, v) = s.get(&format!("/api/v1/runs{q}"));
        assert_eq!(st, 200, "{q}: {v}");
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(""), vec![b, a]);
    assert_eq!(ids("?state=failed"), vec![b]);
    assert_eq!(ids("?job=across-a"), vec![a]);
    assert_eq!(ids("?trigger=schedule"), Vec::<i64>::new());
    assert_eq!(
        ids("?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z&limit=1"),
        vec![b]
    );
    let (_, page) = s.get("/api/v1/runs?limit=1");
    assert_eq!(page["next_before"], b);
    for (q, field) in [
        ("?state=bogus", "state"),
        ("?trigger=cron", "trigger"),
        ("?since=yesterday", "since"),
        ("?limit=0", "limit"),
    ] {
        let (st, v) = s.get(&format!("/api/v1/runs{q}"));
        assert_eq!(
            (st, v["error"]["field"].as_str()),
            (400, Some(field)),
            "{q}: {v}"
        );
    }
    assert_eq!(s.get("/api/v1/runs?job=nope").0, 404);
    let o = s.cli(&["run", "ls", "--state", "failed", "-o", "json"]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["runs"][0]["id"], b);
    assert_eq!(s.cli(&["run", "ls", "nope"]).status.code(), Some(3));
}

/// A schedule with no occurrence left is refused when it is new (it would be stored and never
/// fire); one within `epsilon` still runs once; the same schedule stored before (an export applied
/// again after the job fired) is kept.
#[test]
fn a_schedule_wholly_in_the_past_is_refused_when_new() {
    let s = Server::start(&[]);
    let now = jiff::Timestamp::now();
    let year_ago = now - jiff::SignedDuration::from_hours(24 * 365);
    for schedule in [
        format!("@at {}", year_ago.strftime("%Y-%m-%dT%H:%M:%SZ")),
        format!("R1/{}/PT1M", year_ago.strftime("%Y-%m-%dT%H:%M:%SZ")),
        format!("R3/{}/P1D", year_ago.strftime("%Y-%m-%dT%H:%M:%S")),
    ] {
        let body = json!({"command": "true", "schedule": schedule});
        let (st, v) = s.send("PUT", "/api/v1/jobs/past", &body.to_string());
        assert_eq!(st, 400, "{schedule}: {v}");
        assert_eq!(err_field(&v), "schedule", "{v}");
        assert_eq!(v["error"]["code"], "schedule_in_past", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("never fire"), "{msg}");
        assert_eq!(
            s.send("GET", "/api/v1/jobs/past", "").0,
            404,
            "nothing stored"
        );
    }
    // An endless series from the past, and an occurrence within epsilon, are fine.
    let recent = (now - jiff::SignedDuration::from_secs(20)).strftime("%Y-%m-%dT%H:%M:%SZ");
    for (name, body) in [
        (
            "endless",
            json!({"command": "true", "schedule": format!("R/{}/PT1H", year_ago.strftime("%Y-%m-%dT%H:%M:%SZ"))}),
        ),
        (
            "recent",
            json!({"command": "true", "schedule": format!("@at {recent}"), "epsilon": "60s"}),
        ),
    ] {
        let (st, v) = s.send("PUT", &format!("/api/v1/jobs/{name}"), &body.to_string());
        assert_eq!(st, 201, "{name}: {v}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.runs("recent").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the occurrence within epsilon did not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A one-shot job that fired is applied again unchanged: kept (200), not refused.
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let body = json!({"command": "true", "schedule": format!("@at {at}")});
    assert_eq!(s.send("PUT", "/api/v1/jobs/once", &body.to_string()).0, 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.runs("once").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the one-shot job did not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (st, v) = s.send("PUT", "/api/v1/jobs/once", &body.to_string());
    assert_eq!(st, 200, "{v}");
    let body = json!({"command": "echo changed", "schedule": format!("@at {at}")});
    assert_eq!(s.send("PUT", "/api/v1/jobs/once", &body.to_string()).0, 200);
    // Changing it to another past time is refused.
    let body = json!({"command": "true", "schedule": format!("@at {recent}"), "epsilon": "1s"});
    let (st, v) = s.send("PUT", "/api/v1/jobs/once", &body.to_string());
    assert_eq!((st, err_field(&v)), (400, "schedule"), "{v}");
}

/// SIGHUP (a log rotation's `kill -HUP`, a closed terminal) does not stop a server without TLS:
/// it is logged, and the server goes on.
#[test]
fn sighup_is_logged_and_the_server_goes_on() {
    let s = Server::start(&[]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !s.log().contains("SIGHUP received") {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.get("/api/v1/status").0, 200);
    assert!(common::alive(s.pid()));
}

/// Per-job series on `/metrics` for the jobs labelled `metrics: "true"` — what an alert on a
/// failing job needs — and none for the others.
#[test]
fn jobs_labelled_for_metrics_get_their_own_series() {
    let s = Server::start(&[]);
    s.put_job(
        "watched",
        json!({"command": "exit ${FAIL:-0}", "labels": {"metrics": "true"}}),
    );
    s.put_job("unwatched", json!({"command": "true"}));
    for (job, fail) in [("watched", "0"), ("watched", "3"), ("unwatched", "0")] {
        let (_, run) = s.send(
            "POST",
            &format!("/api/v1/jobs/{job}/runs"),
            &json!({"env": {"FAIL": fail}}).to_string(),
        );
        s.wait_final(run["id"].as_i64().unwrap(), Duration::from_secs(10));
    }
    let (_, text) = s.get_text("/metrics?format=prometheus");
    for line in [
        "tempora_job_runs_total{job=\"watched\",state=\"succeeded\"} 1",
        "tempora_job_runs_total{job=\"watched\",state=\"failed\"} 1",
        "tempora_job_last_run_state{job=\"watched\",state=\"failed\"} 1",
        "# TYPE tempora_job_runs_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(
        text.contains("tempora_job_last_success_timestamp_seconds{job=\"watched\"} 1"),
        "{text}"
    );
    assert!(!text.contains("job=\"unwatched\""), "{text}");
}

/// Aurora's `/vars` and `/vars.json`: the build, start time, the effective configuration with
/// the database password redacted, leadership, counts and the registry's counters; a viewer
/// reads them, nobody without a token.
#[test]
fn vars_show_the_build_the_configuration_and_the_counters() {
    let s = Server::start(&["--keep-runs", "7", "--local-labels", "zone=a"]);
    s.put_job("v", json!({"command": "true"}));
    let id = s.trigger("v")["id"].as_i64().unwrap();
    s.wait_final(id, Duration::from_secs(10));
    let (st, text) = s.get_text("/vars");
    assert_eq!(st, 200, "{text}");
    let vars: std::collections::BTreeMap<&str, &str> = text
        .lines()
        .map(|l| {
            l.split_once(' ')
                .unwrap_or_else(|| panic!("not `name value`: {l:?}"))
        })
        .collect();
    assert_eq!(vars["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(vars["node_id"], "test-node");
    assert_eq!(vars["store"], "sqlite");
    assert_eq!(vars["leader"], "true");
    assert_eq!(vars["jobs"], "1");
    assert_eq!(vars["runs_queued"], "0");
    assert_eq!(vars["config_keep_runs"], "7");
    assert_eq!(vars["config_local_labels"], "zone=a");
    assert_eq!(vars["config_listen"], format!("127.0.0.1:{}", s.port));
    assert_eq!(vars["tempora_jobs"], "1", "the gauges are current");
    assert!(vars["uptime_seconds"].parse::<u64>().is_ok());
    assert_eq!(vars["tempora_leader_elections_total"], "1", "{text}");
    let (st, v) = s.get("/vars.json");
    assert_eq!(st, 200);
    assert_eq!(v["jobs"], 1);
    assert_eq!(v["leader"], true);
    assert_eq!(v["config_keep_runs"], "7");
    assert!(v["start_time_seconds"].as_i64().unwrap() > 1_700_000_000);
    // Without a token: refused.
    let (st, _, _) = s.request_as("GET", "/vars", None, None);
    assert_eq!(st, 401);
    let (st, _, _) = s.request_as("GET", "/vars.json", None, None);
    assert_eq!(st, 401);
}
