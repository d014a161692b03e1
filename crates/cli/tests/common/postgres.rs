//! A throwaway PostgreSQL 15 server for end-to-end tests that stop and start it (`pg_ctl`) or
//! need settings of their own (TLS, `pg_hba.conf`). It runs as the `postgres` user when the
//! tests run as root.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL server in a temporary directory.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    as_user: Vec<String>,
    owner: Option<(u32, u32)>,
    settings: String,
}

fn id_of(flag: &str, user: Option<&str>) -> Option<u32> {
    let out = Command::new("id")
        .arg(flag)
        .args(user)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl Postgres {
    /// initdb and start with the usual test settings.
    pub fn start() -> Postgres {
        Self::start_with(&[], &[], None)
    }

    /// initdb, write `files` (name, contents) into the server's directory (owned by the server's
    /// user, mode 0600), replace `pg_hba.conf` with `hba` if given, and start with extra
    /// `-c name=value` `settings`; `{dir}` in a value is the server's directory.
    pub fn start_with(
        files: &[(&str, &[u8])],
        settings: &[(&str, &str)],
        hba: Option<&str>,
    ) -> Postgres {
        let bin = PathBuf::from(std::env::var("TEMPORA_PG_BIN").unwrap_or_else(|_| PG_BIN.into()));
        assert!(
            bin.join("pg_ctl").is_file(),
            "{}/pg_ctl not found: this test needs PostgreSQL 15's binaries (Debian \
             `postgresql-15`, or TEMPORA_PG_BIN); this is a failure, not a skip",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut as_user = Vec::new();
        let mut owner = None;
        if id_of("-u", None) == Some(0) {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| id_of("-u", Some(u)).is_some())
                .expect("user postgres or nobody");
            let (uid, gid) = (
                id_of("-u", Some(user)).unwrap(),
                id_of("-g", Some(user)).unwrap(),
            );
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
            as_user = vec![
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
            ];
            owner = Some((uid, gid));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let shown = dir.path().display().to_string();
        let settings: String = settings
            .iter()
            .map(|(k, v)| format!(" -c {k}={}", v.replace("{dir}", &shown)))
            .collect();
        let pg = Postgres {
            bin,
            dir,
            port,
            as_user,
            owner,
            settings,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        for (name, contents) in files {
            pg.write_private(&pg.dir.path().join(name), contents);
        }
        if let Some(hba) = hba {
            pg.write_private(&pg.dir.path().join("data/pg_hba.conf"), hba.as_bytes());
        }
        pg.up();
        pg
    }

    fn write_private(&self, path: &std::path::Path, contents: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents).expect("write a PostgreSQL file");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, exe: &str, args: &[&str]) {
        let out = Command::new("setpriv")
            .args(&self.as_user)
            .arg("--")
            .arg(self.bin.join(exe))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{exe} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start (again).
    pub fn up(&self) {
        let opts = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200{}",
            self.port,
            self.dir.path().display(),
            self.settings
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "start"],
        );
    }

    /// Stop (fast shutdown).
    pub fn down(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("setpriv")
            .args(&self.as_user)
            .arg("--")
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
