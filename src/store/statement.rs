//! The keys that address rows, written once for every statement and both backends: a
//! SQL fragment that matches a key's columns against the first parameters (`$1`, `$2`,
//! …), and the identifiers to bind to them, in the same order ([`Bind::bind_key`]).

use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::error::{StoreError, db};

use crate::model::{Owner, ProviderId, TenantId};

/// `owner`'s connection to `provider` at the tenant: `$1`, `$2`, `$3` are [`connection`].
macro_rules! connection_key {
    () => {
        "tenant_id = $1 AND provider = $2 AND owner_user = $3"
    };
}

/// The tenant's integration with a provider (its aggregate, pairs of contributors,
/// contributions and responsibilities): `$1`, `$2` are [`integration`].
macro_rules! integration_key {
    () => {
        "tenant_id = $1 AND provider = $2"
    };
}

/// The identifiers [`connection_key!`] matches.
pub(super) fn connection<'a>(tenant: &'a TenantId, provider: &'a ProviderId, owner: Owner<'a>) -> [&'a str; 3] {
    [tenant.as_str(), provider.as_str(), owner.as_str()]
}

/// The identifiers [`integration_key!`] matches.
pub(super) fn integration<'a>(tenant: &'a TenantId, provider: &'a ProviderId) -> [&'a str; 2] {
    [tenant.as_str(), provider.as_str()]
}

/// Binding parameters, the same way for every kind of sqlx statement.
pub(super) trait Bind<'q, DB: Database>: Sized {
    /// The statement's own `bind`.
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self;

    /// Binds a key's identifiers as the next parameters, in order.
    fn bind_key<const N: usize>(self, key: [&'q str; N]) -> Self
    where
        &'q str: Encode<'q, DB> + Type<DB>,
    {
        key.into_iter().fold(self, Self::bind_value)
    }
}

impl<'q, DB: Database> Bind<'q, DB> for Query<'q, DB, <DB as Database>::Arguments> {
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, DB: Database, O> Bind<'q, DB> for QueryAs<'q, DB, O, <DB as Database>::Arguments> {
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, DB: Database, O> Bind<'q, DB> for QueryScalar<'q, DB, O, <DB as Database>::Arguments> {
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

/// The row `sql` selects with `key` bound as its parameters, if there is one.
pub(super) async fn optional<'e, 'c: 'e, 'q: 'e, DB, O, E, const N: usize>(
    conn: E,
    sql: &'static str,
    key: [&'q str; N],
    context: &'static str,
) -> Result<Option<O>, StoreError>
where
    DB: Database,
    DB: 'e,
    E: 'e + Executor<'c, Database = DB>,
    O: 'e + Send + Unpin + for<'r> FromRow<'r, DB::Row>,
    &'q str: Encode<'q, DB> + Type<DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
{
    sqlx::query_as(sql).bind_key(key).fetch_optional(conn).await.map_err(db(context))
}

/// Every row `sql` selects with `key` bound as its parameters.
pub(super) async fn all<'e, 'c: 'e, 'q: 'e, DB, O, E, const N: usize>(
    conn: E,
    sql: &'static str,
    key: [&'q str; N],
    context: &'static str,
) -> Result<Vec<O>, StoreError>
where
    DB: Database,
    DB: 'e,
    E: 'e + Executor<'c, Database = DB>,
    O: 'e + Send + Unpin + for<'r> FromRow<'r, DB::Row>,
    &'q str: Encode<'q, DB> + Type<DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
{
    sqlx::query_as(sql).bind_key(key).fetch_all(conn).await.map_err(db(context))
}
