//! The API against its own documents: Schemathesis (PyPI) generates requests for every
//! operation of `/api/v1/openapi.json` and of the Chronos document, valid and invalid, sends them
//! to a real server with real tokens, and checks every answer: no 5xx, a status the document
//! lists, a body of the declared type and schema, and a 401 without a credential. Configuration
//! and seed: `tests/schemathesis/schemathesis.toml`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;
use serde_json::json;

/// Schemathesis's `st`, from the venv `scripts/test.sh` creates (override: `SCHEMATHESIS_VENV`).
fn schemathesis() -> PathBuf {
    let venv = std::env::var_os("SCHEMATHESIS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/schemathesis-venv")
        });
    let st = venv.join("bin/st");
    assert!(
        st.exists(),
        "{} is missing: run scripts/test.sh, which creates the venv with schemathesis \
         (python3 -m venv target/schemathesis-venv && target/schemathesis-venv/bin/pip install schemathesis==4.32.5)",
        st.display()
    );
    st
}

fn config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml")
}

/// Run `st` over one document; panics with its report unless everything passed.
fn run(st: &PathBuf, env: &[(&str, String)], document: &str, base: &str) {
    let out = Command::new(st)
        .arg("--no-color")
        .arg("--config-file")
        .arg(config())
        .args(["run", document, "--url", base])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("start schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "schemathesis found failures in {document} (report above)"
    );
    assert!(
        report.contains("Tested:") && !report.contains("Tested: 0"),
        "schemathesis tested nothing"
    );
}

#[test]
fn generated_requests_find_no_server_error_and_no_answer_outside_the_documents() {
    let st = schemathesis();
    // No local worker: the jobs the generated requests make are saved but never run. A worker's
    // claim is held 200ms at most when nothing is queued (not 30s per generated claim).
    let server = Server::start(&["--local-slots", "0", "--claim-wait-max", "200ms"]);
    let job = json!({"command": "true", "schedule": "0 0 1 1 *"});
    server.put_job("st-job", job.clone());
    server.put_job("st-doomed", job);
    let run = server.trigger("st-job")["id"].as_i64().expect("run id");
    // Ended, so that following its output (`follow=true`) ends at once.
    let (status, _) = server.send("POST", &format!("/api/v1/runs/{run}/cancel"), "");
    assert_eq!(status, 202);
    let doomed_run = server.trigger("st-doomed")["id"].as_i64().expect("run id");
    server.token("st-victim", "viewer");
    let worker_token = server.token("st-worker", "worker");
    let env = [
        ("TEMPORA_TOKEN", common::admin_token().to_owned()),
        ("ST_WORKER_TOKEN", worker_token),
        ("ST_JOB", "st-job".to_owned()),
        ("ST_DOOMED_JOB", "st-doomed".to_owned()),
        ("ST_RUN", run.to_string()),
        ("ST_DOOMED_RUN", doomed_run.to_string()),
        ("ST_TOKEN", "st-victim".to_owned()),
        ("ST_WORKER", "st-worker-1".to_owned()),
        ("ST_TASK", "ct:0:1:st-job:".to_owned()),
    ];
    let url = server.url();
    run_st(&st, &env, &url);
    // The server is still up and answers.
    assert_eq!(server.get("/api/v1/status").0, 200, "{}", server.log());
    assert!(
        !server.log().contains("panicked"),
        "a handler panicked:\n{}",
        server.log()
    );
}

fn run_st(st: &PathBuf, env: &[(&str, String)], url: &str) {
    run(st, env, &format!("{url}/api/v1/openapi.json"), url);
    run(
        st,
        env,
        &format!("{url}/api/v1/chronos/openapi.json"),
        &format!("{url}/scheduler"),
    );
}
