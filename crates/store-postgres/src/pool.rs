//! A small connection pool: at most `size` clients, idle ones kept for reuse, a client whose
//! connection closed replaced by a new one. Each pooled client caches its prepared statements.

use std::collections::HashMap;
use std::sync::Mutex;

use tempora_store::{StoreError, StoreResult};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

/// An error inside a transaction body: a store outcome, or a database error (which may be
/// retried when it is a serialization failure or a deadlock).
#[derive(Debug)]
pub enum TxError {
    /// A store-level outcome (not found, conflict, invalid…).
    Store(StoreError),
    /// The database refused or failed.
    Db(tokio_postgres::Error),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<tempora_core::job::ValidationError> for TxError {
    fn from(e: tempora_core::job::ValidationError) -> Self {
        TxError::Store(StoreError::Invalid(e))
    }
}

/// Result of transaction bodies.
pub type TxResult<T> = Result<T, TxError>;

/// True when the transaction may succeed if run again (serialization failure, deadlock).
pub fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// True when the connection is gone or the server is going away.
pub fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(c) => {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
        }
        // No SQLSTATE: lost only if the cause is I/O (a conversion error is not).
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// Map a database error to a store error.
pub fn db_error(e: tokio_postgres::Error) -> StoreError {
    if connection_lost(&e) {
        StoreError::Unavailable(e.to_string())
    } else {
        match e.as_db_error() {
            Some(d) => StoreError::Backend(format!("{}: {}", d.code().code(), d.message())),
            None => StoreError::Backend(e.to_string()),
        }
    }
}

/// Map a transaction body's error to a store error.
pub fn store_error(e: TxError) -> StoreError {
    match e {
        TxError::Store(s) => s,
        TxError::Db(d) => db_error(d),
    }
}

/// One client with its statement cache.
pub struct Conn {
    client: Client,
    stmts: Mutex<HashMap<String, Statement>>,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Conn {
    async fn stmt(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.stmts.lock().ok().and_then(|m| m.get(sql).cloned()) {
            return Ok(s);
        }
        let s = self.client.prepare(sql).await?;
        if let Ok(mut m) = self.stmts.lock() {
            m.insert(sql.to_owned(), s.clone());
        }
        Ok(s)
    }

    /// All rows of a statement.
    pub async fn query(&self, sql: &str, p: Params<'_>) -> TxResult<Vec<Row>> {
        let s = self.stmt(sql).await?;
        Ok(self.client.query(&s, p).await?)
    }

    /// At most one row.
    pub async fn query_opt(&self, sql: &str, p: Params<'_>) -> TxResult<Option<Row>> {
        let s = self.stmt(sql).await?;
        Ok(self.client.query_opt(&s, p).await?)
    }

    /// Exactly one row.
    pub async fn query_one(&self, sql: &str, p: Params<'_>) -> TxResult<Row> {
        let s = self.stmt(sql).await?;
        Ok(self.client.query_one(&s, p).await?)
    }

    /// Rows affected.
    pub async fn execute(&self, sql: &str, p: Params<'_>) -> TxResult<u64> {
        let s = self.stmt(sql).await?;
        Ok(self.client.execute(&s, p).await?)
    }

    /// Run statements without parameters (transaction control).
    pub async fn batch(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(sql).await
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// The pool.
pub struct Pool {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

/// A client taken from the pool; given back on drop unless discarded or closed.
pub struct Pooled<'a> {
    conn: Option<Conn>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl Pooled<'_> {
    /// The client (None only after [`Pooled::discard`]).
    pub fn conn(&self) -> Option<&Conn> {
        self.conn.as_ref()
    }

    /// Do not give this client back (its session state is unknown).
    pub fn discard(&mut self) {
        self.conn = None;
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take()
            && !c.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(c);
        }
    }
}

impl Pool {
    /// A pool of at most `size` clients for `config`, over TLS with `tls` (else plain TCP).
    pub fn new(config: Config, tls: Option<MakeRustlsConnect>, size: usize) -> Pool {
        Pool {
            config,
            tls,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
        }
    }

    /// Add an already connected client.
    pub fn put(&self, client: Client) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(Conn {
                client,
                stmts: Mutex::new(HashMap::new()),
            });
        }
    }

    /// Open a new client (over TLS with `tls`); its connection runs on a spawned task.
    pub async fn connect(
        config: &Config,
        tls: Option<&MakeRustlsConnect>,
    ) -> Result<Client, tokio_postgres::Error> {
        fn run<F>(connection: F)
        where
            F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
        {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(message = "PostgreSQL connection ended", error = %e);
                }
            });
        }
        match tls {
            Some(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                run(connection);
                Ok(client)
            }
            None => {
                let (client, connection) = config.connect(NoTls).await?;
                run(connection);
                Ok(client)
            }
        }
    }

    /// Take a client, waiting while all are in use.
    pub async fn get(&self) -> StoreResult<Pooled<'_>> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the PostgreSQL pool is closed".into()))?;
        loop {
            let c = self.idle.lock().ok().and_then(|mut v| v.pop());
            match c {
                Some(c) if c.is_closed() => continue,
                Some(c) => {
                    return Ok(Pooled {
                        conn: Some(c),
                        pool: self,
                        _permit: permit,
                    });
                }
                None => break,
            }
        }
        let client = Pool::connect(&self.config, self.tls.as_ref())
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to PostgreSQL: {}", describe(&e)))
            })?;
        Ok(Pooled {
            conn: Some(Conn {
                client,
                stmts: Mutex::new(HashMap::new()),
            }),
            pool: self,
            _permit: permit,
        })
    }
}

/// An error with its cause: the server's message for a database error (e.g. `password
/// authentication failed for user "x"`), the I/O error for a failed connection (e.g. `Connection
/// refused`) — tokio-postgres's own text ("db error", "error connecting to server") says neither.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
