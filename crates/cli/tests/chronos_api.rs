//! The Chronos REST API against the real binary: the `curl` examples of the Chronos API document
//! as written, the job JSON and its zone semantics, async completion, task ids and the Chronos
//! environment, errors (the real Chronos clients: `chronos_clients.rs`).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

/// Run a shell command line that calls `curl` (host `chronos-node:8080` pointed at the server);
/// returns the HTTP status and the body. The token goes as the HTTP Basic password
/// (`curl -u any:TOKEN`), the way a Chronos user adds one to their scripts.
fn curl(s: &Server, line: &str) -> (u16, String) {
    let line = line.replace("chronos-node:8080", &format!("127.0.0.1:{}", s.port));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{line} -u \"chronos:$TOKEN\" -sS -w '\\n%{{http_code}}'"
        ))
        .env("TOKEN", common::admin_token())
        .output()
        .expect("curl must be installed (apt-get install curl)");
    assert!(
        out.status.success(),
        "`{line}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().expect("status code"), body.to_owned())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn chronos_job(s: &Server, name: &str) -> Value {
    let (st, v) = s.get(&format!("/v1/scheduler/job/{name}"));
    assert_eq!(st, 200, "{v}");
    v
}

/// Wait for the newest run of `job` to reach `state`.
fn wait_state(s: &Server, job: &str, state: &str) -> Value {
    s.wait_for(
        Duration::from_secs(30),
        &format!("{job} to be {state}"),
        || {
            s.runs(job)
                .into_iter()
                .next()
                .filter(|r| r["state"] == state)
        },
    )
}

