//! Container jobs on the real Docker engine, with the local test image (`scripts/test-image.sh`;
//! nothing is pulled): output, exit code, the job's environment only, timeout and cancel
//! (the container stopped and removed), capabilities (only workers that advertise `container`
//! claim such runs; the others say why a run waits), Chronos container jobs, bad input, and a
//! killed server's containers removed when it starts again.
//!
//! Each server gets its own `--node-id`: a node removes, when it starts, the containers its
//! local pool (`<node>/local`) left, and tests run side by side.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tempora_testkit::docker::{containers, test_image};

fn node(tag: &str) -> String {
    format!("ct-{tag}-{}", std::process::id())
}

fn start(tag: &str, extra: &[&str]) -> (Server, String) {
    let id = node(tag);
    let mut args = vec!["--node-id", id.as_str(), "--kill-grace", "1s"];
    args.extend_from_slice(extra);
    (Server::start(&args), id)
}

fn log(s: &Server, id: i64) -> String {
    s.get_text(&format!("/api/v1/runs/{id}/log")).1
}

fn left_behind(worker: &str) -> Vec<String> {
    containers(&[&format!("tempora.worker={worker}")])
}

#[test]
fn container_job_runs_with_the_jobs_environment_only() {
    let image = test_image();
    let (s, node) = start("env", &["--pass-env", "SERVER_SECRET"]);
    let job = s.put_job(
        "boxed",
        json!({
            "container": {"image": image, "pull": "never", "memory": "64m", "cpus": 0.5},
            "command": "echo out; echo err >&2; echo \"$GREETING $TOKEN\"; \
                        test -z \"$SERVER_SECRET\" && echo clean; echo \"job=$TEMPORA_JOB\"; exit 3",
            "env": {"GREETING": "hello"},
            "secrets": {"TOKEN": "s3cr3t-value"}
        }),
    );
    assert_eq!(job["status"]["kind"], "container");
    assert_eq!(job["container"]["image"], image);
    let run = s.trigger("boxed");
    let done = s.wait_final(run["id"].as_i64().unwrap(), Duration::from_secs(60));
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["exit_code"], 3);
    assert_eq!(done["error"], "exit status 3");
    let out = log(&s, done["id"].as_i64().unwrap());
    for want in ["out\n", "err\n", "hello ***\n", "clean\n", "job=boxed\n"] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert!(
        !out.contains("s3cr3t"),
        "a secret leaked into the output:\n{out}"
    );

    // Not a shell: the command and its arguments are the container's words.
    s.put_job(
        "words",
        json!({
            "container": {"image": image, "pull": "never"},
            "command": "echo", "shell": false, "arguments": ["a  b", "$HOME"]
        }),
    );
    let run = s.trigger("words");
    let done = s.wait_final(run["id"].as_i64().unwrap(), Duration::from_secs(60));
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(log(&s, done["id"].as_i64().unwrap()), "a  b $HOME\n");

    // Over its memory limit: the kernel kills it, and the run says so.
    s.put_job(
        "hog",
        json!({
            "container": {"image": image, "pull": "never", "memory": "8m"},
            "command": "exec dd if=/dev/zero of=/dev/null bs=64M count=1"
        }),
    );
    let run = s.trigger("hog");
    let done = s.wait_final(run["id"].as_i64().unwrap(), Duration::from_secs(60));
    assert_eq!(done["state"], "failed", "{done}");
    // The engine says OOM, or (cgroup v2 on older engines) only SIGKILL.
    let error = done["error"].as_str().unwrap();
    assert!(
        error.starts_with("exit status 137: killed")
            && error.ends_with("using more than container.memory (8m)"),
        "{error}"
    );

    // An image the engine does not have, and `pull: never`: a clear error, nothing started.
    s.put_job(
        "missing",
        json!({"container": {"image": "tempora-test/not-there:1", "pull": "never"}, "command": "true"}),
    );
    let run = s.trigger("missing");
    let done = s.wait_final(run["id"].as_i64().unwrap(), Duration::from_secs(60));
    assert_eq!(done["state"], "failed");
    assert_eq!(
        done["error"],
        "image `tempora-test/not-there:1` is not on this worker's Docker engine (container.pull: never)"
    );
    assert!(
        left_behind(&format!("{node}/local")).is_empty(),
        "containers left behind"
    );
}

