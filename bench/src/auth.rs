//! The benchmark's credentials: one admin token per benchmark process, written to a file that
//! only its owner can read and handed to every server it starts (`--admin-token-file`) and to
//! every worker (`--token-file`); every HTTP client sends it. The servers run with access control
//! on, as in production.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct BenchAuth {
    token: String,
    file: PathBuf,
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
        BenchAuth { token, file }
    })
}

/// The file holding the admin token (for `--admin-token-file` and `--token-file`).
pub fn token_file() -> &'static Path {
    &setup().file
}

/// An HTTP client builder that sends the admin token with every request.
pub fn client_builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", setup().token)) {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder().default_headers(headers)
}

/// An HTTP client that sends the admin token.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(client_builder().build()?)
}
