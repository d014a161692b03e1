//! The benchmark's credentials: one admin token per benchmark process, written to a file that
//! only its owner can read and handed to every server it starts (`--admin-token-file`) and to
//! every worker (`--token-file`); every HTTP client sends it. The servers run with access control
//! on, as in production. With `TEMPORA_BENCH_TLS=1` they also serve HTTPS, with a CA and a
//! certificate made by `openssl` for the run, and every client trusts that CA only.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct BenchAuth {
    token: String,
    file: PathBuf,
    /// With TLS: the CA certificate, the server certificate and its key.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // Invariant of a TLS benchmark run: openssl is installed (the README says so).
    assert!(
        ok,
        "openssl {args:?} failed (TEMPORA_BENCH_TLS needs openssl)"
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=bench-ca",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    let _ = std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

fn setup() -> &'static BenchAuth {
    static AUTH: OnceLock<BenchAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            // Invariant: the benchmark runs on Linux, where /dev/urandom always reads.
            .expect("/dev/urandom");
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("tempora-bench-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("admin.token");
        let _ = std::fs::remove_file(&file);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| f.write_all(token.as_bytes()));
        // Invariant: the system's temporary directory is writable.
        written.expect("write the benchmark's token file");
        let tls = std::env::var("TEMPORA_BENCH_TLS")
            .is_ok_and(|v| v == "1")
            .then(|| make_certs(&dir));
        BenchAuth { token, file, tls }
    })
}

/// The admin token (signing in to the web UI).
pub fn token() -> &'static str {
    &setup().token
}

/// Whether the servers serve HTTPS (`TEMPORA_BENCH_TLS=1`).
pub fn tls() -> bool {
    setup().tls.is_some()
}

/// The base URL of a server on `port`.
pub fn base(port: u16) -> String {
    let scheme = if tls() { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{port}")
}

/// The flags every server gets: the admin token file, and the certificate with TLS.
pub fn server_args() -> Vec<std::ffi::OsString> {
    let a = setup();
    let mut args: Vec<std::ffi::OsString> =
        vec!["--admin-token-file".into(), a.file.clone().into()];
    if let Some((_, cert, key)) = &a.tls {
        args.extend([
            "--tls-cert".into(),
            cert.clone().into(),
            "--tls-key".into(),
            key.clone().into(),
        ]);
    }
    args
}

/// The flags every `tempora worker` gets: the token file, and the CA with TLS.
pub fn worker_args() -> Vec<std::ffi::OsString> {
    let a = setup();
    let mut args: Vec<std::ffi::OsString> = vec!["--token-file".into(), a.file.clone().into()];
    if let Some((ca, _, _)) = &a.tls {
        args.extend(["--ca-cert".into(), ca.clone().into()]);
    }
    args
}

/// An HTTP client builder that sends the admin token with every request (and trusts the run's
/// CA only, with TLS).
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", setup().token)) {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let builder = reqwest::Client::builder().default_headers(headers);
    match setup()
        .tls
        .as_ref()
        .and_then(|(ca, _, _)| std::fs::read(ca).ok())
        .and_then(|pem| reqwest::Certificate::from_pem(&pem).ok())
    {
        Some(ca) => builder.tls_certs_only([ca]),
        None => builder,
    }
}

/// An HTTP client that sends the admin token.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(client_builder().build()?)
}
