//! The WAL checkpointer thread.
//!
//! In WAL mode committed pages are appended to the `-wal` file and copied back into the database
//! by a checkpoint. By default SQLite checkpoints inside the commit that makes the WAL exceed
//! 1,000 pages — on the writer thread, so every operation queued behind that commit waits for the
//! copy and the file sync. Here a separate connection runs a `PASSIVE` checkpoint every
//! [`EVERY`]: passive checkpoints never take the write lock, so the writer keeps committing while
//! pages are copied.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Pause between checkpoints.
pub const EVERY: Duration = Duration::from_millis(250);

/// Stops the thread when dropped.
pub struct Handle {
    _stop: mpsc::Sender<()>,
}

/// Start the checkpointer on `conn` (a read-write connection to the database).
pub fn start(conn: Connection) -> std::io::Result<Handle> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || run(&conn, &rx))?;
    Ok(Handle { _stop: tx })
}

fn run(conn: &Connection, stop: &mpsc::Receiver<()>) {
    // Sending nothing: the loop ends when the store (and so the sender) is dropped.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(EVERY) {
        let t = Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((wal_pages, copied)) => {
                if t.elapsed() > Duration::from_millis(100) {
                    tracing::debug!(
                        message = "slow WAL checkpoint",
                        wal_pages,
                        copied,
                        ms = t.elapsed().as_millis() as u64
                    );
                }
            }
            Err(e) => tracing::warn!(message = "WAL checkpoint failed", error = %e),
        }
    }
}
