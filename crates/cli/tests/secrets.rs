//! Job secrets through the real binary: sealed in the database, never returned (`***`), kept
//! by a write that sends `***` (export → apply round-trips), masked in the run's output (local
//! pool and remote worker), Chronos's `environmentVariables` entries marked `secret`, the key
//! file made 0600, and a cluster whose nodes share the key file.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Server, Worker};
use serde_json::{Value, json};

const VALUE: &str = "s3cret-Value-4242";
/// The value in two pieces, as a job that splits it prints it (neither piece is masked).
const KEPT: &str = "s3cret\n-Value-4242\n";

fn log_of(s: &Server, id: i64) -> String {
    s.get_text(&format!("/api/v1/runs/{id}/log")).1
}

fn run(s: &Server, job: &str) -> (Value, String) {
    let id = s.trigger(job)["id"].as_i64().unwrap();
    let r = s.wait_final(id, Duration::from_secs(20));
    (r, log_of(s, id))
}

/// Every file of the data directory, as bytes.
fn data_bytes(s: &Server) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(s.data_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn secrets_are_sealed_masked_and_round_trip_through_export_and_apply() {
    let s = Server::start(&[]);
    let key_file = s.data_dir().join("secret.key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    s.put_job(
        "uses-secret",
        json!({
            "command": "echo \"pw=$DB_PASSWORD\"; echo \"$DB_PASSWORD\" | cut -c1-6; echo \"$DB_PASSWORD\" | cut -c7-",
            "env": {"PLAIN": "visible"},
            "secrets": {"DB_PASSWORD": VALUE},
        }),
    );
    // Reads show the name only.
    let (_, job) = s.get("/api/v1/jobs/uses-secret");
    assert_eq!(job["secrets"], json!({"DB_PASSWORD": "***"}), "{job}");
    assert_eq!(job["env"]["PLAIN"], "visible");
    let (_, list) = s.get("/api/v1/jobs");
    assert!(!list.to_string().contains(VALUE));
    // The job gets the value; its output shows `***` where the value was.
    let (r, out) = run(&s, "uses-secret");
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(out, "pw=***\ns3cret\n-Value-4242\n", "{out}");
    // Nowhere in the database files, the server's log or the audit log.
    assert!(
        !contains(&data_bytes(&s), VALUE),
        "the value is stored in clear"
    );
    assert!(!s.log().contains(VALUE));
    let (_, audit) = s.get("/api/v1/audit?limit=100");
    assert!(!audit.to_string().contains(VALUE));
    // A PUT sending `***` keeps the stored value.
    let (st, v) = s.send(
        "PUT",
        "/api/v1/jobs/uses-secret",
        &json!({
            "command": "echo \"$DB_PASSWORD\" | cut -c1-6; echo \"$DB_PASSWORD\" | cut -c7-",
            "secrets": {"DB_PASSWORD": "***"},
        })
        .to_string(),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(run(&s, "uses-secret").1, KEPT);
    // `***` for a name without a stored value, a sealed-looking value, a name also in env: 400.
    for (body, field) in [
        (
            json!({"command": "true", "secrets": {"OTHER": "***"}}),
            "secrets.OTHER",
        ),
        (
            json!({"command": "true", "secrets": {"X": "sealed:v1:abcd:AAAA"}}),
            "secrets.X",
        ),
        (
            json!({"command": "true", "env": {"X": "1"}, "secrets": {"X": "2222"}}),
            "secrets.X",
        ),
        (
            json!({"command": "true", "secrets": {"TEMPORA_JOB": "xxxx"}}),
            "secrets.TEMPORA_JOB",
        ),
    ] {
        let (st, v) = s.send("PUT", "/api/v1/jobs/uses-secret", &body.to_string());
        assert_eq!(
            (st, v["error"]["field"].as_str()),
            (400, Some(field)),
            "{v}"
        );
    }
    assert_eq!(
        run(&s, "uses-secret").1,
        KEPT,
        "a refused write changed nothing"
    );

    // export → apply: the files hold `***` (0600), and applying them keeps the secret.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("jobs");
    let o = s.cli(&["export", "--dir", out_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let file = out_dir.join("uses-secret.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("DB_PASSWORD: '***'") || text.contains("DB_PASSWORD: \"***\""),
        "{text}"
    );
    assert!(!text.contains(VALUE));
    // (Made through the API, not by apply: taken over with --adopt.)
    let o = s.cli(&["apply", "-f", out_dir.to_str().unwrap(), "--adopt"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(run(&s, "uses-secret").1, KEPT);
    // A file with the secret's value itself: the same value is no change; another is one,
    // shown without the value.
    let text = std::fs::read_to_string(&file).unwrap();
    let masked = if text.contains("DB_PASSWORD: '***'") {
        "DB_PASSWORD: '***'"
    } else {
        "DB_PASSWORD: \"***\""
    };
    std::fs::write(
        &file,
        text.replace(masked, &format!("DB_PASSWORD: '{VALUE}'")),
    )
    .unwrap();
    let o = s.cli(&["apply", "-f", out_dir.to_str().unwrap(), "--dry-run"]);
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(shown.contains("0 updated, 1 unchanged"), "{shown}");
    std::fs::write(&file, text.replace(masked, "DB_PASSWORD: 'another-value'")).unwrap();
    let o = s.cli(&["apply", "-f", out_dir.to_str().unwrap(), "--dry-run"]);
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        shown.contains("secrets.DB_PASSWORD: \"***\" → \"*** (a new value)\"")
            && !shown.contains("another-value"),
        "{shown}"
    );
    std::fs::write(&file, text).unwrap();

    // Chronos: an environmentVariables entry with `"secret": true` is a secret.
    let (st, v) = s.send(
        "POST",
        "/scheduler/iso8601",
        &json!({"name": "chronos-secret", "command": "echo token=$API_TOKEN", "schedule": "R1//PT1H",
                "owner": "x@example.com",
                "environmentVariables": [{"name": "API_TOKEN", "value": "chronos-xyz-123", "secret": true},
                                         {"name": "MODE", "value": "prod"}]})
        .to_string(),
    );
    assert!(st < 300, "{st} {v}");
    let (_, jobs) = s.get("/scheduler/jobs");
    let cj = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "chronos-secret")
        .cloned()
        .unwrap();
    let vars = cj["environmentVariables"].as_array().unwrap();
    assert!(
        vars.contains(&json!({"name": "API_TOKEN", "value": "***", "secret": true})),
        "{cj}"
    );
    assert!(
        vars.contains(&json!({"name": "MODE", "value": "prod"})),
        "{cj}"
    );
    assert_eq!(run(&s, "chronos-secret").1, "token=***\n");
}

#[test]
fn a_remote_worker_gets_the_value_and_masks_it() {
    let s = Server::start(&["--local-slots", "0"]);
    let _w = Worker::start("secret-w", &[s.url()], &["--labels", "pool=sec"]);
    s.put_job(
        "remote-secret",
        json!({"command": "echo \"v=$PW\"; printf '%s' \"$PW\" | wc -c",
               "selector": {"pool": "sec"}, "secrets": {"PW": VALUE}}),
    );
    let (r, out) = run(&s, "remote-secret");
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(out, format!("v=***\n{}\n", VALUE.len()));
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secret.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(common::bin())
        .arg("server")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--secret-key-file"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret.key"), "{err}");
}

#[test]
fn cluster_nodes_sharing_the_key_file_open_each_others_secrets() {
    let pg = common::postgres::Postgres::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let k = key.to_str().unwrap();
    let n1 = Server::start(&[
        "--database-url",
        &url,
        "--node-id",
        "n1",
        "--local-slots",
        "0",
        "--secret-key-file",
        k,
    ]);
    let n2 = Server::start(&[
        "--database-url",
        &url,
        "--node-id",
        "n2",
        "--local-slots",
        "0",
        "--secret-key-file",
        k,
    ]);
    // Saved through n1, run by a worker that talks to n2 only.
    n1.put_job(
        "cluster-secret",
        json!({"command": "echo \"$PW\" | cut -c1-6", "secrets": {"PW": VALUE}}),
    );
    let _w = Worker::start("cw", &[n2.url()], &[]);
    let (r, out) = run(&n2, "cluster-secret");
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(out, "s3cret\n");
    // A node with another key cannot open it: the run fails saying why, it never runs without.
    let n3 = Server::start(&[
        "--database-url",
        &url,
        "--node-id",
        "n3",
        "--local-slots",
        "0",
    ]);
    drop(_w);
    let _w3 = Worker::start("cw3", &[n3.url()], &[]);
    let id = n3.trigger("cluster-secret")["id"].as_i64().unwrap();
    let r = n3.wait_final(id, Duration::from_secs(20));
    assert_eq!(r["state"], "failed", "{r}");
    let err = r["error"].as_str().unwrap_or_default();
    assert!(err.contains("secret-key-file"), "{err}");
    assert_eq!(log_of(&n3, id), "");
}
