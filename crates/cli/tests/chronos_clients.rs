//! Chronos's own clients against tempora: the real `chronos-python` client (PyPI) in its `v1`
//! and legacy modes, and a chronos-sync directory of job files migrated with `tempora apply`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;
use serde_json::json;

/// The venv with `chronos-python`, created by `scripts/test.sh` (override: `CHRONOS_VENV`).
fn chronos_python() -> PathBuf {
    let venv = std::env::var_os("CHRONOS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/chronos-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, which creates the venv with chronos-python \
         (python3 -m venv target/chronos-venv && target/chronos-venv/bin/pip install chronos-python==1.2.1)",
        python.display()
    );
    python
}

/// The real chronos-python client, in its v1 mode and its legacy (`/scheduler`, PUT updates)
/// mode, against one server.
#[test]
fn chronos_python_client_works_in_v1_and_legacy_modes() {
    let python = chronos_python();
    let s = Server::start(&[]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/chronos_python.py");
    for mode in ["v1", "legacy"] {
        let out = Command::new(&python)
            .arg(&script)
            .arg(format!("127.0.0.1:{}", s.port))
            .arg(mode)
            .env("TEMPORA_TOKEN", common::admin_token())
            .output()
            .expect("run python");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "chronos-python {mode}:\n{text}\nserver log:\n{}",
            s.log()
        );
        assert!(
            text.contains(&format!("all chronos-python calls passed ({mode})")),
            "{text}"
        );
    }
}

/// A `chronos-sync` directory (one Chronos job JSON per file, nested) migrates with
/// `tempora apply` and re-applies as unchanged; the real `chronos-sync-jobs.py` then finds the
/// jobs up to date through the Chronos API.
#[test]
fn apply_migrates_a_chronos_sync_directory() {
    let python = chronos_python();
    let s = Server::start(&[]);
    let dir = s.scratch().join("chronos-jobs");
    std::fs::create_dir_all(dir.join("team")).unwrap();
    std::fs::write(
        dir.join("extract.json"),
        json!({"name": "extract", "command": "echo extract", "owner": "a@example.com",
               "schedule": "R//PT1H", "scheduleTimeZone": "Europe/Paris", "epsilon": "PT15M",
               "environmentVariables": [{"name": "STAGE", "value": "prod"}], "async": false,
               "cpus": 0.5, "disabled": false})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("team/report.json"),
        json!({"name": "report", "command": "echo report", "owner": "a@example.com",
               "parents": ["extract"], "softError": true, "async": false, "disabled": false,
               "epsilon": "PT30M"})
        .to_string(),
    )
    .unwrap();
    let dirs = dir.to_str().unwrap();
    let out = s.cli(&["apply", "-f", dirs]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 created"), "{text}");
    let (_, e) = s.get("/api/v1/jobs/extract");
    assert_eq!(
        (e["timezone"].clone(), e["epsilon"].clone()),
        (json!("Europe/Paris"), json!("15m"))
    );
    assert_eq!(e["env"]["STAGE"], "prod");
    assert_eq!(s.get("/api/v1/jobs/report").1["soft_error"], true);
    let again = s.cli(&["apply", "-f", dirs]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("0 created, 0 updated, 2 unchanged"), "{text}");
    // chronos-python's own sync tool agrees nothing needs an update.
    // The script has no credential option: it runs with chronos-python's `connect` given the
    // token as the Basic password (docs/chronos.md shows the same two-line wrapper).
    let sync = python.with_file_name("chronos-sync-jobs.py");
    let wrapper = "import functools, os, runpy, sys, chronos\n\
                   chronos.connect = functools.partial(chronos.connect, username='chronos', \
                   password=os.environ['TEMPORA_TOKEN'])\n\
                   sys.argv = sys.argv[1:]\n\
                   runpy.run_path(sys.argv[0], run_name='__main__')\n";
    let out = Command::new(&python)
        .env("TEMPORA_TOKEN", common::admin_token())
        .args(["-c", wrapper])
        .arg(&sync)
        .args([
            "--hostname",
            &format!("127.0.0.1:{}", s.port),
            "--sync",
            dirs,
            "-n",
        ])
        .output()
        .expect("chronos-sync-jobs.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Job report defined in"), "{text}");
    assert!(
        text.contains("report") && text.contains("is up-to-date"),
        "{text}"
    );
    // A bad Chronos file names the file, the job and the field; nothing is applied.
    std::fs::write(
        dir.join("bad.json"),
        json!({"name": "bad", "command": "x", "schedule": "R/2020-01-01T00:00:00Z/P1D",
               "scheduleTimeZone": "Nowhere/City"})
        .to_string(),
    )
    .unwrap();
    let out = s.cli(&["apply", "-f", dirs]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.json") && err.contains("job `bad`") && err.contains("scheduleTimeZone"),
        "{err}"
    );
    assert_eq!(s.get("/api/v1/jobs/bad").0, 404);
    // A parent neither in the files nor on the server: refused before anything is applied.
    std::fs::remove_file(dir.join("bad.json")).unwrap();
    std::fs::write(
        dir.join("extract.json"),
        json!({"name": "extract", "command": "echo changed", "schedule": "R//PT1H",
               "scheduleTimeZone": "Europe/Paris", "epsilon": "PT15M"})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("zz-orphan.json"),
        json!({"name": "zz-orphan", "command": "x", "parents": ["extract", "nothere"], "epsilon": "PT1M"})
            .to_string(),
    )
    .unwrap();
    for dry in [true, false] {
        let mut args = vec!["apply", "-f", dirs];
        if dry {
            args.push("--dry-run");
        }
        let out = s.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "dry run {dry}: {err}");
        assert!(
            err.contains("zz-orphan") && err.contains("`nothere`"),
            "{err}"
        );
    }
    assert_eq!(s.get("/api/v1/jobs/extract").1["command"], "echo extract");
}
