//! Opening the store: the data directory (private files, one process at a time), the writer and
//! checkpointer connections with their settings, the pool of read-only connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tempora_store::{StoreError, StoreOptions, StoreResult};

use crate::rows::db;
use crate::writer::Writer;
use crate::{checkpointer, schema};

/// WAL size (pages) at which the writer checkpoints by itself (SQLite's default is 1,000; the
/// checkpointer thread normally keeps the WAL far below this).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 20_000;

/// Most idle read connections kept.
const MAX_IDLE_READERS: usize = 8;

/// Default bound of the writer connection's page cache, in MiB. The writer's working set is the
/// right-hand edges of the runs table and its indexes plus the jobs it fires, far smaller than
/// this; pages it misses come from the operating system's file cache. The cache fills to this
/// bound as the database grows and then stays there, so it is what a long-running server's
/// memory levels off at (the readers keep SQLite's default of 2 MiB each).
pub const DEFAULT_CACHE_MIB: u32 = 16;

/// SQLite's `synchronous` setting for the store (WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Each commit syncs the WAL: a power loss loses nothing committed.
    #[default]
    Full,
    /// The WAL is synced at checkpoints only: a process crash loses nothing, a power loss may
    /// lose the last commits (and an occurrence fired in them may then run twice).
    Normal,
}

/// How the SQLite store uses memory and the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteTuning {
    /// Bound of the writer's page cache, MiB (at least 1).
    pub cache_mib: u32,
    /// Durability of commits.
    pub synchronous: Synchronous,
}

impl Default for SqliteTuning {
    fn default() -> Self {
        SqliteTuning {
            cache_mib: DEFAULT_CACHE_MIB,
            synchronous: Synchronous::Full,
        }
    }
}

/// Errors opening the database.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// SQLite refused to open or migrate.
    #[error("cannot open SQLite database {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The writer thread could not start.
    #[error("cannot start the SQLite writer thread: {0}")]
    Thread(std::io::Error),
    /// Another process holds the data directory.
    #[error(
        "another tempora server uses the data directory {path} ({holder}); one data directory serves one server (a cluster shares a PostgreSQL database instead)"
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// Who holds it, as its lock file says.
        holder: String,
    },
}

/// Take the data directory's lock (`tempora.lock`, holding the holder's pid), held for the life
/// of the store: two servers on one SQLite file would both schedule (the second would quietly
/// follow, then lead when the first stops, with two local pools on one store).
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, OpenError> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("tempora.lock");
    let io = |source| OpenError::DataDir {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "a process that has not written its pid yet".to_owned(),
                pid => format!("pid {pid}"),
            };
            return Err(OpenError::Locked {
                path: data_dir.to_owned(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    write!(f, "{}", std::process::id()).map_err(io)?;
    Ok(f)
}

/// The SQLite store.
pub struct SqliteStore {
    pub(crate) writer: Writer,
    pub(crate) readers: Arc<ReaderPool>,
    pub(crate) options: StoreOptions,
    /// The job the next [`Store::prune_runs`] call starts with (None: the first).
    pub(crate) prune_next: Mutex<Option<String>>,
    /// Held while a backup is written (one at a time: each copies the whole database).
    pub(crate) backup_running: Arc<tokio::sync::Mutex<()>>,
    /// The data directory's lock, held while the store is open.
    _lock: std::fs::File,
    /// Stops the checkpointer thread when the store is dropped.
    _checkpointer: checkpointer::Handle,
}

pub(crate) struct ReaderPool {
    pub(crate) path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn take(&self) -> StoreResult<Connection> {
        if let Some(c) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(c);
        }
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db)?;
        c.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        Ok(c)
    }

    fn give_back(&self, c: Connection) {
        if let Ok(mut v) = self.idle.lock()
            && v.len() < MAX_IDLE_READERS
        {
            v.push(c);
        }
    }
}

/// The data directory holds job specs (their `env`) and every run's output: a directory this
/// creates is 0700, and the database files are made 0600 (SQLite gives its `-wal` and `-shm`
/// files the database file's mode). An existing directory others can enter is left as it is,
/// with a warning.
fn private_files(data_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if !data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)?;
    } else if std::fs::metadata(data_dir)?.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            message = "the data directory can be read by other users; make it 0700",
            path = %data_dir.display()
        );
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(data_dir.join("tempora.db"))?;
    for name in ["tempora.db", "tempora.db-wal", "tempora.db-shm"] {
        let p = data_dir.join(name);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Open (creating if needed) `tempora.db` in `data_dir`, apply migrations, start the writer,
    /// with the default [`SqliteTuning`].
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<SqliteStore, OpenError> {
        Self::open_tuned(data_dir, options, SqliteTuning::default())
    }

    /// [`SqliteStore::open`] with the given page cache bound and durability.
    pub fn open_tuned(
        data_dir: &Path,
        options: StoreOptions,
        tuning: SqliteTuning,
    ) -> Result<SqliteStore, OpenError> {
        let cache_mib = tuning.cache_mib;
        let dir_err = |source| OpenError::DataDir {
            path: data_dir.to_owned(),
            source,
        };
        private_files(data_dir).map_err(dir_err)?;
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join("tempora.db");
        let err = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        let synchronous = match tuning.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA temp_store = MEMORY;"
        ))
        .map_err(err)?;
        // A negative cache_size is a bound in KiB.
        conn.pragma_update(None, "cache_size", -(i64::from(cache_mib.max(1)) * 1024))
            .map_err(err)?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&conn).map_err(err)?;
        // The checkpointer thread keeps the WAL short; the writer checkpoints itself only if the
        // WAL grows past this many pages anyway (a fallback, e.g. when the checkpointer is
        // starved).
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
            .map_err(err)?;
        let checkpoint_conn = Connection::open(&path).map_err(err)?;
        checkpoint_conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(err)?;
        let restart = checkpointer::RestartWanted::default();
        let checkpointer =
            checkpointer::start(checkpoint_conn, restart.clone()).map_err(OpenError::Thread)?;
        let writer = Writer::start(conn, restart).map_err(OpenError::Thread)?;
        Ok(SqliteStore {
            writer,
            readers: Arc::new(ReaderPool {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            options,
            prune_next: Mutex::new(None),
            backup_running: Arc::default(),
            _lock: lock,
            _checkpointer: checkpointer,
        })
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let r = f(&conn);
            pool.give_back(conn);
            r
        })
        .await
        .map_err(|e| StoreError::Backend(format!("reader task failed: {e}")))?
    }
}
