//! The CLI as people and scripts use it, against a real server: its output (tables, JSON,
//! errors), `schedule next`, help for every command, the configuration file and its
//! overrides, `job run --wait`'s exit status.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn schedule_next_prints_exactly_n_timestamps() {
    let run = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .arg("schedule")
            .arg("next")
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "0 15 10 ? * 6L",
        "--tz",
        "UTC",
        "--after",
        "2026-11-01T00:00:00Z",
        "--count",
        "3",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&o),
        "2026-11-27T10:15:00Z\n2026-12-25T10:15:00Z\n2027-01-29T10:15:00Z\n"
    );
    let o = run(&[
        "*/30 * * * *",
        "--tz",
        "America/New_York",
        "--after",
        "2026-11-01T04:59:00Z",
        "--count",
        "4",
    ]);
    assert_eq!(
        stdout(&o),
        "2026-11-01T01:00:00-04:00\n2026-11-01T01:30:00-04:00\n2026-11-01T01:00:00-05:00\n2026-11-01T01:30:00-05:00\n"
    );
    let o = run(&["@hourly", "--count", "7"]);
    assert_eq!(stdout(&o).lines().count(), 7);
    // cronie's DST rule on the spring-forward night of 2027 in Berlin (02:00 CET -> 03:00 CEST):
    // a job whose minute or hour field starts with `*` is wild and does not fire in the skipped
    // hour; `30 0-23/2` is fixed and fires at the jump.
    let berlin = |expr: &str, count: &str| {
        stdout(&run(&[
            expr,
            "--tz",
            "Europe/Berlin",
            "--after",
            "2027-03-28T00:00:00+01:00",
            "--count",
            count,
        ]))
    };
    assert_eq!(berlin("* 2 * * *", "1"), "2027-03-29T02:00:00+02:00\n");
    assert_eq!(berlin("*/15 2 * * *", "1"), "2027-03-29T02:00:00+02:00\n");
    assert_eq!(
        berlin("30 0-23/2 * * *", "3"),
        "2027-03-28T00:30:00+01:00\n2027-03-28T03:00:00+02:00\n2027-03-28T04:30:00+02:00\n"
    );
    // An ISO start inside New York's gap is read as 03:30 that day only.
    let o = run(&[
        "R/2027-03-14T02:30:00/P1D",
        "--tz",
        "America/New_York",
        "--after",
        "2027-03-13T00:00:00Z",
        "--count",
        "3",
    ]);
    assert_eq!(
        stdout(&o),
        "2027-03-14T03:30:00-04:00\n2027-03-15T02:30:00-04:00\n2027-03-16T02:30:00-04:00\n"
    );
    for bad in [
        vec!["61 * * * *"],
        vec!["* * * *"],
        vec!["0 0 * * *", "--tz", "Nowhere/Zone"],
        vec!["0 0 * * *", "--after", "yesterday"],
        vec!["0 0 * * *", "--count", "0"],
    ] {
        let o = run(&bad);
        assert!(!o.status.success(), "{bad:?} should fail");
        assert!(o.stdout.is_empty());
        assert!(!o.stderr.is_empty());
    }
    let o = run(&["61 * * * *"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("minute"),
        "{o:?}"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["server", "--help"],
        vec!["job", "--help"],
        vec!["job", "run", "--help"],
        vec!["run", "logs", "--help"],
        vec!["schedule", "next", "--help"],
    ] {
        let o = std::process::Command::new(common::bin())
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}");
        assert!(stdout(&o).contains("Usage"), "{args:?}");
    }
}

