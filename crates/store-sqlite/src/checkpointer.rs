//! The WAL checkpointer thread.
//!
//! In WAL mode committed pages are appended to the `-wal` file and copied back into the database
//! by a checkpoint. By default SQLite checkpoints inside the commit that makes the WAL exceed
//! 1,000 pages — on the writer thread, so every operation queued behind that commit waits for the
//! copy and the file sync. Here a separate connection runs a `PASSIVE` checkpoint every
//! [`EVERY`]: passive checkpoints never take the write lock, so the writer keeps committing while
//! pages are copied.
//!
//! Copying is not enough: the WAL file is rewritten from its start only when the writer begins
//! a transaction while every frame has been copied (and no reader still uses the WAL). Under a
//! steady stream of writes the writer has always committed more frames by then, so the WAL grew
//! to the writer's autocheckpoint bound and the writer checkpointed inside a commit — measured:
//! a ~160 ms commit every 2 s while retention deleted a large backlog, which was the fire-lag
//! tail. So once a passive pass has copied a WAL longer than [`RESTART_AT_PAGES`], the
//! checkpointer raises [`RestartWanted`]; the writer, between two transactions, then copies the
//! few frames written since (a passive checkpoint on its own connection: nothing else can be
//! writing), and its next commit starts the WAL over.
//!
//! The same loop publishes `tempora_sqlite_memory_bytes`, the memory SQLite holds (page caches,
//! prepared statements) across every connection of the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Pause between checkpoints.
pub const EVERY: Duration = Duration::from_millis(250);

/// A WAL at least this long (pages, 16 MiB), once fully copied, is restarted. Below it the WAL
/// usually restarts by itself; each restart step costs the writer a sync of the WAL and the
/// database (measured ~1,024 pages: drain throughput −12 %; 4,096: no measurable change; see
/// docs/decisions.md).
pub const RESTART_AT_PAGES: i64 = 4_096;

/// Set by the checkpointer when the WAL is long and fully copied; taken by the writer, which
/// then finishes the copy between two transactions so that its next commit restarts the WAL.
#[derive(Debug, Clone, Default)]
pub struct RestartWanted(Arc<AtomicBool>);

impl RestartWanted {
    fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// True once after each [`RestartWanted::raise`].
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// Stops the thread when dropped.
pub struct Handle {
    _stop: mpsc::Sender<()>,
}

/// Start the checkpointer on `conn` (a read-write connection to the database).
pub fn start(conn: Connection, restart: RestartWanted) -> std::io::Result<Handle> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || run(&conn, &rx, &restart))?;
    Ok(Handle { _stop: tx })
}

fn run(conn: &Connection, stop: &mpsc::Receiver<()>, restart: &RestartWanted) {
    // Sending nothing: the loop ends when the store (and so the sender) is dropped.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(EVERY) {
        metrics::gauge!("tempora_sqlite_memory_bytes").set(sqlite_memory_used() as f64);
        let t = Instant::now();
        match passive_checkpoint(conn) {
            Ok((wal_pages, copied)) => {
                if t.elapsed() > Duration::from_millis(100) {
                    tracing::debug!(
                        message = "slow WAL checkpoint",
                        wal_pages,
                        copied,
                        ms = t.elapsed().as_millis() as u64
                    );
                }
                if wal_pages >= RESTART_AT_PAGES && copied == wal_pages {
                    restart.raise();
                }
            }
            Err(e) => tracing::warn!(message = "WAL checkpoint failed", error = %e),
        }
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (pages in the WAL, pages copied into the database).
pub fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })
}

/// Bytes SQLite has allocated and not freed, over all connections of the process.
fn sqlite_memory_used() -> i64 {
    // SAFETY: `sqlite3_memory_used` takes no arguments and reads SQLite's global allocation
    // counter under its own mutex (the bundled library is built thread-safe), so it may be
    // called from any thread at any time.
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}
