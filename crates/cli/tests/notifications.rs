//! Notifications end to end: signed webhooks retried until they are accepted, Slack messages
//! to a URL kept in a secret, emails through a real SMTP conversation (a small sink here), the
//! Chronos owner's failure email, every attempt on the run, metrics, bad rules refused, and a
//! receiver that never answers not delaying the schedule.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// One received HTTP request: its head (lowercased header names) and body.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// An HTTP receiver: answers `status(n)` to its n-th request (from 0), or never answers when
/// that is 0.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start(status: fn(usize) -> u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                let n = count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut first = String::new();
                    reader.read_line(&mut first).unwrap_or(0);
                    let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let mut headers = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.trim_end().split_once(':') {
                            let k = k.trim().to_ascii_lowercase();
                            if k == "content-length" {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            headers.push((k, v.trim().to_owned()));
                        }
                    }
                    let mut body = vec![0u8; length];
                    let _ = reader.read_exact(&mut body);
                    log.lock().unwrap().push(Request {
                        path,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let code = status(n);
                    if code == 0 {
                        std::thread::sleep(Duration::from_secs(60));
                        return;
                    }
                    let mut s = stream;
                    let _ = write!(
                        s,
                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                });
            }
        });
        Receiver { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

/// A small SMTP server: accepts every message and keeps each conversation's envelope and data.
struct SmtpSink {
    port: u16,
    mails: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let keep = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let keep = keep.clone();
                std::thread::spawn(move || {
                    let mut out = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    let _ = out.write_all(b"220 sink ESMTP\r\n");
                    let mut mail = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO")
                        {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("MAIL") || upper.starts_with("RCPT") {
                            mail.push_str(&line);
                            b"250 OK\r\n"
                        } else if upper.starts_with("DATA") {
                            let _ = out.write_all(b"354 go on\r\n");
                            loop {
                                let mut l = String::new();
                                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                                    break;
                                }
                                mail.push_str(&l);
                            }
                            keep.lock().unwrap().push(std::mem::take(&mut mail));
                            b"250 2.0.0 queued as 42\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = out.write_all(b"221 bye\r\n");
                            break;
                        } else {
                            b"250 OK\r\n"
                        };
                        let _ = out.write_all(reply);
                    }
                });
            }
        });
        SmtpSink { port, mails }
    }

    fn mails(&self) -> Vec<String> {
        self.mails.lock().unwrap().clone()
    }
}

/// A webhook key file with a known key.
fn key_file(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let key = "ab".repeat(32);
    let path = dir.join("webhook.key");
    std::fs::write(&path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, key)
}

fn expected_signature(key: &str, timestamp: &str, body: &str) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let tag = ring::hmac::sign(&k, format!("{timestamp}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn notifications_of(s: &Server, run: i64, count: usize) -> Vec<Value> {
    s.wait_for(Duration::from_secs(30), "the notifications to end", || {
        let r = s.run(run);
        let list = r["notifications"].as_array().cloned().unwrap_or_default();
        (list.len() == count && list.iter().all(|n| n["state"] != "pending")).then_some(list)
    })
}

#[test]
fn webhooks_are_signed_retried_and_recorded_on_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (file, key) = key_file(dir.path());
    let file = file.display().to_string();
    let s = Server::start(&["--webhook-key-file", &file]);
    // The first delivery is refused with a 500, the second accepted.
    let hook = Receiver::start(|n| if n == 0 { 500 } else { 200 });
    s.put_job(
        "fails",
        json!({"command": "exit 2", "notify": [
            {"webhook": hook.url("/hook")},
            {"on": ["success"], "webhook": hook.url("/never")}
        ]}),
    );
    let run = s.trigger("fails")["id"].as_i64().unwrap();
    let done = s.wait_final(run, Duration::from_secs(20));
    assert_eq!(done["state"], "failed");
    let list = notifications_of(&s, run, 1);
    let n = &list[0];
    assert_eq!(n["state"], "sent", "{n}");
    assert_eq!(n["target"], json!({"webhook": hook.url("/hook")}));
    assert_eq!(n["events"], json!(["failure", "retry_exhausted"]));
    let attempts = n["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{n}");
    assert_eq!(attempts[0]["ok"], false);
    assert_eq!(attempts[0]["detail"], "HTTP 500");
    assert_eq!(attempts[1]["ok"], true);
    assert_eq!(attempts[1]["detail"], "HTTP 200");
    let gap = ts(&attempts[1]["at"]).duration_since(ts(&attempts[0]["at"]));
    assert!(
        gap.as_secs_f64() >= 0.9,
        "retried after its backoff: {gap:?}"
    );

    let got = hook.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        assert_eq!(r.path, "/hook");
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("x-tempora-event"), "failure,retry_exhausted");
        let ts = r.header("x-tempora-timestamp");
        assert_eq!(
            r.header("x-tempora-signature"),
            expected_signature(&key, ts, &r.body),
            "the signature checks with the key file's text"
        );
        let doc: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(doc["job"], "fails");
        assert_eq!(doc["run"]["id"], run);
        assert_eq!(doc["run"]["state"], "failed");
        assert_eq!(doc["run"]["exit_code"], 2);
        assert_eq!(doc["events"], json!(["failure", "retry_exhausted"]));
    }
    let (_, metrics) = s.get_text("/metrics?format=prometheus");
    assert!(
        metrics.contains("tempora_notifications_total{target=\"webhook\",outcome=\"sent\"} 1")
            && metrics
                .contains("tempora_notifications_total{target=\"webhook\",outcome=\"retried\"} 1"),
        "{metrics}"
    );
    // Listings stay light: only a single run's page carries its notifications.
    let listed = &s.runs("fails")[0];
    assert!(listed.get("notifications").is_none(), "{listed}");
}