#[test]
fn timeout_and_cancel_stop_and_remove_the_container() {
    let image = test_image();
    let (s, node) = start("stop", &[]);
    let worker = format!("{node}/local");
    s.put_job(
        "slow",
        json!({"container": {"image": image, "pull": "never"}, "command": "sleep 60", "timeout": "2s"}),
    );
    let started = std::time::Instant::now();
    let run = s.trigger("slow");
    let done = s.wait_final(run["id"].as_i64().unwrap(), Duration::from_secs(30));
    assert_eq!(done["state"], "timed_out", "{done}");
    assert_eq!(done["error"], "timed out after 2s");
    // 2 s, then SIGTERM (ignored by the shell as PID 1), SIGKILL 1 s later.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        left_behind(&worker).is_empty(),
        "the timed-out container is left"
    );

    s.put_job(
        "endless",
        json!({"container": {"image": image, "pull": "never"}, "command": "echo started; sleep 60"}),
    );
    let id = s.trigger("endless")["id"].as_i64().unwrap();
    s.wait_for(
        Duration::from_secs(30),
        "the container's first line",
        || log(&s, id).contains("started").then_some(()),
    );
    assert_eq!(
        containers(&[
            &format!("tempora.run={id}"),
            &format!("tempora.worker={worker}")
        ])
        .len(),
        1,
        "one container for the running run"
    );
    s.call(|api| async move { api.cancel_run(id).await })
        .expect("cancel");
    let done = s.wait_final(id, Duration::from_secs(30));
    assert_eq!(done["state"], "cancelled", "{done}");
    assert!(
        left_behind(&worker).is_empty(),
        "the cancelled container is left"
    );
}