/// Every `curl` example of `shared/seeds/chronos-api.txt`, as written; placeholders (`{<json
/// hash>}`, `{dependent hash}`) are filled with the document's own example hashes.
#[test]
fn curl_examples_of_the_chronos_api_document_work_as_written() {
    let s = Server::start(&[]);
    let out = PathBuf::from("/tmp/JOB1_OUT");
    let before = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .count();

    // Adding jobs (the SAMPLE_JOB1 example).
    let (st, body) = curl(
        &s,
        r#"curl -L -H 'Content-Type: application/json' -X POST -d '{ "schedule": "R10/2012-10-01T05:52:00Z/PT2S",  "name": "SAMPLE_JOB1",  "epsilon": "PT15M",  "command": "echo 'FOO' >> /tmp/JOB1_OUT",  "owner": "bob@airbnb.com",  "async": false}' chronos-node:8080/scheduler/iso8601"#,
    );
    assert_eq!((st, body.as_str()), (204, ""));
    // Listing jobs.
    let (st, body) = curl(&s, "curl -L -X GET chronos-node:8080/scheduler/jobs");
    assert_eq!(st, 200);
    let jobs = json_of(&body);
    let j = &jobs[0];
    assert_eq!(j["name"], "SAMPLE_JOB1");
    assert_eq!(j["schedule"], "R10/2012-10-01T05:52:00Z/PT2S");
    assert_eq!(j["epsilon"], "PT15M");
    assert_eq!(j["owner"], "bob@airbnb.com");
    assert_eq!(
        (j["async"].clone(), j["retries"].clone()),
        (json!(false), json!(2))
    );
    assert_eq!(
        (j["shell"].clone(), j["disabled"].clone()),
        (json!(true), json!(false))
    );
    // The ten repetitions all lay in 2012: nothing fires now.
    assert!(s.runs("SAMPLE_JOB1").is_empty());
    // Manual job start.
    let (st, _) = curl(
        &s,
        "curl -L -X PUT chronos-node:8080/scheduler/job/SAMPLE_JOB1",
    );
    assert_eq!(st, 204);
    let run = wait_state(&s, "SAMPLE_JOB1", "succeeded");
    assert_eq!(run["trigger"], "manual");
    let after = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(after.lines().count() > before && after.contains("FOO"));

    // Adding dependent jobs: the example's parents must exist (Chronos 3.x stored such a job
    // and lost it on the next reload, #815); tempora refuses it with their names.
    let dependent = r#"curl -L -X POST -H 'Content-Type: application/json' -d '{ "async": true, "command": "bash -x /srv/data-infra/jobs/hive_query.bash run_hive hostings-earnings-summary", "epsilon": "PT30M", "errorCount": 0, "lastError": "", "lastSuccess": "2013-03-15T13:02:14.243Z", "name": "hostings_earnings_summary", "owner": "bob@airbnb.com", "parents": [ "db_export-airbed_hostings", "db_export-airbed_reservation2s" ], "retries": 2, "successCount": 100 }' chronos-node:8080/scheduler/dependency"#;
    let (st, body) = curl(&s, dependent);
    assert_eq!(st, 400, "{body}");
    let err = json_of(&body);
    assert_eq!(err["status"], "Bad Request");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("db_export-airbed_hostings") && msg.contains("parents"),
        "{msg}"
    );
    for parent in [
        "db_export-airbed_hostings",
        "db_export-airbed_reservation2s",
    ] {
        let (st, body) = curl(
            &s,
            &format!(
                r#"curl -L -H 'Content-Type: application/json' -X POST -d '{{"name": "{parent}", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/P1D", "owner": "bob@airbnb.com"}}' chronos-node:8080/scheduler/iso8601"#
            ),
        );
        assert_eq!(st, 204, "{body}");
    }
    let (st, body) = curl(&s, dependent);
    assert_eq!(st, 204, "{body}");
    let d = chronos_job(&s, "hostings_earnings_summary");
    assert_eq!(
        d["parents"],
        json!([
            "db_export-airbed_hostings",
            "db_export-airbed_reservation2s"
        ])
    );
    assert_eq!(
        (d["async"].clone(), d["epsilon"].clone()),
        (json!(true), json!("PT30M"))
    );
    // Counters are the server's, not the document's.
    assert_eq!(
        (d["successCount"].clone(), d["lastSuccess"].clone()),
        (json!(0), json!(""))
    );
    assert!(d.get("schedule").is_none());

    // Adding docker jobs: stored with their container (string numbers accepted).
    let (st, body) = curl(
        &s,
        r#"curl -L -H 'Content-Type: application/json' -X POST -d '{ "schedule": "R\/2014-09-25T17:22:00Z\/PT2M", "name": "my_docker_job", "container": { "type": "DOCKER", "image": "libmesos/ubuntu", "network": "BRIDGE" }, "cpus": "0.5", "mem": "512", "uris": [], "command": "while sleep 10; do date =u %T; done" }' chronos-node:8080/scheduler/iso8601"#,
    );
    assert_eq!(st, 204, "{body}");
    let dj = chronos_job(&s, "my_docker_job");
    assert_eq!(dj["container"]["image"], "libmesos/ubuntu");
    assert_eq!(
        (dj["cpus"].clone(), dj["mem"].clone()),
        (json!(0.5), json!(512.0))
    );
    assert_eq!(dj["schedule"], "R/2014-09-25T17:22:00Z/PT2M");

    // Dependency graph.
    let (st, dot) = curl(&s, "curl -L -X GET chronos-node:8080/scheduler/graph/dot");
    assert_eq!(st, 200);
    assert!(dot.starts_with("digraph G {"), "{dot}");
    assert!(
        dot.contains("label = \"hostings_earnings_summary\""),
        "{dot}"
    );
    assert_eq!(dot.matches(" -> ").count(), 2, "{dot}");

    // Deleting tasks and jobs (my_job: a long job started by hand).
    let (st, _) = curl(
        &s,
        r#"curl -L -H 'Content-Type: application/json' -X POST -d '{"name": "my_job", "command": "sleep 300", "schedule": "R/2030-01-01T00:00:00Z/P1D", "owner": "bob@airbnb.com"}' chronos-node:8080/scheduler/iso8601"#,
    );
    assert_eq!(st, 204);
    assert_eq!(
        curl(&s, "curl -L -X PUT chronos-node:8080/scheduler/job/my_job").0,
        204
    );
    wait_state(&s, "my_job", "running");
    let (st, _) = curl(
        &s,
        "curl -L -X DELETE chronos-node:8080/scheduler/task/kill/my_job",
    );
    assert_eq!(st, 204);
    wait_state(&s, "my_job", "cancelled");
    let (st, _) = curl(
        &s,
        "curl -L -X DELETE chronos-node:8080/scheduler/job/my_job",
    );
    assert_eq!(st, 204);
    assert_eq!(s.get("/v1/scheduler/job/my_job").0, 400);

    // Reporting completion: the document's id is not a task id.
    let (st, body) = curl(
        &s,
        r#"curl -L -X PUT -H "Content-Type: application/json" -d '{"statusCode":0}' chronos-node:8080/scheduler/task/my_job_run_555_882083xkj302"#,
    );
    assert_eq!(st, 400);
    assert!(
        json_of(&body)["message"]
            .as_str()
            .unwrap()
            .contains("task id")
    );

    // Time zone example: PST keeps the start's wall-clock fields.
    let (st, body) = curl(
        &s,
        r#"curl -L -H 'Content-Type: application/json' -X POST -d '{"name": "pst_job", "command": "true", "schedule": "R/2014-10-10T18:32:00Z/PT60M", "scheduleTimeZone": "PST"}' chronos-node:8080/scheduler/iso8601"#,
    );
    assert_eq!(st, 204, "{body}");
    let (_, native) = s.get("/api/v1/jobs/pst_job");
    assert_eq!(native["timezone"], "America/Los_Angeles");
    assert_eq!(native["schedule"], "R/2014-10-10T18:32:00/PT60M");
    let next = common::ts(&native["status"]["next_fire_at"]);
    let local = next.to_zoned(jiff::tz::TimeZone::get("America/Los_Angeles").unwrap());
    assert_eq!((local.minute(), local.second()), (32, 0));
    assert_eq!(chronos_job(&s, "pst_job")["scheduleTimeZone"], "PST");
}