#[test]
fn slack_from_a_secret_and_owner_email_through_smtp() {
    let sink = SmtpSink::start();
    let smtp = format!("smtp://127.0.0.1:{}", sink.port);
    let s = Server::start(&["--smtp-url", &smtp, "--smtp-from", "tempora@example.com"]);
    let slack = Receiver::start(|_| 200);
    s.put_job(
        "ok",
        json!({"command": "true", "notify": [{"on": ["success"], "slack": "${SLACK_URL}"}],
               "secrets": {"SLACK_URL": slack.url("/services/T0/B0/secret")}}),
    );
    let (_, job) = s.get("/api/v1/jobs/ok");
    assert_eq!(job["secrets"]["SLACK_URL"], "***");
    let run = s.trigger("ok")["id"].as_i64().unwrap();
    let list = notifications_of(&s, run, 1);
    assert_eq!(list[0]["state"], "sent", "{list:?}");
    assert_eq!(
        list[0]["target"],
        json!({"slack": "${SLACK_URL}"}),
        "the URL stays a secret"
    );
    let got = slack.requests();
    assert_eq!(got[0].path, "/services/T0/B0/secret");
    let doc: Value = serde_json::from_str(&got[0].body).unwrap();
    let text = doc["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "Job ok run {run} (attempt 1) ended succeeded: success."
        )),
        "{text}"
    );

    // A Chronos job's owner hears of its failure by email (no retry left).
    let doc = json!({"name": "nightly", "command": "exit 3", "owner": "ops@example.com",
                     "schedule": "R/2030-01-01T00:00:00Z/PT24H", "retries": 0});
    let (st, _) = s.send("POST", "/scheduler/iso8601", &doc.to_string());
    assert_eq!(st, 204);
    let run = s.trigger("nightly")["id"].as_i64().unwrap();
    let list = notifications_of(&s, run, 1);
    assert_eq!(list[0]["state"], "sent", "{list:?}");
    assert_eq!(list[0]["target"], json!({"email": ["ops@example.com"]}));
    assert_eq!(list[0]["attempts"][0]["detail"], "250 2.0.0 queued as 42");
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert!(mail.contains("MAIL FROM:<tempora@example.com>"), "{mail}");
    assert!(mail.contains("RCPT TO:<ops@example.com>"), "{mail}");
    assert!(
        mail.contains(&format!(
            "Subject: [tempora] job nightly: failed (run {run}, attempt 1)"
        )),
        "{mail}"
    );
    assert!(mail.contains("Exit code: 3"), "{mail}");
}

#[test]
fn without_smtp_an_email_is_skipped_and_bad_rules_are_refused() {
    let s = Server::start(&[]);
    s.put_job(
        "mail",
        json!({"command": "false", "notify": [{"email": ["ops@example.com"]}]}),
    );
    let run = s.trigger("mail")["id"].as_i64().unwrap();
    let list = notifications_of(&s, run, 1);
    assert_eq!(list[0]["state"], "skipped");
    assert_eq!(
        list[0]["attempts"][0]["detail"],
        "no SMTP server is configured (--smtp-url)"
    );
    let cases: Vec<(Value, &str)> = vec![
        (
            json!([{"on": ["often"], "webhook": "http://127.0.0.1:9/"}]),
            "notify",
        ),
        (
            json!([{"webhook": "http://a/", "slack": "http://b/"}]),
            "notify[0]",
        ),
        (
            json!([{"webhook": "file:///etc/passwd"}]),
            "notify[0].webhook",
        ),
        (
            json!([{"on": [], "email": ["a@example.com"]}]),
            "notify[0].on",
        ),
        (
            json!([{"email": ["a@example.com\r\nBcc: x@evil.test"]}]),
            "notify[0].email[0]",
        ),
        (json!([{"slack": "${NO SUCH}"}]), "notify[0].slack"),
        (json!([{"slack": "${NOPE}"}]), "notify[0].slack"),
        (
            json!([{"webhook": "http://127.0.0.1:9/x?token=${T}"}]),
            "notify[0].webhook",
        ),
    ];
    for (notify, field) in cases {
        let body = json!({"command": "true", "notify": notify});
        let (st, answer) = s.send("PUT", "/api/v1/jobs/bad", &body.to_string());
        assert!(st == 400 || st == 422, "{body} → {st} {answer}");
        assert!(
            answer.to_string().contains(field),
            "{body}: not naming {field}: {answer}"
        );
        assert_eq!(s.get("/api/v1/jobs/bad").0, 404, "a refused job was stored");
    }
}

