//! `run_as` through the real binary: a root server runs a job's processes as another user
//! (uid, gid, groups, HOME/USER/LOGNAME), only an admin may ask for that, Chronos's
//! `runAsUser` means the same, and a server that cannot switch users refuses such a job at
//! save time instead of running it as itself. Needs root (CI runs as root).

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, free_port};
use serde_json::{Value, json};

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// True when the test can run; fails under CI, where it must.
fn runnable() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the run_as tests need root; CI must run them"
    );
    eprintln!("skipped: run_as tests need root");
    false
}

fn token(s: &Server, name: &str, role: &str) -> String {
    let (st, v) = s.send(
        "POST",
        "/api/v1/tokens",
        &json!({"name": name, "role": role}).to_string(),
    );
    assert_eq!(st, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

fn put_as(s: &Server, secret: &str, name: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {secret}");
    let (st, _, text) = common::request(
        "PUT",
        &format!("{}/api/v1/jobs/{name}", s.url()),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    )
    .expect("request");
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn a_job_runs_as_its_user_and_only_an_admin_may_ask() {
    if !runnable() {
        return;
    }
    let s = Server::start(&[]);
    let who = "id -u; id -g; id -G; echo \"$HOME $USER $LOGNAME\"";
    s.put_job("as-nobody", json!({"command": who, "run_as": "nobody"}));
    let id = s.trigger("as-nobody")["id"].as_i64().unwrap();
    let r = s.wait_final(id, Duration::from_secs(10));
    assert_eq!(r["state"], "succeeded", "{r}");
    let out = s.get_text(&format!("/api/v1/runs/{id}/log")).1;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65534", "{out}");
    assert_eq!(lines[1], "65534", "{out}");
    assert_eq!(lines[2], "65534", "{out}");
    assert_eq!(lines[3], "/nonexistent nobody nobody", "{out}");
    // Read back as written.
    assert_eq!(s.get("/api/v1/jobs/as-nobody").1["run_as"], "nobody");

    // An editor may not make a job run as another user; the server's own user is no switch.
    let editor = token(&s, "ed", "editor");
    let (st, v) = put_as(
        &s,
        &editor,
        "ed-job",
        &json!({"command": "true", "run_as": "nobody"}),
    );
    assert_eq!(st, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("admin"));
    assert_eq!(s.get("/api/v1/jobs/ed-job").0, 404);
    let (st, v) = put_as(
        &s,
        &editor,
        "ed-job",
        &json!({"command": "true", "run_as": "root"}),
    );
    assert_eq!(st, 201, "{v}");
    // An editor may not choose the arguments or variables of a run as another user either.
    let (st, _, text) = common::request(
        "POST",
        &format!("{}/api/v1/jobs/as-nobody/runs", s.url()),
        &[
            ("Authorization", &format!("Bearer {editor}")),
            ("Content-Type", "application/json"),
        ],
        r#"{"arguments": ["x"]}"#,
    )
    .unwrap();
    assert_eq!(st, 403, "{text}");
    // A user the machine does not know, or a malformed one: 400 naming the field.
    for bad in ["no-such-user-here", "-rf", "a b", ""] {
        let (st, v) = s.send(
            "PUT",
            "/api/v1/jobs/bad-user",
            &json!({"command": "true", "run_as": bad}).to_string(),
        );
        assert_eq!(
            (st, v["error"]["field"].as_str()),
            (400, Some("run_as")),
            "{bad}: {v}"
        );
    }
    assert_eq!(s.get("/api/v1/jobs/bad-user").0, 404);

    // Through the Chronos API too, and the refusal is a 403 there as well.
    let auth = format!("Bearer {editor}");
    let (st, _, text) = common::request(
        "POST",
        &format!("{}/scheduler/iso8601", s.url()),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &json!({"name": "ed-chronos", "command": "true", "schedule": "R1//PT1H",
                "runAsUser": "nobody", "owner": "x@example.com"})
        .to_string(),
    )
    .unwrap();
    assert_eq!(st, 403, "{text}");
    assert_eq!(s.get("/api/v1/jobs/ed-chronos").0, 404);
    // Chronos's runAsUser is the same field.
    let (st, v) = s.send(
        "POST",
        "/scheduler/iso8601",
        &json!({"name": "chronos-nobody", "command": "id -un", "schedule": "R1//PT1H",
                "runAsUser": "nobody", "owner": "x@example.com"})
        .to_string(),
    );
    assert!(st < 300, "{st} {v}");
    assert_eq!(s.get("/api/v1/jobs/chronos-nobody").1["run_as"], "nobody");
    let (_, jobs) = s.get("/scheduler/jobs");
    let cj = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "chronos-nobody")
        .cloned()
        .unwrap();
    assert_eq!(cj["runAsUser"], "nobody");
    let id = s.trigger("chronos-nobody")["id"].as_i64().unwrap();
    s.wait_final(id, Duration::from_secs(10));
    assert_eq!(s.get_text(&format!("/api/v1/runs/{id}/log")).1, "nobody\n");
}

#[test]
fn a_server_that_cannot_switch_users_refuses_run_as_at_save_time() {
    if !runnable() {
        return;
    }
    // A server running as `nobody`, with its data directory and token file its own.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, common::admin_token()).unwrap();
    for p in [dir.path(), data.as_path(), token_file.as_path()] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let port = free_port();
    let log =
        std::fs::File::create(std::env::temp_dir().join(format!("run-as-{port}.log"))).unwrap();
    let mut child = Command::new(common::bin())
        .arg("server")
        .arg("--data-dir")
        .arg(&data)
        .arg("--admin-token-file")
        .arg(&token_file)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("HOME", dir.path())
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !common::http("GET", &format!("{url}/ready"), "").is_ok_and(|r| r.0 == 200) {
        assert!(
            Instant::now() < deadline,
            "the server as nobody did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let put = |name: &str, body: Value| {
        let (st, text) = common::http(
            "PUT",
            &format!("{url}/api/v1/jobs/{name}"),
            &body.to_string(),
        )
        .expect("request");
        (
            st,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        )
    };
    // Not even an admin can make it run as root: it would run as nobody instead.
    let (st, v) = put("as-root", json!({"command": "id -u", "run_as": "root"}));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["field"], "run_as");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot switch"),
        "{v}"
    );
    assert_eq!(
        common::http("GET", &format!("{url}/api/v1/jobs/as-root"), "")
            .unwrap()
            .0,
        404
    );
    // Its own user is fine.
    let (st, v) = put("as-self", json!({"command": "id -u", "run_as": "nobody"}));
    assert_eq!(st, 201, "{v}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A remote worker that cannot switch users fails a `run_as` run, saying why; it never runs
/// it as its own user.
#[test]
fn a_worker_that_cannot_switch_users_fails_the_run() {
    if !runnable() {
        return;
    }
    let s = Server::start(&["--local-slots", "0"]);
    // `root` is the (root) server's own user, so any editor may save it; the worker below runs
    // as nobody.
    s.put_job(
        "needs-root",
        json!({"command": "id -u", "run_as": "root", "selector": {"pool": "unprivileged"}}),
    );
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let mut worker = Command::new(common::bin())
        .args([
            "worker",
            "--worker-id",
            "nobody-w",
            "--labels",
            "pool=unprivileged",
        ])
        .args(["--server", &s.url(), "--token", common::admin_token()])
        .env("HOME", dir.path())
        .env_remove("TEMPORA_SERVER")
        .env_remove("TEMPORA_TOKEN")
        .current_dir(dir.path())
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let id = s.trigger("needs-root")["id"].as_i64().unwrap();
    let r = s.wait_final(id, Duration::from_secs(20));
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["worker"], "nobody-w", "{r}");
    let err = r["error"].as_str().unwrap_or_default();
    assert!(err.contains("cannot run as `root`"), "{err}");
    assert_eq!(s.get_text(&format!("/api/v1/runs/{id}/log")).1, "");
}