/// An async job stays running after its process exits 0 until it reports through
/// `PUT /scheduler/task/{taskId}`; the task id and the Chronos variables are in its environment.
#[test]
fn async_jobs_wait_for_their_completion_call() {
    let s = Server::start(&[]);
    let env_file = s.scratch().join("env");
    // `; true` so the arguments of a manual start (appended to a shell command) do no harm.
    let cmd = format!("env > {}; true", env_file.display());
    let (st, v) = s.send(
        "POST",
        "/scheduler/iso8601",
        &json!({"name": "async_job", "command": cmd, "async": true, "retries": 0,
                "owner": "ops@example.com", "cpus": 0.25, "mem": 64,
                "schedule": "R0//PT24H"})
        .to_string(),
    );
    assert_eq!(st, 204, "{v}");
    assert_eq!(s.send("PUT", "/scheduler/job/async_job", "").0, 204);
    let env = s.wait_for(Duration::from_secs(30), "the job's environment", || {
        std::fs::read_to_string(&env_file)
            .ok()
            .filter(|t| t.contains("CHRONOS_JOB_RUN_ATTEMPT"))
    });
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing from {env}"))
            .to_owned()
    };
    let task_id = var("mesos_task_id");
    assert_eq!(var("MESOS_TASK_ID"), task_id);
    let parts: Vec<&str> = task_id.splitn(5, ':').collect();
    assert_eq!(parts[0], "ct");
    assert_eq!(parts[2..], ["0", "async_job", ""], "{task_id}");
    assert_eq!(var("CHRONOS_JOB_RUN_TIME"), parts[1]);
    assert_eq!(var("CHRONOS_JOB_NAME"), "async_job");
    assert_eq!(var("CHRONOS_JOB_OWNER"), "ops@example.com");
    assert_eq!(var("CHRONOS_RESOURCE_CPU"), "0.25");
    assert_eq!(var("CHRONOS_RESOURCE_MEM"), "64.0");
    assert_eq!(var("CHRONOS_JOB_RUN_ATTEMPT"), "0");
    assert!(!var("HOST").is_empty());
    // The process has exited, the run waits.
    std::thread::sleep(Duration::from_millis(800));
    let run = &s.runs("async_job")[0];
    assert_eq!(run["state"], "running", "{run}");
    let summary = s.get("/v1/scheduler/jobs/summary").1;
    assert_eq!(summary["jobs"][0]["state"], "running");
    // Report failure, URL-encoded as the document says.
    let encoded = task_id.replace(':', "%3A");
    let report = format!(
        r#"curl -L -X PUT -H "Content-Type: application/json" -d '{{"statusCode":1}}' chronos-node:8080/scheduler/task/{encoded}"#
    );
    assert_eq!(curl(&s, &report).0, 204);
    let run = s.run(run["id"].as_i64().unwrap());
    assert_eq!(run["state"], "failed");
    assert!(run["error"].as_str().unwrap().contains("statusCode 1"));
    // A second report is refused.
    let (st, body) = curl(&s, &report);
    assert_eq!(st, 400, "{body}");
    let j = chronos_job(&s, "async_job");
    assert_eq!(
        (j["errorCount"].clone(), j["errorsSinceLastSuccess"].clone()),
        (json!(1), json!(1))
    );

    // Success through the same call; the arguments of a manual start are in the task id.
    std::fs::remove_file(&env_file).unwrap();
    assert_eq!(
        s.send(
            "PUT",
            "/v1/scheduler/job/async_job?arguments=--day%202026-01-01",
            ""
        )
        .0,
        204
    );
    let env = s.wait_for(Duration::from_secs(30), "the second run", || {
        std::fs::read_to_string(&env_file)
            .ok()
            .filter(|t| t.contains("mesos_task_id"))
    });
    let task_id = env
        .lines()
        .find_map(|l| l.strip_prefix("mesos_task_id="))
        .unwrap()
        .to_owned();
    assert!(
        task_id.ends_with(":0:async_job:--day 2026-01-01"),
        "{task_id}"
    );
    // The shell command got the arguments appended (Chronos appends them after a space).
    let newest = &s.runs("async_job")[0];
    let st = s.send(
        "PUT",
        &format!(
            "/scheduler/task/{}",
            task_id.replace(':', "%3A").replace(' ', "%20")
        ),
        r#"{"statusCode":0}"#,
    );
    assert_eq!(st.0, 204, "{}", st.1);
    assert_eq!(s.run(newest["id"].as_i64().unwrap())["state"], "succeeded");
    let j = chronos_job(&s, "async_job");
    assert_eq!(
        (
            j["successCount"].clone(),
            j["errorsSinceLastSuccess"].clone()
        ),
        (json!(1), json!(0))
    );
    // A bad body names the field.
    let (st, v) = s.send(
        "PUT",
        "/scheduler/task/ct%3A1%3A0%3Aasync_job%3A",
        r#"{"status":0}"#,
    );
    assert_eq!(st, 400);
    assert!(v["message"].as_str().unwrap().contains("statusCode"), "{v}");
}

