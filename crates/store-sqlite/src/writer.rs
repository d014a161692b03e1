//! The single writer thread with group commit.
//!
//! SQLite allows one writer at a time. Instead of many connections contending for the write lock
//! ("database is locked"), one thread owns the only writing connection. Operations queue up on a
//! channel; the thread takes every queued operation (up to [`MAX_BATCH`]), runs them in one
//! `BEGIN IMMEDIATE … COMMIT` transaction — each inside its own savepoint, so a failing operation
//! is rolled back alone and stores nothing — and answers each caller after the commit. When the
//! commit fails, or SQLite rolls the whole transaction back by itself (disk full, I/O error),
//! every operation of the batch fails with [`StoreError::Unavailable`]: none was stored. Under load
//! this batches many fires, claims and results per fsync; when idle an operation commits alone.

use std::sync::mpsc;

use rusqlite::Connection;
use tempora_store::{StoreError, StoreResult};
use tokio::sync::oneshot;

use crate::checkpointer::{self, RestartWanted};

/// Most operations committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// A queued write operation, type-erased.
trait WriteOp: Send {
    /// Run inside the open transaction; true when it succeeded (its savepoint is kept).
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Deliver the result once the transaction's fate is known.
    fn complete(self: Box<Self>, commit: Result<(), String>);
}

struct Op<T, F> {
    f: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> WriteOp for Op<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let r = f(conn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn complete(self: Box<Self>, commit: Result<(), String>) {
        let res = match (commit, self.result) {
            (Ok(()), Some(r)) => r,
            (Err(_), Some(Err(op_err))) if !matches!(op_err, StoreError::Backend(_)) => {
                // The operation was refused on its own (not found, invalid…); report that.
                Err(op_err)
            }
            // Nothing of the batch was stored: the caller may retry.
            (Err(e), _) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::Backend("operation was not executed".into())),
        };
        let _ = self.reply.send(res);
    }
}

/// Handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Box<dyn WriteOp>>,
}

impl Writer {
    /// Start the writer thread on `conn`; it finishes WAL copies the checkpointer asks for
    /// through `restart` (see [`checkpointer`]).
    pub fn start(conn: Connection, restart: RestartWanted) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Box<dyn WriteOp>>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, restart))?;
        Ok(Writer { tx })
    }

    /// Run `f` in a write transaction (shared with other queued operations) and return its result
    /// once committed.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let op: Box<dyn WriteOp> = Box::new(Op {
            f: Some(f),
            result: None,
            reply,
        });
        self.tx
            .send(op)
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?
    }
}

/// Copy the frames committed since the checkpointer's last pass (no other connection writes, so
/// the copy is complete unless a reader still needs an older frame): the next transaction then
/// starts the WAL file over instead of growing it.
fn finish_wal_copy(conn: &Connection) {
    let t = std::time::Instant::now();
    match checkpointer::passive_checkpoint(conn) {
        Ok((wal_pages, copied)) => tracing::trace!(
            message = "WAL copy finished for a restart",
            wal_pages,
            copied,
            us = t.elapsed().as_micros() as u64
        ),
        Err(e) => tracing::warn!(message = "WAL checkpoint failed", error = %e),
    }
}

/// What each operation of a batch SQLite rolled back hears.
const ROLLED_BACK: &str =
    "the transaction was rolled back (disk full or I/O error); nothing was stored";

/// Commits slower than this are logged (debug).
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(20);

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Box<dyn WriteOp>>, restart: RestartWanted) {
    let mut batch: Vec<Box<dyn WriteOp>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        if restart.take() {
            finish_wal_copy(&conn);
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let size = batch.len();
        let started = std::time::Instant::now();
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(message = "cannot begin SQLite transaction", error = %msg);
            for op in batch.drain(..) {
                op.complete(Err(msg.clone()));
            }
            continue;
        }
        // Set when SQLite rolled the whole transaction back by itself (disk full, I/O error):
        // then nothing of the batch is stored, and the operations after it must not run
        // outside a transaction, each committing on its own while its caller hears "failed".
        let mut aborted = false;
        for op in batch.iter_mut() {
            if let Err(e) = conn.execute_batch("SAVEPOINT op") {
                tracing::error!(message = "cannot open savepoint", error = %e);
                aborted = true;
                break;
            }
            let ok = op.apply(&conn);
            let end = if ok {
                "RELEASE op"
            } else {
                "ROLLBACK TO op; RELEASE op"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(message = "cannot close savepoint", error = %e);
            }
            if conn.is_autocommit() {
                aborted = true;
                break;
            }
        }
        let commit_started = std::time::Instant::now();
        let commit = if aborted {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(
                message = "SQLite rolled the transaction back; every operation of the batch fails",
                batch = size
            );
            Err(ROLLED_BACK.to_owned())
        } else {
            conn.execute_batch("COMMIT").map_err(|e| e.to_string())
        };
        let commit_took = commit_started.elapsed();
        if commit_took > SLOW_COMMIT {
            tracing::debug!(
                message = "slow SQLite commit",
                batch = size,
                commit_ms = commit_took.as_millis() as u64,
                ops_ms = (commit_started - started).as_millis() as u64,
            );
        }
        if let Err(e) = &commit {
            tracing::error!(message = "SQLite commit failed", error = %e, batch = size);
            let _ = conn.execute_batch("ROLLBACK");
        }
        for op in batch.drain(..) {
            op.complete(commit.clone());
        }
        metrics::histogram!("tempora_store_write_batch_size").record(size as f64);
        metrics::histogram!("tempora_store_write_batch_seconds")
            .record(started.elapsed().as_secs_f64());
    }
}
