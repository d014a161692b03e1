//! Artifacts end to end: `tempora artifact push`, a job that runs the uploaded script (itself
//! or through an interpreter) on the server's pool and on a remote worker that downloads it
//! through the worker protocol, the cache on disk, and bad input: an unknown or malformed
//! reference, an artifact still in use, too large, the wrong content type.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use serde_json::json;

fn script(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("hello.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\necho \"hello $1 from $(basename \"$0\" | cut -c1-8)\"\n",
    )
    .unwrap();
    path
}

fn push(s: &Server, file: &std::path::Path) -> String {
    let out = s.cli(&["artifact", "push", &file.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_pushed_script_runs_on_the_server_and_on_a_remote_worker() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = script(dir.path());
    let reference = push(&s, &file);
    let hex = reference.strip_prefix("sha256:").unwrap().to_owned();
    assert_eq!(hex.len(), 64, "{reference}");
    // Pushing it again is the same artifact.
    assert_eq!(push(&s, &file), reference);
    // A form upload (`curl -F`) stores the same artifact; a form from another site does not.
    let auth = format!("Authorization: Bearer {}", admin_token());
    let form = std::process::Command::new("curl")
        .args([
            "-sS",
            "-H",
            &auth,
            "-F",
            &format!("file=@{}", file.display()),
        ])
        .arg(format!("{}/api/v1/artifacts", s.url()))
        .output()
        .expect("curl must be installed");
    let answer: serde_json::Value = serde_json::from_slice(&form.stdout).unwrap();
    assert_eq!(answer["sha256"], hex, "{answer}");
    let foreign = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", &auth])
        .args([
            "-H",
            "Origin: https://evil.example",
            "-F",
            &format!("file=@{}", file.display()),
        ])
        .arg(format!("{}/api/v1/artifacts", s.url()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&foreign.stdout), "403");
    let listed = s.cli(&["artifact", "ls"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&reference));
    let (st, bytes) = s.get_text(&format!("/api/v1/artifacts/{hex}"));
    assert_eq!(st, 200);
    assert_eq!(bytes, std::fs::read_to_string(&file).unwrap());

    s.put_job(
        "hello",
        json!({"artifact": reference, "arguments": ["world"]}),
    );
    let run = s.trigger("hello")["id"].as_i64().unwrap();
    let done = s.wait_final(run, Duration::from_secs(20));
    assert_eq!(done["state"], "succeeded", "{done}");
    let (_, out) = s.get_text(&format!("/api/v1/runs/{run}/log"));
    assert_eq!(out, format!("hello world from {}\n", &hex[..8]));
    // Through an interpreter: its words, the file, the arguments.
    s.put_job(
        "hello-sh",
        json!({"artifact": reference, "interpreter": "/bin/sh -e", "arguments": ["again"]}),
    );
    let run = s.trigger("hello-sh")["id"].as_i64().unwrap();
    let done = s.wait_final(run, Duration::from_secs(20));
    assert_eq!(done["state"], "succeeded", "{done}");
    let (_, out) = s.get_text(&format!("/api/v1/runs/{run}/log"));
    assert_eq!(out, format!("hello again from {}\n", &hex[..8]));

    // A remote worker fetches it through the worker protocol into its own cache.
    s.put_job(
        "hello-remote",
        json!({"artifact": reference, "arguments": ["remote"], "selector": {"pool": "far"}}),
    );
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("cache");
    let w = Worker::start(
        "w-art",
        &[s.url()],
        &[
            "--labels",
            "pool=far",
            "--artifact-cache",
            &cache_dir.display().to_string(),
        ],
    );
    let run = s.trigger("hello-remote")["id"].as_i64().unwrap();
    let done = s.wait_final(run, Duration::from_secs(30));
    assert_eq!(done["state"], "succeeded", "{done}\n{}", w.log());
    assert_eq!(done["worker"], "w-art");
    let cached = cache_dir.join(&hex);
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        std::fs::read(&file).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // A worker reads only the artifacts of the runs it holds (none now).
    let (st, v) = s.get(&format!("/api/v1/workers/w-art/artifacts/{hex}"));
    assert_eq!(st, 403, "{v}");
    // Every push is in the audit log with what was stored.
    let (_, audit) = s.get("/api/v1/audit");
    let pushes: Vec<&serde_json::Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "artifact.push")
        .collect();
    assert!(!pushes.is_empty(), "{audit}");
    assert!(
        pushes[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("sha256:{hex} (")),
        "{audit}"
    );
}

#[test]
fn bad_artifacts_are_refused_and_used_ones_are_kept() {
    let s = Server::start(&["--max-artifact-bytes", "1024"]);
    let dir = tempfile::tempdir().unwrap();
    let reference = push(&s, &script(dir.path()));
    let hex = reference.trim_start_matches("sha256:");
    // Unknown and malformed references: 400 naming the field, nothing stored.
    let unknown = format!("sha256:{}", "0".repeat(64));
    for (body, field) in [
        (json!({"artifact": unknown}), "artifact"),
        (json!({"artifact": "sha256:xyz"}), "artifact"),
        (json!({"artifact": reference, "command": "true"}), "command"),
        (
            json!({"command": "true", "interpreter": "python3"}),
            "interpreter",
        ),
    ] {
        let (st, v) = s.send("PUT", "/api/v1/jobs/bad", &body.to_string());
        assert_eq!(st, 400, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
        assert_eq!(s.get("/api/v1/jobs/bad").0, 404);
    }
    // In use: 409 naming the job; free again once the job is gone.
    s.put_job("user", json!({"artifact": reference}));
    let (st, v) = s.send("DELETE", &format!("/api/v1/artifacts/{hex}"), "");
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("user"),
        "{v}"
    );
    assert_eq!(s.send("DELETE", "/api/v1/jobs/user", "").0, 204);
    let out = s.cli(&["artifact", "rm", &reference]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.get(&format!("/api/v1/artifacts/{hex}")).0, 404);
    // Too large, and not sent as bytes.
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 2048]).unwrap();
    let out = s.cli(&["artifact", "push", &big.display().to_string()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("413") || err.to_lowercase().contains("too large"),
        "{err}"
    );
    let (st, _, v) = request(
        "POST",
        &format!("{}/api/v1/artifacts", s.url()),
        &[
            ("Authorization", &format!("Bearer {}", admin_token())),
            ("Content-Type", "application/octet-stream"),
        ],
        &"x".repeat(2048),
    )
    .unwrap();
    assert_eq!(st, 413, "{v}");
    assert!(v.contains("--max-artifact-bytes"), "{v}");
    let (st, _, v) = request(
        "POST",
        &format!("{}/api/v1/artifacts", s.url()),
        &[
            ("Authorization", &format!("Bearer {}", admin_token())),
            ("Content-Type", "text/plain"),
        ],
        "#!/bin/sh\n",
    )
    .unwrap();
    assert_eq!(st, 415, "{v}");
    // A viewer may read artifacts but not push or delete them.
    let viewer = s.token("v", "viewer");
    let (st, _, _) = s.request_as("GET", "/api/v1/artifacts", Some(&viewer), None);
    assert_eq!(st, 200);
    let (st, _, _) = s.request_as("POST", "/api/v1/artifacts", Some(&viewer), None);
    assert_eq!(st, 403);
}
