//! Durability and backups through the real binary: `synchronous=FULL` unless asked otherwise,
//! `tempora backup FILE` of a running server restored into a new one, a PostgreSQL node
//! pointing at `pg_dump`, and `export` writing files only their owner can read.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::Server;
use serde_json::json;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn sqlite_syncs_every_commit_unless_told_otherwise() {
    let full = Server::start(&[]);
    assert!(
        full.log().contains("sqlite_synchronous=\"full\""),
        "{}",
        full.log()
    );
    let normal = Server::start(&["--sqlite-synchronous", "normal"]);
    assert!(normal.log().contains("sqlite_synchronous=\"normal\""));
    let out = std::process::Command::new(common::bin())
        .args(["server", "--sqlite-synchronous", "off"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sqlite-synchronous"));
}

#[test]
fn a_backup_of_a_running_server_restores_into_a_new_one() {
    let s = Server::start(&[]);
    s.put_job(
        "keep",
        json!({"command": "echo kept", "schedule": "@hourly"}),
    );
    let id = s.trigger("keep")["id"].as_i64().unwrap();
    s.wait_final(id, Duration::from_secs(10));
    // Writes go on while the copy is made.
    s.put_job("busy", json!({"command": "true", "concurrency": "allow"}));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (s.url(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (st, body) =
                    common::http("POST", &format!("{url}/api/v1/jobs/busy/runs"), "{}")
                        .expect("trigger");
                assert_eq!(st, 201, "{body}");
                n += 1;
            }
            n
        })
    };
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("tempora-backup.db");
    let f = file.to_str().unwrap();
    let o = s.cli(&["backup", f]);
    assert!(o.status.success(), "{o:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
    assert_eq!(mode(&file), 0o600);
    assert!(!out_dir.path().join("tempora-backup.db.partial").exists());
    // Nothing is left beside the server's database.
    let left: Vec<String> = std::fs::read_dir(s.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("backup-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // An existing file is kept unless --force.
    let o = s.cli(&["backup", f]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert!(s.cli(&["backup", f, "--force"]).status.success());
    // The audit log names the backup.
    let (_, audit) = s.get("/api/v1/audit?limit=20");
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "store.backup"),
        "{audit}"
    );

    // Restore: the copy becomes the data directory's database of a new server.
    let restored = Server::start_with_data(&[], |data| {
        std::fs::create_dir_all(data).unwrap();
        std::fs::copy(&file, data.join("tempora.db")).unwrap();
    });
    let (st, job) = restored.get("/api/v1/jobs/keep");
    assert_eq!(st, 200, "{job}");
    assert_eq!(job["status"]["success_count"], 1);
    let (st, text) = restored.get_text(&format!("/api/v1/runs/{id}/log"));
    assert_eq!((st, text.as_str()), (200, "kept\n"));
    assert_eq!(restored.get("/api/v1/jobs/busy").0, 200);
}

#[test]
fn a_viewer_cannot_take_a_backup() {
    let s = Server::start(&[]);
    let (st, v) = s.send(
        "POST",
        "/api/v1/tokens",
        r#"{"name":"look","role":"operator"}"#,
    );
    assert_eq!(st, 201, "{v}");
    let o = std::process::Command::new(common::bin())
        .args(["backup", "/tmp/never-written.db"])
        .env("TEMPORA_SERVER", s.url())
        .env("TEMPORA_TOKEN", v["token"].as_str().unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("admin"),
        "{o:?}"
    );
    assert!(!std::path::Path::new("/tmp/never-written.db").exists());
}

#[test]
fn a_postgres_node_points_at_pg_dump() {
    let pg = common::postgres::Postgres::start();
    let s = Server::start(&["--database-url", &pg.url()]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.db");
    let o = s.cli(&["backup", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("pg_dump"),
        "{o:?}"
    );
    assert!(!file.exists());
    assert!(!dir.path().join("b.db.partial").exists());
}

#[test]
fn export_writes_files_only_their_owner_reads() {
    let s = Server::start(&[]);
    s.put_job("exported", json!({"command": "true"}));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("jobs");
    let o = s.cli(&["export", "--dir", out.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(mode(&out), 0o700);
    assert_eq!(mode(&out.join("exported.yaml")), 0o600);
}

/// A file or symbolic link planted where a backup or an export will write (a shared directory)
/// is refused, never written through.
#[test]
fn backup_and_export_do_not_write_through_planted_links() {
    let s = Server::start(&[]);
    s.put_job("planted", json!({"command": "true"}));
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("bk.db.partial")).unwrap();
    let o = s.cli(&["backup", dir.path().join("bk.db").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(!dir.path().join("bk.db").exists());
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    std::os::unix::fs::symlink(&victim, jobs.join("planted.yaml")).unwrap();
    let o = s.cli(&["export", "--dir", jobs.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // A directory named as the backup file is refused before anything is written.
    let o = s.cli(&["backup", jobs.to_str().unwrap(), "--force"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(!dir.path().join("jobs.partial").exists());
}

/// The real server on a disk that fills up: writes fail with 503 and store nothing, every
/// answer matches what is stored, and once there is room again the server carries on. Needs
/// root to mount a small tmpfs (CI runs as root).
#[test]
fn a_full_disk_fails_writes_cleanly_and_the_server_recovers() {
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    // The server's data directory is the small tmpfs itself.
    let mut mnt = None;
    let s = Server::start_with_data(&[], |data| {
        std::fs::create_dir_all(data).unwrap();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=8m,mode=0700",
                "tempora-full-disk",
            ])
            .arg(data)
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            mnt = Some(data.to_owned());
        }
    });
    let Some(mnt) = mnt else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot mount a tmpfs (needs root); CI must run this test"
        );
        return;
    };
    let _unmount = Unmount(mnt.clone());
    // Leave the store a little room.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![1u8; 64 * 1024];
    let mut written = 0u64;
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {
        written += chunk.len() as u64;
    }
    f.set_len(written.saturating_sub(400 * 1024)).unwrap();
    drop(f);
    let big = "x".repeat(40 * 1024);
    let answers: Vec<(String, u16)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (url, big) = (s.url(), &big);
                sc.spawn(move || {
                    (0..25)
                        .map(|i| {
                            let name = format!("full-{t}-{i}");
                            let body = json!({"command": format!("echo {big}")}).to_string();
                            let (st, _) =
                                common::http("PUT", &format!("{url}/api/v1/jobs/{name}"), &body)
                                    .expect("request");
                            (name, st)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let refused = answers.iter().filter(|(_, st)| *st == 503).count();
    assert!(refused > 0, "the disk never filled: {answers:?}");
    assert!(
        answers.iter().all(|(_, st)| *st == 201 || *st == 503),
        "{answers:?}"
    );
    // Room again: the server answers, and each job is stored exactly when it was accepted.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(s.get_text("/ready").0, 200);
    for (name, st) in &answers {
        let stored = s.get(&format!("/api/v1/jobs/{name}")).0 == 200;
        assert_eq!(stored, *st == 201, "{name}: answered {st}, stored {stored}");
    }
    s.put_job("after-full", json!({"command": "echo ok"}));
    let id = s.trigger("after-full")["id"].as_i64().unwrap();
    assert_eq!(
        s.wait_final(id, std::time::Duration::from_secs(10))["state"],
        "succeeded"
    );
}

/// One SQLite data directory serves one server: a second one exits at once, naming the holder.
#[test]
fn a_second_server_on_the_same_data_directory_exits() {
    let s = Server::start(&[]);
    let out = std::process::Command::new(common::bin())
        .arg("server")
        .arg("--data-dir")
        .arg(s.data_dir())
        .args(["--listen", "127.0.0.1:0"])
        .arg("--admin-token-file")
        .arg(common::admin_token_file())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another tempora server uses the data directory")
            && err.contains(&format!("pid {}", s.pid())),
        "{err}"
    );
    // The first one is unaffected.
    assert_eq!(s.get_text("/ready").0, 200);
}
