//! Opening the store: the connection pool and its sessions' settings, the migrations, and the
//! transaction wrapper every operation runs in (retried on a serialization failure or deadlock).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tempora_store::{StoreError, StoreOptions, StoreResult};

use crate::pool::{self, Conn, Pool, TxError, TxResult};
use crate::{schema, tls};

/// Most connections one store opens.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// Most times an operation is run again after a serialization failure or deadlock.
const MAX_RETRIES: u32 = 10;

/// Milliseconds a session may sit idle inside a transaction before the server ends it.
const IDLE_IN_TX_TIMEOUT_MS: u32 = 2000;

/// Errors connecting to the database.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection string could not be parsed.
    #[error("invalid PostgreSQL connection string: {0}")]
    Config(tokio_postgres::Error),
    /// The server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL: {}", pool::describe(.0))]
    Connect(tokio_postgres::Error),
    /// The schema migrations failed.
    #[error("cannot migrate the PostgreSQL schema: {}", pool::describe(.0))]
    Migrate(tokio_postgres::Error),
    /// `sslmode`/`sslrootcert` cannot be honoured.
    #[error("PostgreSQL TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pub(crate) pool: Pool,
    pub(crate) options: StoreOptions,
    /// The job the next [`Store::prune_runs`] call starts with (None: the first).
    pub(crate) prune_next: std::sync::Mutex<Option<String>>,
}

pub(crate) type TxFuture<'c, T> = Pin<Box<dyn Future<Output = TxResult<T>> + Send + 'c>>;

const BEGIN_WRITE: &str = "BEGIN";
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

impl PostgresStore {
    /// Connect to `url` (a `postgres://` URL or a `key=value` connection string), apply the
    /// migrations, and keep up to [`DEFAULT_POOL_SIZE`] connections.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<PostgresStore, ConnectError> {
        Self::connect_with_pool_size(url, options, DEFAULT_POOL_SIZE).await
    }

    /// [`PostgresStore::connect`] with a chosen pool size.
    pub async fn connect_with_pool_size(
        url: &str,
        options: StoreOptions,
        pool_size: usize,
    ) -> Result<PostgresStore, ConnectError> {
        // libpq's TLS parameters are ours to apply (tokio-postgres knows only some of them).
        let (url, tls_params) = tls::split_params(url);
        let tls = tls::connector(&tls_params)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(ConnectError::Config)?;
        if tls.is_some() {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A node paused (SIGSTOP, VM freeze) in the middle of a transaction must not hold its
        // row locks (the leader lease, a job's row) past its lease: the server ends such a
        // session after 2 s of waiting on the client, and a new leader can take over. tempora's
        // transactions never wait on the client between statements.
        let session = config.get_options().unwrap_or_default().to_owned();
        if !session.contains("idle_in_transaction_session_timeout") {
            config.options(format!(
                "{session} -c idle_in_transaction_session_timeout={IDLE_IN_TX_TIMEOUT_MS}"
            ));
        }
        if config.get_application_name().is_none() {
            config.application_name("tempora");
        }
        let mut client = Pool::connect(&config, tls.as_ref())
            .await
            .map_err(ConnectError::Connect)?;
        schema::migrate(&mut client)
            .await
            .map_err(ConnectError::Migrate)?;
        let pool = Pool::new(config, tls, pool_size);
        pool.put(client);
        tracing::debug!(message = "connected to PostgreSQL", pool_size);
        Ok(PostgresStore {
            pool,
            options,
            prune_next: std::sync::Mutex::new(None),
        })
    }

    /// Run `f` in a transaction opened with `begin`, committing on success and rolling back on
    /// error; run it again (from the start) after a serialization failure or deadlock.
    async fn tx<T, F>(&self, begin: &'static str, f: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> Fn(&'c Conn) -> TxFuture<'c, T> + Send + Sync,
    {
        let mut attempt = 0u32;
        loop {
            let mut pooled = self.pool.get().await?;
            let Some(conn) = pooled.conn() else {
                return Err(StoreError::Backend("pooled connection missing".into()));
            };
            let res: TxResult<T> = async {
                conn.batch(begin).await?;
                let v = f(conn).await?;
                conn.batch("COMMIT").await?;
                Ok(v)
            }
            .await;
            let err = match res {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if conn.batch("ROLLBACK").await.is_err() {
                pooled.discard();
            }
            drop(pooled);
            if let TxError::Db(d) = &err
                && pool::retryable(d)
                && attempt < MAX_RETRIES
            {
                attempt += 1;
                tracing::debug!(message = "transaction retried", attempt, error = %d);
                tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
                continue;
            }
            return Err(pool::store_error(err));
        }
    }

    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> Fn(&'c Conn) -> TxFuture<'c, T> + Send + Sync,
    {
        self.tx(BEGIN_WRITE, f).await
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> Fn(&'c Conn) -> TxFuture<'c, T> + Send + Sync,
    {
        self.tx(BEGIN_READ, f).await
    }
}