#[test]
fn a_secret_url_never_shows_in_an_error() {
    let s = Server::start(&[]);
    // Nothing listens on port 9: each attempt fails with the connection's error.
    s.put_job(
        "leaky",
        json!({"command": "false", "notify": [{"slack": "${SLACK_URL}"}, {"webhook": "${HOOK}"}],
               "secrets": {"SLACK_URL": "http://127.0.0.1:9/services/SLACKSECRET",
                           "HOOK": "postgres://user:DBSECRET@db/prod"}}),
    );
    let run = s.trigger("leaky")["id"].as_i64().unwrap();
    let list = s.wait_for(Duration::from_secs(20), "both attempts", || {
        let list = s.run(run)["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (list.len() == 2
            && list
                .iter()
                .all(|n| !n["attempts"].as_array().unwrap().is_empty()))
        .then_some(list)
    });
    let text = serde_json::to_string(&list).unwrap();
    assert!(
        !text.contains("SLACKSECRET") && !text.contains("DBSECRET"),
        "{text}"
    );
    // Not an http(s) URL: failed at once, naming the reference.
    assert_eq!(list[1]["state"], "failed", "{text}");
    assert_eq!(
        list[1]["attempts"][0]["detail"],
        "`${HOOK}` does not hold an http:// or https:// URL"
    );
    assert!(!s.log().contains("SLACKSECRET"));
    // An HTTP job's error does not repeat its URL with the secret filled in.
    s.put_job(
        "http-leak",
        json!({"http": {"url": "http://127.0.0.1:9/x?t=${T}"}, "secrets": {"T": "HTTPSECRET"}}),
    );
    let run = s.trigger("http-leak")["id"].as_i64().unwrap();
    let done = s.wait_final(run, Duration::from_secs(20));
    assert_eq!(done["state"], "failed");
    assert!(
        !done["error"].as_str().unwrap().contains("HTTPSECRET"),
        "{done}"
    );
}

#[test]
fn a_receiver_that_never_answers_does_not_delay_the_schedule() {
    let s = Server::start(&[]);
    let hang = Receiver::start(|_| 0);
    s.put_job(
        "every",
        json!({"command": "exit 1", "schedule": "@every 1s", "concurrency": "allow",
               "notify": [{"webhook": hang.url("/slow")}]}),
    );
    std::thread::sleep(Duration::from_secs(6));
    s.call(|api| async move { api.pause("every").await })
        .unwrap();
    let runs = s.runs("every");
    let ran: Vec<&Value> = runs.iter().filter(|r| r["state"] == "failed").collect();
    assert!(ran.len() >= 4, "only {} runs in 6 s", ran.len());
    for r in &ran {
        let lag = ts(&r["started_at"]).duration_since(ts(&r["scheduled_for"]));
        assert!(lag.as_secs_f64() < 1.0, "a run started {lag:?} late: {r}");
    }
    assert!(
        hang.requests().len() >= 4,
        "each run's webhook was attempted"
    );
}

