//! Dependent jobs end to end: a chain runs in order, progress survives a restart, the graph
//! endpoints, and deleting a parent.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::json;

#[test]
fn chain_runs_in_order_and_progress_survives_restart() {
    let mut s = Server::start(&[]);
    let ledger = s.scratch().join("ledger");
    let cmd = |n: &str| format!("echo {n} >> {}", ledger.display());
    s.put_job("extract", json!({"command": cmd("extract")}));
    s.put_job("load", json!({"command": cmd("load"), "soft_error": true}));
    s.put_job(
        "report",
        json!({"command": cmd("report"), "parents": ["extract", "load"]}),
    );
    s.put_job(
        "mail",
        json!({"command": cmd("mail"), "parents": ["report"]}),
    );
    s.trigger("extract");
    s.wait_for(Duration::from_secs(5), "extract done", || {
        s.runs("extract")
            .first()
            .filter(|r| r["state"] == "succeeded")
            .cloned()
    });
    // Restart between the two parents: the progress is in the store.
    s.kill9();
    s.spawn();
    assert!(s.runs("report").is_empty());
    s.put_job(
        "load",
        json!({"command": format!("{}; exit 1", cmd("load")), "soft_error": true}),
    );
    s.trigger("load");
    let mail = s.wait_for(Duration::from_secs(10), "mail ran", || {
        s.runs("mail")
            .into_iter()
            .find(|r| r["state"] == "succeeded")
    });
    assert_eq!(mail["trigger"], "dependency");
    let report = &s.runs("report")[0];
    assert_eq!(report["trigger"], "dependency");
    assert_eq!(report["triggered_by"].as_array().unwrap().len(), 2);
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert_eq!(text, "extract\nload\nreport\nmail\n");

    let (st, g) = s.get("/api/v1/graph");
    assert_eq!(st, 200);
    assert_eq!(g["edges"].as_array().unwrap().len(), 3);
    assert!(
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "mail" && n["last_state"] == "succeeded")
    );
    let (st, dot) = s.get_text("/api/v1/graph?format=dot");
    assert_eq!(st, 200);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("\"extract\" -> \"report\""), "{dot}");
    assert_eq!(s.get("/api/v1/graph?format=svg").0, 400);

    // A cycle through an update is refused and names the jobs.
    let (st, v) = s.send(
        "PUT",
        "/api/v1/jobs/extract",
        &json!({"command": "true", "parents": ["mail"]}).to_string(),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "cycle");
    // Deleting a parent needs force; then the child drops it.
    let (st, v) = s.send("DELETE", "/api/v1/jobs/report", "");
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("mail"));
    let o = s.cli(&["job", "rm", "report", "--force"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        s.get("/api/v1/jobs/mail").1["parents"],
        serde_json::Value::Null
    );
}
