//! The PostgreSQL store's connection pool, directly on the server or behind a
//! transaction-pooling PgBouncer (`[store] pooler = "pgbouncer"`).
//!
//! Behind a transaction pooler a client connection has a server connection only from
//! `BEGIN` to `COMMIT`; between transactions, after every `ReadyForQuery` that reports
//! "idle", the pooler may hand the server connection to another client. The driver runs
//! a statement with parameters as two exchanges (`Parse`/`Describe`/`Sync`, then
//! `Bind`/`Execute`/`Sync`), so outside a transaction the `Bind` can reach a server
//! connection that never saw the `Parse` (or that another client has since parsed a
//! statement of its own on), and a named statement cached on one server connection is
//! missing or already present on another. So, behind a pooler, statements are never
//! cached (each is parsed as the unnamed statement) and every statement outside a
//! transaction runs in a transaction of its own, which keeps one server connection for
//! both exchanges.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Either, Execute, Executor, PgConnection, PgPool, Postgres, SqlSafeStr, SqlStr, Transaction};

/// What sits between the store and PostgreSQL (`[store] pooler`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pooler {
    /// The store connects to PostgreSQL itself (or through a pooler in session mode).
    #[default]
    None,
    /// PgBouncer (or any pooler) in transaction mode.
    PgBouncer,
}

/// How the PostgreSQL store connects (`[store]` in `tributary.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// What `database_url` points at.
    pub pooler: Pooler,
    /// A URL straight to PostgreSQL for the wake-up listener (`LISTEN` needs a session of
    /// its own, which a transaction pooler does not give). `None`: the listener uses
    /// `database_url`, or, behind a pooler, there is none.
    pub listen_url: Option<String>,
    /// The most connections this process opens to `database_url`.
    pub max_connections: u32,
}

/// The pool size of a process when `[store] max_connections` is not set.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

impl Default for PgOptions {
    fn default() -> Self {
        Self { pooler: Pooler::None, listen_url: None, max_connections: DEFAULT_MAX_CONNECTIONS }
    }
}

/// The PostgreSQL store's pool: an [`Executor`] like [`PgPool`], which behind a
/// transaction pooler runs each statement in a transaction of its own.
#[derive(Debug, Clone)]
pub struct PgDb {
    pool: PgPool,
    /// Behind a transaction pooler.
    pinned: bool,
}

impl PgDb {
    pub(super) fn new(pool: PgPool, pooler: Pooler) -> Self {
        Self { pool, pinned: pooler == Pooler::PgBouncer }
    }

    /// Whether statements go through a transaction pooler.
    pub(super) fn behind_pooler(&self) -> bool {
        self.pinned
    }

    /// The pool itself (for what takes a [`PgPool`], such as the migrator).
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection for several statements. Behind a pooler it is inside a transaction
    /// (so its statements keep one server connection), rolled back when dropped: use it
    /// only to read, and [`Self::begin_with`] to write.
    pub(super) async fn acquire(&self) -> Result<PgConn, sqlx::Error> {
        if self.pinned {
            Ok(PgConn::Pinned(self.pool.begin().await?))
        } else {
            Ok(PgConn::Plain(self.pool.acquire().await?))
        }
    }

    pub(super) async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    pub(super) async fn begin_with(
        &self,
        statement: impl SqlSafeStr,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin_with(statement).await
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    pub(super) fn connect_options(&self) -> Arc<PgConnectOptions> {
        self.pool.connect_options()
    }
}

/// A connection from [`PgDb::acquire`].
pub(super) enum PgConn {
    Plain(PoolConnection<Postgres>),
    Pinned(Transaction<'static, Postgres>),
}

impl Deref for PgConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            PgConn::Plain(c) => c,
            PgConn::Pinned(t) => t,
        }
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            PgConn::Plain(c) => c,
            PgConn::Pinned(t) => t,
        }
    }
}

type Item = Result<Either<PgQueryResult, PgRow>, sqlx::Error>;

/// Runs `query` in a transaction of its own on a connection of `pool`; its results (up
/// to the first error, which rolls the transaction back) go to `out`.
async fn in_own_transaction<'q, E>(pool: &PgPool, query: E, out: &mut Vec<Item>) -> Result<(), sqlx::Error>
where
    E: 'q + Execute<'q, Postgres>,
{
    let mut tx = pool.begin().await?;
    {
        let mut results = (&mut *tx).fetch_many(query);
        while let Some(item) = results.next().await {
            let failed = item.is_err();
            out.push(item);
            if failed {
                return Ok(());
            }
        }
    }
    tx.commit().await
}

impl<'p> Executor<'p> for &'p PgDb {
    type Database = Postgres;

    /// Behind a pooler the results are read to the end before they are handed on (the
    /// transaction ends first): callers that stream many rows read them in batches.
    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Item>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pinned {
            return (&self.pool).fetch_many(query);
        }
        let pool = self.pool.clone();
        let results = async move {
            let mut out = Vec::new();
            if let Err(e) = in_own_transaction(&pool, query, &mut out).await {
                out.push(Err(e));
            }
            stream::iter(out)
        };
        stream::once(results).flatten().boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pinned {
            return (&self.pool).fetch_optional(query);
        }
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut tx = pool.begin().await?;
            let row = (&mut *tx).fetch_optional(query).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        (&self.pool).prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'p: 'e,
    {
        (&self.pool).describe(sql)
    }
}