/// aiosmtpd with STARTTLS and AUTH required (tests/smtp/sink.py, from the venv scripts/test.sh
/// makes): its port and the directory it writes messages to.
fn tls_sink(dir: &std::path::Path) -> (std::process::Child, u16, std::path::PathBuf) {
    let venv = std::env::var("SMTP_VENV").unwrap_or_else(|_| {
        panic!("SMTP_VENV is not set: run the tests with scripts/test.sh, which makes the aiosmtpd venv (a failure, not a skip)")
    });
    let out = dir.join("mail");
    std::fs::create_dir_all(&out).unwrap();
    let port = free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
    let mut child = std::process::Command::new(format!("{venv}/bin/python"))
        .arg(script)
        .args([dir.join("server.pem"), dir.join("server.key"), out.clone()])
        .args(["mailer", "s3cret-pw", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start the SMTP sink");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
    (child, port, out)
}

#[test]
fn email_over_starttls_with_auth_and_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    tempora_testkit::certs::make_ca(dir.path(), "ca");
    tempora_testkit::certs::make_cert(dir.path(), "ca", "server", "serverAuth");
    let (mut sink, port, mail) = tls_sink(dir.path());
    let url = format!("smtp://mailer:s3cret-pw@127.0.0.1:{port}?tls=required");
    let ca = dir.path().join("ca.pem").display().to_string();
    let s = Server::start(&[
        "--smtp-url",
        &url,
        "--smtp-ca-file",
        &ca,
        "--smtp-from",
        "tempora@example.com",
    ]);
    s.put_job(
        "mailed",
        json!({"command": "exit 4", "notify": [{"email": ["oncall@example.com", "lead@example.com"]}]}),
    );
    let run = s.trigger("mailed")["id"].as_i64().unwrap();
    let list = notifications_of(&s, run, 1);
    assert_eq!(list[0]["state"], "sent", "{list:?}\n{}", s.log());
    assert_eq!(list[0]["attempts"][0]["detail"], "250 2.0.0 stored");
    let text = std::fs::read_to_string(mail.join("0.eml")).unwrap();
    assert!(text.contains("ENVELOPE-FROM tempora@example.com"), "{text}");
    assert!(
        text.contains("ENVELOPE-TO oncall@example.com lead@example.com"),
        "{text}"
    );
    assert!(text.contains("AUTHENTICATED True"), "{text}");
    assert!(
        text.contains(&format!(
            "Subject: [tempora] job mailed: failed (run {run}, attempt 1)"
        )),
        "{text}"
    );
    // The password is not shown or logged.
    let (_, vars) = s.get_text("/vars");
    assert!(!vars.contains("s3cret-pw"), "{vars}");
    assert!(!s.log().contains("s3cret-pw"));

    // Without the CA the certificate is not trusted: no mail, the attempts say why, and the
    // notification fails once its retry window is over.
    let s2 = Server::start(&["--smtp-url", &url, "--notify-retry-for", "2s"]);
    s2.put_job(
        "mailed",
        json!({"command": "false", "notify": [{"email": ["oncall@example.com"]}]}),
    );
    let run = s2.trigger("mailed")["id"].as_i64().unwrap();
    let list = notifications_of(&s2, run, 1);
    assert_eq!(list[0]["state"], "failed", "{list:?}");
    let detail = list[0]["attempts"][0]["detail"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(
        detail.contains("certificate") || detail.contains("issuer"),
        "{detail}"
    );
    assert_eq!(
        std::fs::read_dir(&mail).unwrap().count(),
        1,
        "nothing more was delivered"
    );
    let _ = sink.kill();
    let _ = sink.wait();
}

#[test]
fn server_wide_rules_apply_to_every_job_once_per_target() {
    let hook = Receiver::start(|_| 200);
    let rule =
        json!({"on": ["retry_exhausted"], "webhook": hook.url("/ops?token=abc")}).to_string();
    let s = Server::start(&["--notify-default", &rule]);
    s.put_job("plain", json!({"command": "false"}));
    // Its own rule names the same target: one notification, not two.
    s.put_job(
        "own",
        json!({"command": "false", "notify": [{"webhook": hook.url("/ops?token=abc")}]}),
    );
    for job in ["plain", "own"] {
        let run = s.trigger(job)["id"].as_i64().unwrap();
        let list = notifications_of(&s, run, 1);
        assert_eq!(list[0]["state"], "sent", "{job}: {list:?}");
    }
    let seen: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["job"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    // A success notifies nobody: the server-wide rule is on retry_exhausted only.
    s.put_job("fine", json!({"command": "true"}));
    let run = s.trigger("fine")["id"].as_i64().unwrap();
    s.wait_final(run, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    assert!(s.run(run).get("notifications").is_none());
    // /vars shows the rule without the URL's path and query (a URL may be a credential).
    let (_, vars) = s.get_text("/vars.json");
    assert!(
        vars.contains(&format!(
            "on retry_exhausted: webhook http://127.0.0.1:{}/…",
            hook.port
        )),
        "{vars}"
    );
    assert!(!vars.contains("token=abc"), "{vars}");
    // A bad rule stops the server at start, naming the flag.
    let out = std::process::Command::new(bin())
        .args([
            "server",
            "--data-dir",
            "/nonexistent/x",
            "--notify-default",
            r#"{"on": ["often"], "webhook": "http://a/"}"#,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--notify-default"), "{err}");
}