/// Jobs are shared with the native API; errors have Chronos's shape and change nothing; the
/// remaining endpoints answer as Chronos clients expect.
#[test]
fn chronos_and_native_apis_share_jobs_and_errors_have_chronos_shape() {
    let s = Server::start(&["--cors-origin", "http://ui.example"]);
    // Native job, seen and edited through Chronos; native-only fields survive the edit.
    s.put_job(
        "native",
        json!({"name": "native", "command": "echo native", "schedule": "0 3 * * *",
               "timezone": "Europe/Berlin", "labels": {"team": "data"}, "timeout": "10m"}),
    );
    let j = chronos_job(&s, "native");
    assert_eq!(j["schedule"], "0 3 * * *");
    assert_eq!(j["scheduleTimeZone"], "Europe/Berlin");
    let mut edited = j.clone();
    edited["command"] = json!("echo edited");
    edited["retries"] = json!(5);
    let (st, v) = s.send("POST", "/v1/scheduler/iso8601", &edited.to_string());
    assert_eq!(st, 204, "{v}");
    let (_, n) = s.get("/api/v1/jobs/native");
    assert_eq!(
        (n["command"].clone(), n["retries"].clone()),
        (json!("echo edited"), json!(5))
    );
    assert_eq!(
        (n["labels"]["team"].clone(), n["timeout"].clone()),
        (json!("data"), json!("10m"))
    );
    assert_eq!(
        (n["schedule"].clone(), n["timezone"].clone()),
        (json!("0 3 * * *"), json!("Europe/Berlin"))
    );

    // Bad input: 400 {"status","message"} naming the field, and nothing stored.
    let bad: &[(&str, Value, &str)] = &[
        (
            "/scheduler/iso8601",
            json!({"name": "z", "command": "x", "schedule": "R/2020-01-01T00:00:00Z/P1D", "scheduleTimeZone": "Mars/Olympus"}),
            "scheduleTimeZone",
        ),
        (
            "/scheduler/iso8601",
            json!({"name": "z", "command": "x", "schedule": "R/yesterday/P1D", "scheduleTimeZone": "UTC"}),
            "schedule",
        ),
        (
            "/scheduler/iso8601",
            json!({"name": "z", "command": "x", "schedule": "R5/2020-01-01T00:00:00Z"}),
            "schedule",
        ),
        (
            "/scheduler/iso8601",
            json!({"name": "bad name!", "command": "x"}),
            "name",
        ),
        ("/scheduler/iso8601", json!({"command": "x"}), "name"),
        (
            "/scheduler/iso8601",
            json!({"name": "z", "command": "x", "epsilon": "soon"}),
            "epsilon",
        ),
        (
            "/scheduler/iso8601",
            json!({"name": "z", "command": "x", "retries": "many"}),
            "retries",
        ),
        (
            "/scheduler/dependency",
            json!({"name": "z", "command": "x", "parents": []}),
            "parents",
        ),
        (
            "/scheduler/dependency",
            json!({"name": "z", "command": "x", "parents": ["z"]}),
            "z",
        ),
        (
            "/scheduler/dependency",
            json!({"name": "z", "command": "x", "parents": ["ghost"]}),
            "ghost",
        ),
        (
            "/v1/scheduler/iso8601",
            json!({"name": "z", "command": "x", "schedule": "R/2020-01-01T00:00:00Z/P1D", "parents": ["native"]}),
            "parents",
        ),
    ];
    for (path, body, needle) in bad {
        let (st, v) = s.send("POST", path, &body.to_string());
        assert_eq!(st, 400, "{path} {body}: {v}");
        assert_eq!(v["status"], "Bad Request", "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: `{msg}` should name {needle}");
        assert!(
            !msg.contains('\n') && !msg.contains("Exception"),
            "no stack traces: {msg}"
        );
    }
    for raw in ["{", "[1,2]", "\"job\"", ""] {
        let (st, v) = s.send("POST", "/scheduler/iso8601", raw);
        assert_eq!(st, 400, "{raw}: {v}");
    }
    let huge = format!(r#"{{"name":"big","command":"{}"}}"#, "x".repeat(2 << 20));
    assert_eq!(s.send("POST", "/scheduler/iso8601", &huge).0, 413);
    // A cycle through an update is refused too.
    s.send(
        "POST",
        "/scheduler/dependency",
        &json!({"name": "child", "command": "true", "parents": ["native"]}).to_string(),
    );
    let mut cyc = chronos_job(&s, "native");
    cyc.as_object_mut().unwrap().remove("schedule");
    cyc["parents"] = json!(["child"]);
    let (st, v) = s.send("POST", "/scheduler/dependency", &cyc.to_string());
    assert_eq!(st, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("cycle"), "{v}");
    let (_, jobs) = s.get("/scheduler/jobs");
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["child", "native"], "bad input stored nothing");
    // Unknown jobs: 400 "not found" everywhere, like Chronos (which has no 404).
    for (m, p) in [
        ("GET", "/v1/scheduler/job/ghost"),
        ("PUT", "/scheduler/job/ghost"),
        ("DELETE", "/scheduler/job/ghost"),
        ("DELETE", "/scheduler/task/kill/ghost"),
        ("GET", "/scheduler/job/stat/ghost"),
    ] {
        let (st, v) = s.send(m, p, "");
        assert_eq!(st, 400, "{m} {p}");
        assert_eq!(v["message"], "Job 'ghost' not found");
    }
    let (st, text) = common::http(
        "PUT",
        &format!("{}/scheduler/job/success/ghost", s.url()),
        "",
    )
    .unwrap();
    assert_eq!(
        (st, text.as_str()),
        (200, "marked job ghost as successful: false")
    );

    // job/success: counts as a success and triggers the child.
    let (st, text) = common::http(
        "PUT",
        &format!("{}/v1/scheduler/job/success/native", s.url()),
        "",
    )
    .unwrap();
    assert_eq!(
        (st, text.as_str()),
        (200, "marked job native as successful: true")
    );
    let c = wait_state(&s, "child", "succeeded");
    assert_eq!(c["trigger"], "dependency");
    assert_eq!(chronos_job(&s, "native")["successCount"], 1);

    // search, summary, graph/csv, leader, stats, ping, metrics, CORS.
    let (_, found) = s.get("/scheduler/jobs/search?name=NAT");
    assert_eq!(found.as_array().unwrap().len(), 1);
    let (_, found) = s.get("/scheduler/jobs/search?command=edited&limit=5&offset=1");
    assert_eq!(found, json!([]));
    let (_, found) = s.get("/scheduler/jobs/search?any=TRUE");
    assert_eq!(found[0]["name"], "child");
    assert_eq!(s.get("/scheduler/jobs/search?limit=x").0, 400);
    let (_, sum) = s.get("/v1/scheduler/jobs/summary");
    assert_eq!(
        sum["jobs"],
        json!([
            {"name": "child", "status": "success", "state": "idle", "schedule": "", "parents": ["native"], "disabled": false},
            {"name": "native", "status": "success", "state": "idle", "schedule": "0 3 * * *", "parents": [], "disabled": false}
        ])
    );
    let (_, csv) = s.get_text("/scheduler/graph/csv");
    assert_eq!(
        csv,
        "node,child,success,idle\nnode,native,success,idle\nlink,native,child\n"
    );
    let (_, leader) = s.get("/v1/scheduler/leader");
    assert_eq!(leader["leader"], format!("127.0.0.1:{}", s.port));
    let (_, stats) = s.get("/scheduler/stats/99thPercentile");
    assert_eq!(stats[0]["jobNameLabel"], "child");
    assert_eq!(s.get("/scheduler/stats/42nd").0, 400);
    let (_, stat) = s.get("/scheduler/job/stat/child");
    assert_eq!(stat["histogram"]["count"], 1);
    assert_eq!(stat["taskStatHistory"][0]["status"], "success");
    assert_eq!(s.get_text("/ping"), (200, "pong".to_owned()));
    // No Accept header (as chronos-python sends): Chronos's JSON. curl's */*: Prometheus.
    let auth = format!("Bearer {}", common::admin_token());
    let (_, _, m) = common::request(
        "GET",
        &format!("{}/metrics", s.url()),
        &[("Authorization", &auth)],
        "",
    )
    .unwrap();
    let m: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(m["counters"]["jobs.run.success.child"]["count"], 1);
    let (st, prom) = curl(&s, "curl chronos-node:8080/metrics");
    assert_eq!(st, 200);
    assert!(prom.contains("tempora_jobs"), "{prom}");
    // CORS only for the listed origin (`--cors-origin`): no header without an Origin or for
    // another origin, the origin itself (never `*`) for the listed one.
    let (st, head) = curl(
        &s,
        "curl -s -o /dev/null -D - chronos-node:8080/scheduler/jobs",
    );
    assert_eq!(st, 200);
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{head}"
    );
    let (st, head) = curl(
        &s,
        "curl -s -o /dev/null -D - -H 'Origin: http://evil.example' chronos-node:8080/scheduler/jobs",
    );
    assert_eq!(st, 200);
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{head}"
    );
    let (st, head) = curl(
        &s,
        "curl -s -o /dev/null -D - -H 'Origin: http://ui.example' chronos-node:8080/scheduler/jobs",
    );
    assert_eq!(st, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: http://ui.example"),
        "{head}"
    );

    // Wrong methods get Chronos's shape; CORS preflights are answered for the listed origin
    // only.
    let (st, head) = curl(
        &s,
        "curl -s -D - -X DELETE chronos-node:8080/scheduler/task/all",
    );
    assert_eq!(st, 405);
    assert!(head.contains(r#""status":"Method Not Allowed""#), "{head}");
    let (st, head) = curl(
        &s,
        "curl -s -D - -X OPTIONS -H 'Origin: http://ui.example' -H 'Access-Control-Request-Method: POST' chronos-node:8080/v1/scheduler/iso8601",
    );
    assert_eq!(st, 204);
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-methods"),
        "{head}"
    );
    let (st, _) = curl(
        &s,
        "curl -s -D - -X OPTIONS -H 'Origin: http://evil.example' -H 'Access-Control-Request-Method: POST' chronos-node:8080/v1/scheduler/iso8601",
    );
    assert_eq!(st, 403);

    // Re-posting a job whose start is empty keeps its phase: it does not run again.
    let phase = json!({"name": "phase", "command": "true", "schedule": "R//PT1H"}).to_string();
    assert_eq!(s.send("POST", "/scheduler/iso8601", &phase).0, 204);
    wait_state(&s, "phase", "succeeded");
    let first = chronos_job(&s, "phase")["schedule"].clone();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(s.send("POST", "/scheduler/iso8601", &phase).0, 204);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(chronos_job(&s, "phase")["schedule"], first);
    assert_eq!(s.runs("phase").len(), 1);
    assert_eq!(s.send("DELETE", "/scheduler/job/phase", "").0, 204);

    // A native edit of the zone drops the stale Chronos spelling of the old one.
    let (_, mut n) = s.get("/api/v1/jobs/native");
    assert_eq!(n["chronos"]["scheduleTimeZone"], "Europe/Berlin");
    n.as_object_mut().unwrap().remove("status");
    n["timezone"] = json!("Asia/Tokyo");
    s.put_job("native", n);
    let (_, n) = s.get("/api/v1/jobs/native");
    assert!(n["chronos"].get("scheduleTimeZone").is_none(), "{n}");
    assert_eq!(chronos_job(&s, "native")["scheduleTimeZone"], "Asia/Tokyo");

    // DELETE rewires like Chronos: the only child of a scheduled job inherits its schedule.
    assert_eq!(s.send("DELETE", "/scheduler/job/native", "").0, 204);
    let c = chronos_job(&s, "child");
    assert_eq!(c["schedule"], "0 3 * * *");
    assert_eq!(c["scheduleTimeZone"], "Asia/Tokyo");
    assert!(c.get("parents").is_none());
}

