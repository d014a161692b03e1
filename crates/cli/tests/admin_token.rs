//! The first admin token: a server's first start writes it to a file only its user reads, and
//! the CLI on that machine finds it (from the folder holding `./tempora-data`, for a server on a
//! loopback address that the file's owner runs) and nowhere else.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::Server;
use serde_json::Value;

#[test]
fn first_start_writes_an_admin_token_file_that_the_cli_finds() {
    let mut s = Server::start_plain(&[]);
    let data = s.data_dir();
    let port = s.port.to_string();
    // Where the user runs the CLI: `./tempora-data` is the server's data directory.
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&data, home.path().join("tempora-data")).unwrap();
    let file = data.join("admin.token");
    let mode_of = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_of(&file), 0o600);
    // The data directory (job specs, output) is private too.
    assert_eq!(mode_of(&data), 0o700);
    assert_eq!(mode_of(&data.join("tempora.db")), 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(
        token.starts_with("tempora_") && token.len() >= 40,
        "{token}"
    );
    assert!(!s.log().contains(&token), "the token is never logged");
    assert!(s.log().contains("admin.token"), "the log says where it is");
    // The CLI, run where `tempora-data/` is, talking to a loopback server, uses it unasked.
    let cli = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .args(args)
            .args(["--server", &format!("http://127.0.0.1:{port}")])
            .current_dir(home.path())
            .env_remove("TEMPORA_TOKEN")
            .output()
            .unwrap()
    };
    let out = cli(&["job", "ls"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&[
        "token",
        "create",
        "--name",
        "ci",
        "--role",
        "editor",
        "--expires",
        "90d",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ci = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(ci.starts_with("tempora_"), "{ci}");
    let out = cli(&["token", "ls"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ci") && text.contains("editor") && text.contains("active"),
        "{text}"
    );
    assert!(!text.contains(&ci), "secrets are never listed");
    // Restarted: the same file, the same token.
    s.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    s.spawn();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    assert!(cli(&["job", "ls"]).status.success());
    let out = cli(&["token", "revoke", "ci"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["token", "ls", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ci_row = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap()
        .clone();
    assert!(ci_row["revoked_at"].is_string(), "{ci_row}");
    // Another user's program listening on a loopback port never gets the local admin token.
    if std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        == b"0\n"
    {
        let trap = common::free_port();
        let seen = tempfile::Builder::new().tempfile_in("/tmp").unwrap();
        std::fs::set_permissions(seen.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
        let script = format!(
            "import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', {trap})); s.listen(); s.settimeout(20)\n\
             c, _ = s.accept(); data = c.recv(65536)\n\
             open('{}', 'wb').write(data)\n\
             c.sendall(b'HTTP/1.1 401 Unauthorized\\r\\ncontent-length: 0\\r\\nconnection: close\\r\\n\\r\\n')\n",
            seen.path().display()
        );
        let mut listener = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                &script,
            ])
            .spawn()
            .unwrap();
        // Listening (seen in /proc/net/tcp, without connecting: it accepts one connection).
        let needle = format!(":{trap:04X} 00000000:0000 0A");
        s.wait_for(Duration::from_secs(10), "the other user's listener", || {
            std::fs::read_to_string("/proc/net/tcp")
                .unwrap_or_default()
                .contains(&needle)
                .then_some(())
        });
        let out = std::process::Command::new(common::bin())
            .args(["job", "ls", "--server", &format!("http://127.0.0.1:{trap}")])
            .current_dir(home.path())
            .env_remove("TEMPORA_TOKEN")
            .output()
            .unwrap();
        let _ = listener.wait();
        assert!(!out.status.success());
        let got = std::fs::read_to_string(seen.path()).unwrap();
        assert!(got.starts_with("GET /api/v1/jobs"), "{got}");
        assert!(
            !got.contains(&token),
            "the admin token went to another user's listener"
        );
        assert!(!got.to_ascii_lowercase().contains("authorization"), "{got}");
    }
    // A token file others can read is refused at start, naming the file.
    let loose = home.path().join("loose.token");
    std::fs::write(&loose, "x".repeat(64)).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["server", "--data-dir"])
        .arg(home.path().join("other"))
        .args(["--listen", "127.0.0.1:0", "--admin-token-file"])
        .arg(&loose)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loose.token") && err.contains("0600"), "{err}");
}