#[test]
fn only_workers_with_the_capability_claim_container_jobs() {
    let image = test_image();
    let (s, node) = start("caps", &["--local-capabilities", "command,http"]);
    let local = format!("{node}/local");
    s.put_job(
        "boxed",
        json!({"container": {"image": image, "pull": "never"}, "command": "echo in a box"}),
    );
    s.put_job("plain", json!({"command": "echo on the host"}));
    let boxed = s.trigger("boxed")["id"].as_i64().unwrap();
    let reason = "no worker can run container jobs (none advertises capability `container`)";
    s.wait_for(Duration::from_secs(10), "the run's waiting reason", || {
        (s.run(boxed)["waiting"] == reason).then_some(())
    });
    let (_, job) = s.get("/api/v1/jobs/boxed");
    assert_eq!(job["status"]["waiting"], reason, "{job}");
    let plain = s.trigger("plain")["id"].as_i64().unwrap();
    let done = s.wait_final(plain, Duration::from_secs(30));
    assert_eq!(done["worker"], local.as_str());
    assert_eq!(s.run(boxed)["state"], "queued");

    // A worker that runs containers only: it takes the container run, never the command.
    let mut w = Worker::start(
        &format!("{node}-docker"),
        &[s.url()],
        &["--capabilities", "container"],
    );
    let done = s.wait_final(boxed, Duration::from_secs(60));
    assert_eq!(done["state"], "succeeded", "{done}\n{}", w.log());
    assert_eq!(done["worker"], w.id.as_str());
    assert_eq!(log(&s, boxed), "in a box\n");
    let (_, workers) = s.get("/api/v1/workers");
    let listed = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == w.id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(listed["capabilities"], json!(["container"]));
    for _ in 0..3 {
        let id = s.trigger("plain")["id"].as_i64().unwrap();
        let done = s.wait_final(id, Duration::from_secs(30));
        assert_eq!(
            done["worker"],
            local.as_str(),
            "a command ran on the container-only worker"
        );
    }
    w.kill9();

    // Unknown capabilities: refused by the worker's flag and by the server.
    let out = std::process::Command::new(bin())
        .args([
            "worker",
            "--server",
            &s.url(),
            "--token",
            admin_token(),
            "--capabilities",
            "gpu",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown capability `gpu`"), "{err}");
    // Capabilities are never labels: refused by the flags before anything starts.
    let out = std::process::Command::new(bin())
        .args([
            "worker",
            "--server",
            &s.url(),
            "--token",
            admin_token(),
            "--labels",
            "tempora.io/command=yes",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tempora.io/"), "{err}");
    let (st, body) = s.send(
        "POST",
        "/api/v1/workers/register",
        &json!({"id": "w-gpu", "slots": 1, "capabilities": ["gpu"]}).to_string(),
    );
    assert!(st == 400 || st == 422, "{st} {body}");
    assert!(body.to_string().contains("capabilities"), "{body}");
}

#[test]
fn chronos_container_jobs_run_and_read_back() {
    let image = test_image();
    let (s, node) = start("chronos", &[]);
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("greeting"), "hello from the host\n").unwrap();
    let container = json!({
        "type": "DOCKER", "image": image, "network": "NONE",
        "volumes": [{"hostPath": data.path().display().to_string(), "containerPath": "/data", "mode": "RO"}],
        "forcePullImage": false
    });
    let doc = json!({
        "name": "chronos-box", "command": "cat /data/greeting; touch /data/x 2>/dev/null || echo read-only",
        "schedule": "R/2030-01-01T00:00:00Z/PT24H", "owner": "ops@example.com",
        "container": container
    });
    let (st, body) = s.send("POST", "/scheduler/iso8601", &doc.to_string());
    assert_eq!(st, 204, "{body}");
    let (_, jobs) = s.get("/scheduler/jobs");
    let mine = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "chronos-box")
        .cloned()
        .unwrap();
    assert_eq!(mine["container"], container, "Chronos JSON reads back");
    let (_, native) = s.get("/api/v1/jobs/chronos-box");
    assert_eq!(native["status"]["kind"], "container");
    assert_eq!(native["container"]["network"], "none");
    assert_eq!(
        native["container"]["volumes"],
        json!([format!("{}:/data:ro", data.path().display())])
    );
    let (st, _) = s.send("PUT", "/scheduler/job/chronos-box", "");
    assert_eq!(st, 204);
    let run = s.wait_for(Duration::from_secs(10), "the Chronos start's run", || {
        s.runs("chronos-box").first().cloned()
    });
    let done = s.wait_final(run["id"].as_i64().unwrap(), Duration::from_secs(60));
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        log(&s, done["id"].as_i64().unwrap()),
        "hello from the host\nread-only\n"
    );
    assert!(left_behind(&format!("{node}/local")).is_empty());

    // Mounting the host's files needs role admin, whichever API is used.
    let editor = s.token("ed", "editor");
    let (st, _, body) = s.request_as("POST", "/scheduler/iso8601", Some(&editor), Some(&doc));
    assert_eq!(st, 403, "{body}");
    let (st, _, body) = s.request_as(
        "PUT",
        "/api/v1/jobs/vol",
        Some(&editor),
        Some(&json!({"container": {"image": image, "volumes": ["/etc:/host-etc:ro"]}})),
    );
    assert_eq!(st, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("container.volumes"),
        "{body}"
    );
    let (st, _, body) = s.request_as(
        "PUT",
        "/api/v1/jobs/hostnet",
        Some(&editor),
        Some(&json!({"container": {"image": image, "network": "host"}})),
    );
    assert_eq!(st, 403, "{body}");
    let (st, _, _) = s.request_as(
        "PUT",
        "/api/v1/jobs/plainbox",
        Some(&editor),
        Some(&json!({"container": {"image": image, "network": "none"}})),
    );
    assert_eq!(st, 201, "an ordinary container is an editor's");

    // Choosing the arguments or variables of the admin's mounting job is running code on the
    // host's files: admin only, through either API; a plain start stays an operator's.
    for body in [
        json!({"arguments": ["cat", "/data/greeting"]}),
        json!({"env": {"X": "1"}}),
    ] {
        let (st, _, answer) = s.request_as(
            "POST",
            "/api/v1/jobs/chronos-box/runs",
            Some(&editor),
            Some(&body),
        );
        assert_eq!(st, 403, "{body}: {answer}");
        assert!(answer.to_string().contains("container.volumes"), "{answer}");
    }
    let (st, _, answer) = s.request_as(
        "PUT",
        "/scheduler/job/chronos-box?arguments=cat%20/data/greeting",
        Some(&editor),
        None,
    );
    assert_eq!(st, 403, "{answer}");
    let (st, _, answer) = s.request_as("PUT", "/scheduler/job/chronos-box", Some(&editor), None);
    assert_eq!(st, 204, "{answer}");
    // That run ends before the test does (a server dropped mid-run would leave its container).
    s.wait_for(Duration::from_secs(30), "the editor's start to end", || {
        let runs = s.runs("chronos-box");
        (runs.len() == 2 && runs.iter().all(|r| r["state"] == "succeeded")).then_some(())
    });
    // The same for a job that switches users (the server runs as root here).
    s.put_job(
        "as-nobody",
        json!({"command": "sh", "shell": false, "run_as": "nobody", "schedule": "R/2030-01-01T00:00:00Z/PT24H"}),
    );
    let (st, _, answer) = s.request_as(
        "PUT",
        "/scheduler/job/as-nobody?arguments=-c%20id",
        Some(&editor),
        None,
    );
    assert_eq!(st, 403, "{answer}");

    // A Chronos read written back keeps what Chronos cannot say of the container.
    s.put_job(
        "tuned",
        json!({"container": {"image": image, "pull": "never", "entrypoint": ["/bin/sh", "-c"],
                             "user": "1000:1000", "cpus": 0.5, "memory": "64m"},
               "command": "id -u", "shell": false, "schedule": "R/2030-01-01T00:00:00Z/PT24H"}),
    );
    let (_, jobs) = s.get("/scheduler/jobs");
    let doc = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "tuned")
        .cloned()
        .unwrap();
    let (st, body) = s.send("POST", "/scheduler/iso8601", &doc.to_string());
    assert_eq!(st, 204, "{body}");
    let (_, native) = s.get("/api/v1/jobs/tuned");
    assert_eq!(
        native["container"],
        json!({"image": image, "pull": "never", "entrypoint": ["/bin/sh", "-c"],
               "user": "1000:1000", "cpus": 0.5, "memory": "64m"})
    );
    assert!(left_behind(&format!("{node}/local")).is_empty());
}