#[test]
fn config_file_is_overridden_by_env_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let cfg = dir.path().join("tempora.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\nnode_id = \"from-file\"\nlocal_slots = 2\ndata_dir = \"{}\"\nshutdown_grace = \"1s\"\nadmin_token_file = \"{}\"\n",
            dir.path().join("d").display(),
            common::admin_token_file().display()
        ),
    )
    .unwrap();
    let node_of = |extra: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.arg("server").arg("--config").arg(&cfg).args(extra);
        cmd.env_remove("TEMPORA_NODE_ID");
        if let Some(e) = env {
            cmd.env("TEMPORA_NODE_ID", e);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/api/v1/status");
        let mut node = None;
        for _ in 0..100 {
            if let Ok((200, body)) = common::http("GET", &url, "") {
                let v: Value = serde_json::from_str(&body).unwrap();
                node = v["node"].as_str().map(str::to_owned);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        node.expect("server from config file answered")
    };
    assert_eq!(node_of(&[], None), "from-file");
    assert_eq!(node_of(&[], Some("from-env")), "from-env");
    assert_eq!(
        node_of(&["--node-id", "from-flag"], Some("from-env")),
        "from-flag"
    );
    std::fs::write(&cfg, "listne = \"x\"\n").unwrap();
    let o = std::process::Command::new(common::bin())
        .args(["server", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown key `listne`"));

    // A bad value in the file (or the environment) names where it came from, not only the flag.
    std::fs::write(&cfg, "sqlite_cache_mib = 0\n").unwrap();
    let bad = |env: Option<&str>, extra: &[&str]| {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.args(["server", "--config"]).arg(&cfg).args(extra);
        cmd.env_remove("TEMPORA_SQLITE_CACHE_MIB");
        if let Some(v) = env {
            cmd.env("TEMPORA_SQLITE_CACHE_MIB", v);
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let from_file = bad(None, &[]);
    assert!(from_file.contains("--sqlite-cache-mib"), "{from_file}");
    assert!(
        from_file.contains(&format!(
            "`sqlite_cache_mib` in the config file {}",
            cfg.display()
        )),
        "{from_file}"
    );
    let from_env = bad(Some("abc"), &[]);
    assert!(
        from_env.contains("the environment variable TEMPORA_SQLITE_CACHE_MIB"),
        "{from_env}"
    );
    let typed = bad(None, &["--sqlite-cache-mib", "0"]);
    assert!(
        typed.contains("--sqlite-cache-mib") && !typed.contains("note:"),
        "{typed}"
    );
}

/// `--server host:port` without a scheme means http; a reader that closes the pipe early
/// (`| head -1`) ends the CLI quietly, without a panic.
#[test]
fn cli_takes_a_bare_host_port_and_a_closed_pipe() {
    let s = Server::start(&[]);
    for i in 0..300 {
        s.put_job(
            &format!("pipe-{i:03}"),
            json!({"command": "true", "description": "x".repeat(200)}),
        );
    }
    let bare = s.url().trim_start_matches("http://").to_owned();
    let o = std::process::Command::new(common::bin())
        .args(["job", "get", "pipe-000", "--server", &bare])
        .env("TEMPORA_TOKEN", common::admin_token())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let mut child = std::process::Command::new(common::bin())
        .args(["job", "ls", "-o", "json"])
        .env("TEMPORA_SERVER", s.url())
        .env("TEMPORA_TOKEN", common::admin_token())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
}

/// `tempora job run NAME --wait` exits 0 only when the run succeeded; 1 with its state
/// otherwise; 124 when `--timeout` passes first.
#[test]
fn job_run_wait_exits_with_the_runs_outcome() {
    let s = Server::start(&[]);
    s.put_job("w-ok", json!({"command": "echo fine"}));
    s.put_job("w-bad", json!({"command": "exit 3"}));
    s.put_job("w-slow", json!({"command": "sleep 30"}));
    let o = s.cli(&["job", "run", "w-ok", "--wait", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "succeeded");
    let o = s.cli(&["job", "run", "w-bad", "--wait"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ended failed"),
        "{o:?}"
    );
    // A run that did not succeed is a WARN line naming the job and the reason.
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("run did not succeed")
            && l.contains("job=w-bad")
            && l.contains("reason=\"exit status 3\"")),
        "{log}"
    );
    // `run logs -f` ends with the run, with the same exit status.
    let bad = s.trigger("w-bad")["id"].as_i64().unwrap().to_string();
    let o = s.cli(&["run", "logs", &bad, "-f"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let ok = s.trigger("w-ok")["id"].as_i64().unwrap().to_string();
    let o = s.cli(&["run", "logs", &ok, "-f"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "fine\n");
    let t = std::time::Instant::now();
    let o = s.cli(&["job", "run", "w-slow", "--wait", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(124), "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("still running"),
        "{o:?}"
    );
}

/// The CLI for scripts and for people: `job put -` reads YAML, `-o json` errors are JSON with
/// the server's fields, `pause`/`resume` print one line, run tables fit 120 columns and show
/// instants to the second in the job's zone (or UTC with `--utc`).
#[test]
fn cli_output_for_people_and_scripts() {
    let s = Server::start(&[]);
    let mut put = std::process::Command::new(common::bin())
        .args(["job", "put", "-"])
        .env("TEMPORA_SERVER", s.url())
        .env("TEMPORA_TOKEN", common::admin_token())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        put.stdin.as_mut().unwrap(),
        b"name: tokyo\ncommand: echo hi\nschedule: \"0 9 * * *\"\ntimezone: Asia/Tokyo\n",
    )
    .unwrap();
    let o = put.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(s.get("/api/v1/jobs/tokyo").1["timezone"], "Asia/Tokyo");

    // Errors as JSON with -o json.
    let o = s.cli(&["job", "get", "nope", "-o", "json"]);
    assert_eq!(o.status.code(), Some(3));
    let err: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(err["error"]["status"], 404, "{err}");
    assert_eq!(err["error"]["exit_code"], 3, "{err}");
    let dir = s.scratch().join("cli-out");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "name: bad\ncommand: x\nretries: many\n").unwrap();
    let o = s.cli(&["job", "put", bad.to_str().unwrap(), "-o", "json"]);
    let err: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(err["error"]["field"], "retries", "{err}");

    // One line each.
    let o = s.cli(&["job", "pause", "tokyo"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "paused job tokyo\n");
    let o = s.cli(&["job", "resume", "tokyo"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("resumed job tokyo; next run ") && out.ends_with(" 09:00:00 JST\n"),
        "{out}"
    );

    // Tables: the job's zone, to the second, within 120 columns.
    let id = s.trigger("tokyo")["id"].as_i64().unwrap();
    s.wait_final(id, Duration::from_secs(10));
    let o = s.cli(&["run", "ls", "tokyo"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().all(|l| l.chars().count() <= 120), "{out}");
    assert!(out.contains(" JST") && !out.contains("Z "), "{out}");
    let micros = regex_like_micros(&out);
    assert!(!micros, "instants with fractions of a second: {out}");
    let o = s.cli(&["run", "ls", "tokyo", "--utc"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(" UTC") && !out.contains(" JST"), "{out}");
    let o = s.cli(&["job", "ls"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("09:00:00 JST"), "{out}");
    // Key-value views too: the job's zone, to the second; the newest run in one line.
    let o = s.cli(&["job", "get", "tokyo"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("09:00:00 JST") && !regex_like_micros(&out),
        "{out}"
    );
    assert!(out.contains(&format!("#{id} succeeded")), "{out}");
    let o = s.cli(&["run", "get", &id.to_string()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(" JST") && !regex_like_micros(&out), "{out}");
}

/// Whether `text` has an instant with a fraction of a second (`12:34:56.`).
fn regex_like_micros(text: &str) -> bool {
    let b = text.as_bytes();
    (8..b.len()).any(|i| {
        b[i] == b'.'
            && b[i - 3] == b':'
            && b[i - 6] == b':'
            && b[i - 1].is_ascii_digit()
            && b[i - 8].is_ascii_digit()
    })
}

/// `tempora schedule explain`: the schedule in words and its next fire times in its zone; a bad
/// expression or zone is exit 2 naming it.
#[test]
fn schedule_explain_says_it_in_words() {
    let explain = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .args(["schedule", "explain"])
            .args(args)
            .output()
            .unwrap()
    };
    let o = explain(&["0 0 12 ? * 6#3", "--tz", "Pacific/Chatham", "--count", "2"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "At 12:00, on the third Friday of the month, in Pacific/Chatham"
    );
    assert_eq!(lines[1], "next:");
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[2].trim().contains("T12:00:00+"), "{out}");
    let o = explain(&["CRON_TZ=Europe/Berlin @daily"]);
    assert!(stdout(&o).starts_with("At 00:00 every day, in Europe/Berlin\n"));
    let o = explain(&["R0//PT1H"]);
    assert_eq!(
        stdout(&o),
        "Never (R0: no occurrence; the job runs when triggered)\nno fire time ahead\n"
    );
    let o = explain(&["0 0 32 * *"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("day-of-month"),
        "{o:?}"
    );
    let o = explain(&["@daily", "--tz", "Mars/Olympus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tz"), "{o:?}");
}

/// `tempora completions bash|zsh|fish` and `tempora man [--dir]` come from the command
/// definitions: every command is in them.
#[test]
fn completions_and_manual_pages_cover_every_command() {
    let run = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .args(args)
            .output()
            .unwrap()
    };
    for (shell, marker) in [
        ("bash", "_tempora()"),
        ("zsh", "#compdef tempora"),
        ("fish", "complete -c tempora"),
    ] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "{o:?}");
        let text = stdout(&o);
        assert!(text.contains(marker), "{shell}: {text}");
        for word in ["backfill", "explain", "server", "worker", "dry-run"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
    assert_eq!(run(&["completions", "powershell"]).status.code(), Some(2));
    let o = run(&["man"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains(".TH tempora 1"), "{}", stdout(&o));
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    for page in [
        "tempora.1",
        "tempora-server.1",
        "tempora-worker.1",
        "tempora-job-backfill.1",
        "tempora-schedule-explain.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}: {text}");
    }
    let backfill = std::fs::read_to_string(dir.path().join("tempora-job-backfill.1")).unwrap();
    assert!(backfill.contains("dry\\-run"), "{backfill}");
}