/// A start in the past: the latest past occurrence runs if it is within `epsilon` (Chronos 2.x
/// dropped such jobs, #699), and an older one does not.
#[test]
fn a_past_start_within_epsilon_runs_once() {
    let s = Server::start(&[]);
    let now = jiff::Timestamp::now();
    let recent = now - jiff::SignedDuration::from_secs(20);
    let old = now - jiff::SignedDuration::from_secs(600);
    let hourly = now - jiff::SignedDuration::from_secs(120);
    for (name, schedule, epsilon) in [
        ("recent", format!("R1/{recent}/PT1S"), "PT60S"),
        ("old", format!("R1/{old}/PT1S"), "PT60S"),
        ("hourly", format!("R/{hourly}/PT1H"), "PT5M"),
    ] {
        let body =
            json!({"name": name, "command": "true", "schedule": schedule, "epsilon": epsilon});
        let (st, v) = s.send("POST", "/v1/scheduler/iso8601", &body.to_string());
        assert_eq!(st, 204, "{v}");
    }
    wait_state(&s, "recent", "succeeded");
    wait_state(&s, "hourly", "succeeded");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(s.runs("recent").len(), 1);
    assert_eq!(s.runs("hourly").len(), 1);
    assert!(s.runs("old").is_empty());
    assert!(s.get("/api/v1/jobs/old").1["status"]["next_fire_at"].is_null());
    let next = common::ts(&s.get("/api/v1/jobs/hourly").1["status"]["next_fire_at"]);
    let expect = hourly + jiff::SignedDuration::from_secs(3600);
    assert_eq!(next.as_second(), expect.as_second());
}
