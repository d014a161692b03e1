//! TLS end to end, with a CA and certificates made by `openssl` at test time: a server over
//! HTTPS that requires client certificates (mutual TLS), the CLI and a `tempora worker` over
//! `https://` with `--ca-cert` and client certificates, certificate reload on SIGHUP, and a
//! two-node cluster whose PostgreSQL accepts only TLS connections (`hostssl`), checked with
//! `sslmode=verify-full`, with a worker and the CLI over `https://`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use serde_json::{Value, json};
use tempora_testkit::certs::{make_ca, make_cert};

/// curl over HTTPS → (HTTP status, body); status 0 when no HTTP answer came (TLS refused).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl must be installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `tempora server` with `args` and wait until `/ready` answers over HTTPS.
fn server(dir: &Path, args: &[&str], client: &[&str]) -> (Proc, String) {
    let port = common::free_port();
    let base = format!("https://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap();
    let child = Command::new(common::bin())
        .arg("server")
        .arg("--data-dir")
        .arg(dir.join(format!("data-{port}")))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--admin-token-file")
        .arg(common::admin_token_file())
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut a = client.to_vec();
        let ready = format!("{base}/ready");
        a.push(&ready);
        if curl(&a).0 == 200 {
            return (p, base);
        }
        let log =
            std::fs::read_to_string(dir.join(format!("server-{port}.log"))).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "server not ready over TLS:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cli(args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .env("TEMPORA_TOKEN", common::admin_token())
        .env_remove("TEMPORA_SERVER")
        .output()
        .unwrap()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn https_with_client_certificates_for_cli_worker_and_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    make_ca(d, "ca");
    make_cert(d, "ca", "server", "serverAuth");
    make_cert(d, "ca", "client", "clientAuth");
    let (ca, cert, key) = (
        path(d, "ca.pem"),
        path(d, "client.pem"),
        path(d, "client.key"),
    );
    let auth = format!("Authorization: Bearer {}", common::admin_token());
    let client: Vec<&str> = vec!["--cacert", &ca, "--cert", &cert, "--key", &key, "-H", &auth];
    let (mut srv, base) = server(
        d,
        &[
            "--tls-cert",
            &path(d, "server.pem"),
            "--tls-key",
            &path(d, "server.key"),
            "--client-ca",
            &ca,
            "--local-slots",
            "0",
        ],
        &client,
    );
    // Mutual TLS: no client certificate, no HTTP answer at all; plain HTTP gets none either.
    assert_eq!(
        curl(&[
            "--cacert",
            &ca,
            "-H",
            &auth,
            &format!("{base}/api/v1/status")
        ])
        .0,
        0
    );
    let plain = base.replace("https://", "http://");
    assert_eq!(curl(&[&format!("{plain}/api/v1/status")]).0, 0);
    // With the certificate: the token is still required.
    let status = format!("{base}/api/v1/status");
    assert_eq!(
        curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &status]).0,
        401
    );
    let mut with = client.clone();
    with.push(&status);
    assert_eq!(curl(&with).0, 200);
    // The CLI: trusts only --ca-cert's CA, presents its certificate.
    let tls_args = [
        "--ca-cert",
        &ca,
        "--client-cert",
        &cert,
        "--client-key",
        &key,
    ];
    let job = d.join("job.json");
    std::fs::write(
        &job,
        json!({"name": "over-tls", "command": "echo secure"}).to_string(),
    )
    .unwrap();
    let mut put = vec!["job", "put", job.to_str().unwrap(), "--server", &base];
    put.extend(tls_args);
    let out = cli(&put);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the CA the server's certificate is not trusted: the server is not reached.
    let out = cli(&[
        "job",
        "ls",
        "--server",
        &base,
        "--client-cert",
        &cert,
        "--client-key",
        &key,
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("certificate"), "the reason is shown: {err}");
    // A worker over HTTPS with its client certificate runs the job.
    let wlog = std::fs::File::create(d.join("worker.log")).unwrap();
    let _worker = Proc(
        Command::new(common::bin())
            .args([
                "worker",
                "--worker-id",
                "tls-worker",
                "--server",
                &base,
                "--token",
                common::admin_token(),
            ])
            .args(tls_args)
            .stdout(wlog.try_clone().unwrap())
            .stderr(wlog)
            .spawn()
            .unwrap(),
    );
    let mut run = vec!["job", "run", "over-tls", "--server", &base, "-o", "json"];
    run.extend(tls_args);
    let out = cli(&run);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"]
        .as_i64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let run_url = format!("{base}/api/v1/runs/{id}");
    loop {
        let mut a = client.clone();
        a.push(&run_url);
        let (_, body) = curl(&a);
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if v["state"] == "succeeded" {
            assert_eq!(v["worker"], "tls-worker");
            break;
        }
        let wl = std::fs::read_to_string(d.join("worker.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "run {v}\nworker log:\n{wl}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Certificate rotation: new files, SIGHUP, and the new chain is served.
    make_ca(d, "ca2");
    make_cert(d, "ca2", "server2", "serverAuth");
    std::fs::copy(d.join("server2.pem"), d.join("server.pem")).unwrap();
    std::fs::copy(d.join("server2.key"), d.join("server.key")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(srv.0.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let ca2 = path(d, "ca2.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(&[
        "--cacert", &ca2, "--cert", &cert, "--key", &key, "-H", &auth, &status,
    ])
    .0 != 200
    {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(curl(&with).0, 0, "the old CA no longer matches");
    assert!(
        srv.0.try_wait().unwrap().is_none(),
        "SIGHUP did not stop the server"
    );
}

#[test]
fn cluster_reaches_a_tls_only_postgres_with_verify_full() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    make_ca(d, "ca");
    make_cert(d, "ca", "server", "serverAuth");
    make_ca(d, "other");
    let pem = std::fs::read(d.join("server.pem")).unwrap();
    let key = std::fs::read(d.join("server.key")).unwrap();
    // Only TLS connections over TCP (`hostssl`); the local socket for pg_ctl.
    let pg = Postgres::start_with(
        &[("server.crt", &pem), ("server.key", &key)],
        &[
            ("ssl", "on"),
            ("ssl_cert_file", "{dir}/server.crt"),
            ("ssl_key_file", "{dir}/server.key"),
        ],
        Some("local all all trust\nhostssl all all 127.0.0.1/32 trust\n"),
    );
    let ca = path(d, "ca.pem");
    let url = |mode: &str, root: &str| format!("{}?sslmode={mode}&sslrootcert={root}", pg.url());
    let tls_url = url("verify-full", &ca);
    let https = [
        "--tls-cert".to_owned(),
        path(d, "server.pem"),
        "--tls-key".to_owned(),
        path(d, "server.key"),
    ];
    let auth = format!("Authorization: Bearer {}", common::admin_token());
    let client = ["--cacert", ca.as_str(), "-H", auth.as_str()];
    // The nodes run no jobs themselves: a `tempora worker` over HTTPS does.
    let node = |id: &str| {
        let mut args: Vec<&str> = vec![
            "--database-url",
            &tls_url,
            "--node-id",
            id,
            "--local-slots",
            "0",
        ];
        args.extend(https.iter().map(String::as_str));
        server(d, &args, &client)
    };
    let (_a, base_a) = node("a");
    let (_b, base_b) = node("b");
    // Plain TCP is refused by the database; a certificate from another CA by tempora.
    for bad in [
        url("disable", &ca),
        url("verify-full", &path(d, "other.pem")),
    ] {
        let out = Command::new(common::bin())
            .args(["server", "--listen", "127.0.0.1:0", "--database-url", &bad])
            .arg("--data-dir")
            .arg(d.join("refused"))
            .arg("--admin-token-file")
            .arg(common::admin_token_file())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("PostgreSQL"), "{err}");
    }
    let wlog = std::fs::File::create(d.join("cluster-worker.log")).unwrap();
    let _worker = Proc(
        Command::new(common::bin())
            .args([
                "worker",
                "--worker-id",
                "tls-w",
                "--server",
                &base_a,
                "--server",
                &base_b,
            ])
            .args(["--token", common::admin_token(), "--ca-cert", &ca])
            .stdout(wlog.try_clone().unwrap())
            .stderr(wlog)
            .spawn()
            .unwrap(),
    );
    // A job written with the CLI through one node, triggered through the other, runs on the
    // worker.
    let job = d.join("secure.json");
    std::fs::write(
        &job,
        json!({"name": "secure", "command": "echo ok"}).to_string(),
    )
    .unwrap();
    let out = cli(&[
        "job",
        "put",
        job.to_str().unwrap(),
        "--server",
        &base_a,
        "--ca-cert",
        &ca,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&[
        "job",
        "run",
        "secure",
        "--server",
        &base_b,
        "--ca-cert",
        &ca,
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"]
        .as_i64()
        .unwrap();
    let run_url = format!("{base_a}/api/v1/runs/{id}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut g: Vec<&str> = client.to_vec();
        g.push(&run_url);
        let v: Value = serde_json::from_str(&curl(&g).1).unwrap_or(Value::Null);
        if v["state"] == "succeeded" {
            assert_eq!(v["worker"], "tls-w");
            break;
        }
        let wl = std::fs::read_to_string(d.join("cluster-worker.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "run {v}\nworker log:\n{wl}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        pg.log().contains("no pg_hba.conf entry"),
        "the plain connection was refused by pg_hba:\n{}",
        pg.log()
    );
}
