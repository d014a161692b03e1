//! `tempora apply` and `tempora export` against a real server.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::json;

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn apply_is_idempotent_reports_errors_and_prunes_only_managed_jobs() {
    let s = Server::start(&[]);
    let dir = s.scratch().join("jobs");
    std::fs::create_dir_all(dir.join("etl")).unwrap();
    // The child comes first in file order; apply must create its parent first.
    std::fs::write(
        dir.join("a-report.yaml"),
        "name: report\ncommand: echo report\nparents: [extract]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etl/pipeline.yaml"),
        "- name: extract\n  command: echo extract\n  schedule: '0 3 * * *'\n  timezone: Europe/Berlin\n  retries: 2\n- name: cleanup\n  command: rm -rf /tmp/nothing\n  schedule: '@daily'\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("single.json"),
        r#"{"name":"ping","command":"true","schedule":"@every 1h"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("multi.yml"),
        "---\nname: doc1\ncommand: 'true'\n---\nname: doc2\ncommand: 'true'\n",
    )
    .unwrap();
    s.put_job("by-hand", json!({"command": "true"}));
    let d = dir.to_str().unwrap();

    let o = s.cli(&["apply", "-f", d, "--dry-run"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("plan: 6 created"), "{}", out(&o));
    assert_eq!(
        s.get("/api/v1/jobs/report").0,
        404,
        "dry run changes nothing"
    );

    let o = s.cli(&["apply", "-f", d]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("applied: 6 created, 0 updated, 0 unchanged"),
        "{}",
        out(&o)
    );
    let (_, report) = s.get("/api/v1/jobs/report");
    assert_eq!(report["parents"], json!(["extract"]));
    assert_eq!(report["labels"]["managed-by"], "tempora-apply");

    let o = s.cli(&["apply", "-f", d]);
    assert!(
        out(&o).contains("0 created, 0 updated, 6 unchanged"),
        "{}",
        out(&o)
    );

    std::fs::write(
        dir.join("single.json"),
        r#"{"name":"ping","command":"true","schedule":"@every 2h"}"#,
    )
    .unwrap();
    let o = s.cli(&["apply", "-f", d, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changed: Vec<_> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "unchanged")
        .collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["job"], "ping");
    assert_eq!(changed[0]["action"], "updated");

    // Errors: reported with file, job and field; nothing is applied.
    std::fs::write(dir.join("bad.yaml"), "- name: broken\n  command: x\n  schedule: '61 * * * *'\n- name: typo\n  command: x\n  retires: 3\n").unwrap();
    std::fs::write(
        dir.join("single.json"),
        r#"{"name":"ping","command":"true","schedule":"@every 3h"}"#,
    )
    .unwrap();
    let o = s.cli(&["apply", "-f", d]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("bad.yaml: job `broken`: schedule:"), "{text}");
    assert!(
        text.contains("bad.yaml: job `typo`") && text.contains("retires"),
        "{text}"
    );
    assert_eq!(
        s.get("/api/v1/jobs/ping").1["schedule"],
        "@every 2h",
        "nothing applied"
    );
    std::fs::remove_file(dir.join("bad.yaml")).unwrap();

    // Prune: only managed jobs that left the files.
    std::fs::remove_file(dir.join("a-report.yaml")).unwrap();
    let o = s.cli(&["apply", "-f", d, "--prune"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("deleted"), "{}", out(&o));
    assert_eq!(s.get("/api/v1/jobs/report").0, 404);
    assert_eq!(
        s.get("/api/v1/jobs/by-hand").0,
        200,
        "jobs not created by apply are never pruned"
    );

    // Export → apply reads back the same jobs.
    let exported = s.scratch().join("exported");
    let o = s.cli(&["export", "--dir", exported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    let text = std::fs::read_to_string(exported.join("extract.yaml")).unwrap();
    assert!(text.starts_with("# kind: command\n"), "{text}");
    let before = s.get("/api/v1/jobs").1;
    // by-hand was not made by apply: taken over only with --adopt.
    let o = s.cli(&["apply", "-f", exported.to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("job `by-hand`") && out(&o).contains("--adopt"),
        "{}",
        out(&o)
    );
    let o = s.cli(&[
        "apply",
        "-f",
        exported.to_str().unwrap(),
        "--dry-run",
        "--adopt",
    ]);
    assert!(
        out(&o).contains("0 created, 1 updated, 5 unchanged")
            && out(&o).contains("labels.managed-by: (not set) → \"tempora-apply\""),
        "only by-hand gains the managed label: {}",
        out(&o)
    );
    let o = s.cli(&["export"]);
    let all: serde_json::Value = serde_yaml_ng::from_slice(&o.stdout).unwrap();
    assert_eq!(
        all.as_array().unwrap().len(),
        before["jobs"].as_array().unwrap().len()
    );
}

/// `tempora import crontab` turns a crontab into job files that `apply` creates as the crontab
/// meant them (zones, owner, environment, `%` input); what it cannot import is reported with the
/// line and exit status 1. A `CRON_TZ=` prefix in a schedule is understood by the API, the
/// preview and `schedule next`.
#[test]
fn a_crontab_imports_into_jobs_that_apply_creates() {
    let s = Server::start(&[]);
    let dir = s.scratch().join("crontab");
    std::fs::create_dir_all(&dir).unwrap();
    let crontab = dir.join("crontab");
    let out_file = dir.join("out");
    std::fs::write(
        &crontab,
        format!(
            "MAILTO=ops@example.com\nGREETING=hello\n# says hello\n\
             * * * * * echo $GREETING > {o}.1; cat >> {o}.1%from stdin\n\
             CRON_TZ=Asia/Tokyo\n0 9 * * 1-5 /usr/bin/true\n@reboot /usr/bin/true\n",
            o = out_file.display()
        ),
    )
    .unwrap();
    let jobs_dir = dir.join("jobs");
    let o = s.cli(&[
        "import",
        "crontab",
        crontab.to_str().unwrap(),
        "--tz",
        "Europe/Berlin",
        "--dir",
        jobs_dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("line 7: @reboot"), "{err}");
    let o = s.cli(&["apply", "-f", jobs_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    let (_, echo) = s.get("/api/v1/jobs/cron-echo");
    assert_eq!(echo["schedule"], "* * * * *", "{echo}");
    assert_eq!(echo["timezone"], "Europe/Berlin");
    assert_eq!(echo["owner"], "ops@example.com");
    assert_eq!(echo["env"]["GREETING"], "hello");
    assert_eq!(echo["description"], "says hello");
    let (_, t) = s.get("/api/v1/jobs/cron-true");
    assert_eq!(
        (t["timezone"].as_str(), t["schedule"].as_str()),
        (Some("Asia/Tokyo"), Some("0 9 * * 1-5"))
    );
    // The imported command runs as cron would run it, `%` input included.
    let id = s.trigger("cron-echo")["id"].as_i64().unwrap();
    let r = s.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "succeeded", "{r}");
    let got = std::fs::read_to_string(format!("{}.1", out_file.display())).unwrap();
    assert_eq!(got, "hello\nfrom stdin");
    // Standard input works too, and YAML goes to standard output.
    let o = std::process::Command::new(common::bin())
        .args(["import", "crontab", "-", "--tz", "UTC", "--prefix", "x-"])
        .stdin(std::fs::File::open(&crontab).unwrap())
        .output()
        .unwrap();
    let yaml = String::from_utf8_lossy(&o.stdout);
    assert!(
        yaml.contains("name: x-echo") && yaml.contains("timezone: UTC"),
        "{yaml}"
    );

    // CRON_TZ= in a schedule, everywhere a schedule is read.
    let (st, v) = s.send(
        "PUT",
        "/api/v1/jobs/tokyo",
        &json!({"command": "true", "schedule": "CRON_TZ=Asia/Tokyo 0 9 * * *"}).to_string(),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (v["timezone"].as_str(), v["schedule"].as_str()),
        (Some("Asia/Tokyo"), Some("0 9 * * *")),
        "{v}"
    );
    let (st, v) = s.send(
        "PUT",
        "/api/v1/jobs/tokyo",
        &json!({"command": "true", "schedule": "CRON_TZ=Asia/Tokyo 0 9 * * *", "timezone": "Europe/Paris"}).to_string(),
    );
    assert_eq!(
        (st, v["error"]["field"].as_str()),
        (400, Some("schedule")),
        "{v}"
    );
    let (st, v) = s.send(
        "POST",
        "/api/v1/schedules/preview",
        &json!({"schedule": "CRON_TZ=Asia/Tokyo 0 9 * * *", "after": "2026-12-31T23:00:00Z", "count": 1}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["next"][0], "2027-01-01T09:00:00+09:00", "{v}");
    let o = s.cli(&[
        "schedule",
        "next",
        "CRON_TZ=Asia/Tokyo 0 9 * * *",
        "--after",
        "2026-12-31T23:00:00Z",
        "--count",
        "1",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "2027-01-01T09:00:00+09:00\n"
    );
}

/// `apply` checks the whole set before anything is written, and writes it in one transaction:
/// a cycle through the server's jobs, or one bad job among good ones, applies nothing — in the
/// dry run too. The dry run shows each changed field; an operator's pause survives a re-apply
/// unless the file says `paused`.
#[test]
fn apply_is_atomic_shows_field_changes_and_keeps_a_pause() {
    let s = Server::start(&[]);
    let dir = s.scratch().join("atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write(
        "a.yaml",
        "name: upstream\ncommand: echo up\nschedule: '@hourly'\n",
    );
    let o = s.cli(&["apply", "-f", d]);
    assert!(o.status.success(), "{}", out(&o));

    // A cycle through a job that is only on the server (upstream ← loop ← upstream).
    write(
        "a.yaml",
        "name: upstream\ncommand: echo up\nparents: [loop]\n",
    );
    write(
        "b.yaml",
        "name: loop\ncommand: echo loop\nparents: [upstream]\n",
    );
    for dry in [true, false] {
        let mut args = vec!["apply", "-f", d];
        if dry {
            args.push("--dry-run");
        }
        let o = s.cli(&args);
        assert_eq!(o.status.code(), Some(1), "dry run {dry}: {}", out(&o));
        assert!(out(&o).contains("cycle"), "{}", out(&o));
    }
    assert_eq!(s.get("/api/v1/jobs/loop").0, 404, "nothing applied");
    assert_eq!(s.get("/api/v1/jobs/upstream").1["schedule"], "@hourly");

    // One bad job among good ones (an `@at` long past): nothing of the set is written.
    write(
        "a.yaml",
        "name: upstream\ncommand: echo changed\nschedule: '@hourly'\n",
    );
    write(
        "b.yaml",
        "- name: fine\n  command: 'true'\n- name: stale\n  command: 'true'\n  schedule: '@at 2020-01-01T00:00:00Z'\n",
    );
    let o = s.cli(&["apply", "-f", d]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("b.yaml: job `stale`: schedule:"),
        "{}",
        out(&o)
    );
    assert_eq!(s.get("/api/v1/jobs/fine").0, 404, "nothing applied");
    assert_eq!(s.get("/api/v1/jobs/upstream").1["command"], "echo up");

    // The dry run shows each changed field.
    std::fs::remove_file(dir.join("b.yaml")).unwrap();
    let o = s.cli(&["apply", "-f", d, "--dry-run"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("would update")
            && out(&o).contains("command: \"echo up\" → \"echo changed\""),
        "{}",
        out(&o)
    );
    let o = s.cli(&["apply", "-f", d]);
    assert!(o.status.success(), "{}", out(&o));

    // An operator pauses it; re-applying the same file keeps the pause; `paused: false` ends it.
    assert!(s.cli(&["job", "pause", "upstream"]).status.success());
    let o = s.cli(&["apply", "-f", d]);
    assert!(out(&o).contains("1 unchanged"), "{}", out(&o));
    assert_eq!(s.get("/api/v1/jobs/upstream").1["paused"], true);
    write(
        "a.yaml",
        "name: upstream\ncommand: echo changed\nschedule: '@hourly'\npaused: false\n",
    );
    let o = s.cli(&["apply", "-f", d, "--dry-run"]);
    assert!(out(&o).contains("paused: true → false"), "{}", out(&o));
    let o = s.cli(&["apply", "-f", d]);
    assert!(o.status.success(), "{}", out(&o));
    assert_ne!(s.get("/api/v1/jobs/upstream").1["paused"], true);
}
