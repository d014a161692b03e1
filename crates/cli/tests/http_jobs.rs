//! HTTP jobs against a local receiver: the response is the run's output, a status outside
//! `expect_status` fails the run and its retries apply, a slow answer times out, variables and
//! secrets fill in the request, and bad input is refused naming the field.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use serde_json::json;

/// A tiny HTTP/1.1 server on a thread: `/ok` 200, `/teapot` 418, `/broken` 500, `/slow` answers
/// after 5 s; it keeps every request's head.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut head = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0u8; length];
                    let _ = reader.read_exact(&mut body);
                    head.push_str(&String::from_utf8_lossy(&body));
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    log.lock().expect("log").push(head);
                    let (status, text) = match path.as_str() {
                        "/ok" => ("200 OK", "all fine"),
                        "/teapot" => ("418 I'm a teapot", "short and stout"),
                        "/slow" => {
                            std::thread::sleep(Duration::from_secs(5));
                            ("200 OK", "late")
                        }
                        _ => ("500 Internal Server Error", "broken"),
                    };
                    let mut s = stream;
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nX-Receiver: yes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                });
            }
        });
        Receiver { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn wait_final(server: &Server, id: i64) -> serde_json::Value {
    for _ in 0..200 {
        let r = server.run(id);
        if !matches!(r["state"].as_str(), Some("queued" | "running")) {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("run {id} did not end: {}", server.run(id));
}

fn log_of(server: &Server, id: i64) -> String {
    server.get_text(&format!("/api/v1/runs/{id}/log")).1
}

#[test]
fn http_jobs_send_their_request_and_record_the_answer() {
    let rx = Receiver::start();
    let server = Server::start(&[]);
    server.put_job(
        "hook",
        json!({"http": {"method": "POST", "url": rx.url("/ok"),
                        "headers": {"Authorization": "Bearer ${TOKEN}", "X-Team": "${TEAM}",
                                    "X-Home": "${HOME}"},
                        "body": "{\"from\": \"${TEAM}\"}"},
               "env": {"TEAM": "data"}, "secrets": {"TOKEN": "s3cret-value"}}),
    );
    let id = server.trigger("hook")["id"].as_i64().expect("id");
    let run = wait_final(&server, id);
    assert_eq!(run["state"], "succeeded", "{run}");
    let out = log_of(&server, id);
    assert!(out.starts_with("HTTP/1.1 200 OK\n"), "{out}");
    assert!(
        out.contains("x-receiver: yes") && out.ends_with("all fine"),
        "{out}"
    );
    let head = rx
        .seen
        .lock()
        .expect("seen")
        .last()
        .cloned()
        .unwrap_or_default();
    assert!(head.starts_with("POST /ok "), "{head}");
    assert!(
        head.contains("Bearer s3cret-value") && head.contains("x-team: data"),
        "{head}"
    );
    assert!(head.ends_with("{\"from\": \"data\"}"), "{head}");
    // Only the job's own variables are filled in, never the server's environment.
    assert!(head.contains("x-home: ${HOME}"), "{head}");
    // The job as the API shows it: the secret masked, the request as sent.
    let (_, job) = server.get("/api/v1/jobs/hook");
    assert_eq!(job["secrets"]["TOKEN"], "***");
    assert_eq!(job["http"]["method"], "POST");
}

#[test]
fn statuses_retries_and_timeouts_behave_as_for_processes() {
    let rx = Receiver::start();
    let server = Server::start(&[]);
    // An expected non-2xx status succeeds.
    server.put_job(
        "teapot",
        json!({"http": {"url": rx.url("/teapot"), "expect_status": [418]}}),
    );
    let id = server.trigger("teapot")["id"].as_i64().expect("id");
    assert_eq!(wait_final(&server, id)["state"], "succeeded");
    // An unexpected one fails, and the retries apply.
    server.put_job(
        "flaky",
        json!({"http": {"url": rx.url("/broken")}, "retries": 1, "retry_backoff": "1s"}),
    );
    let id = server.trigger("flaky")["id"].as_i64().expect("id");
    let run = wait_final(&server, id);
    assert_eq!(run["state"], "failed");
    assert!(
        run["error"].as_str().unwrap_or_default().contains("500"),
        "{run}"
    );
    let mut attempts = Vec::new();
    for _ in 0..100 {
        attempts = server.runs("flaky");
        if attempts.len() == 2 && attempts.iter().all(|r| r["state"] == "failed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(attempts.len(), 2, "one retry: {attempts:?}");
    // A slow answer times out.
    server.put_job(
        "slow",
        json!({"http": {"url": rx.url("/slow"), "timeout": "1s"}}),
    );
    let id = server.trigger("slow")["id"].as_i64().expect("id");
    let run = wait_final(&server, id);
    assert_eq!(run["state"], "timed_out", "{run}");
    // Nothing listening: failed, saying why.
    server.put_job("nowhere", json!({"http": {"url": "http://127.0.0.1:1/"}}));
    let id = server.trigger("nowhere")["id"].as_i64().expect("id");
    let run = wait_final(&server, id);
    assert_eq!(run["state"], "failed");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("request failed"),
        "{run}"
    );
}

#[test]
fn bad_http_jobs_are_refused_naming_the_field_and_nothing_is_stored() {
    let server = Server::start(&[]);
    for (body, field) in [
        (
            json!({"command": "true", "http": {"url": "http://x"}}),
            "http",
        ),
        (json!({"http": {"url": "file:///etc/passwd"}}), "http.url"),
        (
            json!({"http": {"url": "http://x", "method": "BREW"}}),
            "http.method",
        ),
        (
            json!({"http": {"url": "http://x", "expect_status": [42]}}),
            "http.expect_status",
        ),
        (
            json!({"http": {"url": "http://x", "headers": {"X": "a\r\nB: c"}}}),
            "http.headers.X",
        ),
        (
            json!({"http": {"url": "http://x"}, "run_as": "nobody"}),
            "http",
        ),
        (
            json!({"http": {"url": "http://x", "verb": "GET"}}),
            "http.verb",
        ),
    ] {
        let (st, v) = server.send("PUT", "/api/v1/jobs/bad-http", &body.to_string());
        assert_eq!(st, 400, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
        assert_eq!(server.get("/api/v1/jobs/bad-http").0, 404, "nothing stored");
    }
}

/// An HTTPS server (Python's, with a self-signed certificate made here for 127.0.0.1): its URL.
fn https_receiver(dir: &std::path::Path) -> (std::process::Child, String) {
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "self.key",
            "-out",
            "self.pem",
            "-days",
            "2",
            "-subj",
            "/CN=self-signed",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = "import http.server, ssl, sys\n\
        s = http.server.HTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n\
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain('self.pem', 'self.key')\n\
        s.socket = c.wrap_socket(s.socket, server_side=True)\n\
        print(s.server_address[1], flush=True)\n\
        s.serve_forever()\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the port");
    (child, format!("https://127.0.0.1:{}/", line.trim()))
}

#[test]
fn tls_is_verified_unless_the_job_says_not_to() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut https, url) = https_receiver(tmp.path());
    let server = Server::start(&[]);
    server.put_job("verified", json!({"http": {"url": url}}));
    server.put_job(
        "unverified",
        json!({"http": {"url": url, "tls_verify": false}}),
    );
    let id = server.trigger("verified")["id"].as_i64().expect("id");
    let run = wait_final(&server, id);
    assert_eq!(run["state"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("certificate"), "{error}");
    let id = server.trigger("unverified")["id"].as_i64().expect("id");
    let run = wait_final(&server, id);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert!(
        log_of(&server, id).starts_with("HTTP/1.0 200 OK"),
        "{}",
        log_of(&server, id)
    );
    let _ = https.kill();
    let _ = https.wait();
}