#[test]
fn bad_container_input_is_refused_naming_the_field() {
    let (s, _) = start("bad", &[]);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"container": {"image": "a"}, "http": {"url": "http://127.0.0.1/"}}),
            "container",
        ),
        (json!({"container": {"image": ""}}), "container.image"),
        (json!({"container": {"image": "a b"}}), "container.image"),
        (
            json!({"container": {"image": "a", "pull": "sometimes"}}),
            "container",
        ),
        (
            json!({"container": {"image": "a", "volumes": ["relative:/x:rw:z"]}}),
            "container.volumes[0]",
        ),
        (
            json!({"container": {"image": "a", "network": "container:other"}}),
            "container.network",
        ),
        (
            json!({"container": {"image": "a", "memory": "lots"}}),
            "container.memory",
        ),
        (
            json!({"container": {"image": "a", "cpus": -1}}),
            "container.cpus",
        ),
        (
            json!({"container": {"image": "a"}, "run_as": "nobody"}),
            "run_as",
        ),
        (
            json!({"command": "true", "selector": {"tempora.io/container": "yes"}}),
            "selector.tempora.io/container",
        ),
    ];
    for (body, field) in cases {
        let (st, answer) = s.send("PUT", "/api/v1/jobs/bad", &body.to_string());
        assert!(st == 400 || st == 422, "{body} → {st} {answer}");
        let text = answer.to_string();
        assert!(
            text.contains(field),
            "{body}: the answer does not name {field}: {answer}"
        );
        let (st, _) = s.get("/api/v1/jobs/bad");
        assert_eq!(st, 404, "{body}: a refused job was stored");
    }
}

#[test]
fn a_killed_server_leaves_no_container_behind() {
    let image = test_image();
    let (mut s, node) = start("kill9", &[]);
    let worker = format!("{node}/local");
    s.put_job(
        "long",
        json!({"container": {"image": image, "pull": "never"}, "command": "echo up; sleep 120"}),
    );
    let id = s.trigger("long")["id"].as_i64().unwrap();
    s.wait_for(
        Duration::from_secs(30),
        "the container's first line",
        || log(&s, id).contains("up").then_some(()),
    );
    s.kill9();
    assert_eq!(
        left_behind(&worker).len(),
        1,
        "the container outlives its killed server"
    );
    s.spawn();
    s.wait_for(
        Duration::from_secs(20),
        "the leftover container to go",
        || left_behind(&worker).is_empty().then_some(()),
    );
    let done = s.wait_final(id, Duration::from_secs(30));
    assert_eq!(done["state"], "lost", "{done}");
}
