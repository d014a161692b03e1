//! What a run's process sees of the world, through the real binary: a clean environment (an
//! allow-list of the server's variables, never the rest), tempora's own variables that no job
//! or trigger can override, loader and shell start-up variables refused to non-admin triggers,
//! and Chronos `arguments` that reach the command as data, never as shell syntax.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

fn output(s: &Server, run: &Value) -> String {
    let id = run["id"].as_i64().expect("run id");
    let r = s.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "succeeded", "{r}");
    s.get_text(&format!("/api/v1/runs/{id}/log")).1
}

#[test]
fn runs_see_an_allow_list_of_the_servers_environment_only() {
    let s = Server::start_env(
        &["--pass-env", "PASSED_ON"],
        &[
            ("SERVER_ONLY_SECRET", "hunter2"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t-key"),
            ("TEMPORA_UNRELATED", "tempora-own"),
            ("PASSED_ON", "yes-please"),
            ("LANG", "C.UTF-8"),
        ],
    );
    s.put_job(
        "printenv",
        json!({"command": "env | sort", "env": {"JOB_VAR": "from-job"}}),
    );
    let out = output(&s, &s.trigger("printenv"));
    for hidden in ["hunter2", "s3cr3t-key", "tempora-own", "SERVER_ONLY_SECRET"] {
        assert!(!out.contains(hidden), "{hidden} leaked:\n{out}");
    }
    for shown in [
        "PATH=",
        "LANG=C.UTF-8",
        "PASSED_ON=yes-please",
        "JOB_VAR=from-job",
        "TEMPORA_JOB=printenv",
        "CHRONOS_JOB_NAME=printenv",
    ] {
        assert!(out.contains(shown), "{shown} missing:\n{out}");
    }
    // `--pass-env` never passes tempora's own variables.
    let out = std::process::Command::new(common::bin())
        .args([
            "server",
            "--pass-env",
            "TEMPORA_DATABASE_URL",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TEMPORA_DATABASE_URL"));
}

#[test]
fn reserved_and_start_up_variables_are_refused() {
    let s = Server::start(&[]);
    // A job cannot set tempora's variables; nothing is stored.
    let (st, v) = s.send(
        "PUT",
        "/api/v1/jobs/spoof",
        &json!({"command": "true", "env": {"TEMPORA_JOB": "other"}}).to_string(),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["field"], "env.TEMPORA_JOB");
    assert_eq!(s.get("/api/v1/jobs/spoof").0, 404);
    s.put_job(
        "echo",
        json!({"command": "echo \"$TEMPORA_JOB ${LD_PRELOAD-none}\""}),
    );
    // Nor can a trigger.
    let (st, v) = s.send(
        "POST",
        "/api/v1/jobs/echo/runs",
        &json!({"env": {"TEMPORA_RUN_ID": "1"}}).to_string(),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["field"], "env.TEMPORA_RUN_ID");
    // Overrides are an edit of the job for one run: an operator may trigger, not override
    // (a program reads its variables and arguments: PERL5OPT, GIT_CONFIG_*, `bash -c …`).
    let token = |name: &str, role: &str| {
        let (st, v) = s.send(
            "POST",
            "/api/v1/tokens",
            &json!({"name": name, "role": role}).to_string(),
        );
        assert_eq!(st, 201, "{v}");
        format!("Bearer {}", v["token"].as_str().unwrap())
    };
    let (operator, editor) = (token("oncall", "operator"), token("deployer", "editor"));
    let url = format!("{}/api/v1/jobs/echo/runs", s.url());
    let trigger = |auth: &str, body: Value| {
        let (st, _, text) = common::request(
            "POST",
            &url,
            &[
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ],
            &body.to_string(),
        )
        .unwrap();
        (st, text)
    };
    for body in [
        json!({"env": {"PERL5OPT": "-Mstrict"}}),
        json!({"env": {"GIT_CONFIG_COUNT": "1"}}),
        json!({"arguments": ["-c", "id"]}),
        json!({"arguments": []}),
    ] {
        let (st, text) = trigger(&operator, body.clone());
        assert_eq!(st, 403, "{body}: {text}");
        assert!(text.contains("editor"), "{text}");
    }
    // Even an editor may not set loader or shell start-up variables in a trigger (admin only),
    // nor the ones tempora sets.
    for var in [
        "LD_PRELOAD",
        "BASH_ENV",
        "ENV",
        "LD_LIBRARY_PATH",
        "BASH_FUNC_x%%",
        "SHELLOPTS",
    ] {
        let (st, text) = trigger(&editor, json!({"env": {var: "/tmp/evil"}}));
        assert_eq!(st, 400, "{var}: {text}");
        assert!(text.contains(&format!("env.{var}")), "{text}");
    }
    for var in ["CHRONOS_JOB_NAME", "MESOS_TASK_ID", "mesos_task_id", "HOST"] {
        let (st, text) = trigger(&editor, json!({"env": {var: "x"}}));
        assert_eq!(st, 400, "{var}: {text}");
    }
    assert!(s.runs("echo").is_empty(), "nothing was queued");
    // An admin may (it could write the job anyway); the run sees it.
    let (st, run) = s.send(
        "POST",
        "/api/v1/jobs/echo/runs",
        &json!({"env": {"LD_PRELOAD": ""}}).to_string(),
    );
    assert_eq!(st, 201, "{run}");
    assert_eq!(output(&s, &run), "echo \n");
}

#[test]
fn chronos_arguments_are_data_not_shell() {
    let s = Server::start(&[]);
    let marker = s.scratch().join("pwned");
    s.put_job("show", json!({"command": "printf '<%s>\\n'"}));
    let payload = format!("$(touch {}) && echo X `id` | cat", marker.display());
    let encoded: String = payload
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (st, v) = s.send(
        "PUT",
        &format!("/scheduler/job/show?arguments={encoded}"),
        "",
    );
    assert_eq!(st, 204, "{v}");
    let run = s.wait_for(Duration::from_secs(20), "the run", || {
        s.runs("show").into_iter().next()
    });
    let out = output(&s, &run);
    assert!(!marker.exists(), "the arguments ran as shell");
    assert!(!out.contains("uid="), "{out}");
    let expected: String = payload
        .split_whitespace()
        .map(|w| format!("<{w}>\n"))
        .collect();
    assert_eq!(out, expected);
    // Quotes in the arguments are data too.
    let (st, _) = s.send(
        "PUT",
        "/scheduler/job/show?arguments=it%27s%20%22fine%22",
        "",
    );
    assert_eq!(st, 204);
    let newest = s.wait_for(Duration::from_secs(20), "the second run", || {
        let runs = s.runs("show");
        (runs.len() == 2).then(|| runs[0].clone())
    });
    assert_eq!(output(&s, &newest), "<it's>\n<\"fine\">\n");
}
