//! `tempora apply` and `tempora export` against a real server.

mod common;

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
    assert!(exported.join("extract.yaml").exists());
    let before = s.get("/api/v1/jobs").1;
    let o = s.cli(&["apply", "-f", exported.to_str().unwrap(), "--dry-run"]);
    assert!(
        out(&o).contains("0 created, 1 updated, 5 unchanged"),
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
