//! How statements address rows and run, written once for every statement and both
//! backends: the keys that address rows (a SQL fragment matching a key's columns against
//! the first parameters `$1`, `$2`, …, and the identifiers bound to them in the same
//! order), binding a statement's parameters in one call ([`Bind`]: a key, or a tuple of
//! values in `$n` order), and reading the rows a key selects ([`optional`], [`all`]) with
//! a failure naming what the store was doing.

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

/// A user's responsibility on the tenant's integration: `$1`, `$2` are [`integration`],
/// `$3` the user.
macro_rules! responsibility_key {
    () => {
        concat!(integration_key!(), " AND user_id = $3")
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

    /// Binds `key` as the next parameters, in order.
    fn bind_key(self, key: impl Key<'q, DB>) -> Self {
        key.bind_to(self)
    }

    /// Binds each value of a tuple as the next parameters, in order.
    fn bind_all(self, values: impl Values<'q, DB>) -> Self {
        values.bind_to(self)
    }
}

/// Values of different types bound one after another: a tuple.
pub(super) trait Values<'q, DB: Database> {
    /// Binds the values to `query`, in order.
    fn bind_to<Q: Bind<'q, DB>>(self, query: Q) -> Q;
}

/// [`Values`] for tuples of up to 12 values.
macro_rules! tuple_values {
    ($($value:ident),+) => {
        impl<'q, DB: Database, $($value: 'q + Encode<'q, DB> + Type<DB>),+> Values<'q, DB> for ($($value,)+) {
            #[allow(non_snake_case)]
            fn bind_to<Q: Bind<'q, DB>>(self, query: Q) -> Q {
                let ($($value,)+) = self;
                query$(.bind_value($value))+
            }
        }
    };
}

tuple_values!(A, B);
tuple_values!(A, B, C);
tuple_values!(A, B, C, D);
tuple_values!(A, B, C, D, E);
tuple_values!(A, B, C, D, E, F);
tuple_values!(A, B, C, D, E, F, G);
tuple_values!(A, B, C, D, E, F, G, H);
tuple_values!(A, B, C, D, E, F, G, H, I);
tuple_values!(A, B, C, D, E, F, G, H, I, J);
tuple_values!(A, B, C, D, E, F, G, H, I, J, K);
tuple_values!(A, B, C, D, E, F, G, H, I, J, K, L);

/// What addresses a row: identifiers (`[tenant, provider, …]`), optionally followed by
/// one more value (a row id: `([tenant, provider], id)`).
pub(super) trait Key<'q, DB: Database> {
    /// Binds the key's values to `query`, in order.
    fn bind_to<Q: Bind<'q, DB>>(self, query: Q) -> Q;
}

impl<'q, DB: Database, const N: usize> Key<'q, DB> for [&'q str; N]
where
    &'q str: Encode<'q, DB> + Type<DB>,
{
    fn bind_to<Q: Bind<'q, DB>>(self, query: Q) -> Q {
        self.into_iter().fold(query, Q::bind_value)
    }
}

impl<'q, DB: Database, const N: usize, T: 'q + Encode<'q, DB> + Type<DB>> Key<'q, DB> for ([&'q str; N], T)
where
    &'q str: Encode<'q, DB> + Type<DB>,
{
    fn bind_to<Q: Bind<'q, DB>>(self, query: Q) -> Q {
        self.0.bind_to(query).bind_value(self.1)
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

/// Defines a function that runs a `query_as` with a key bound as its parameters on `conn`
/// and reads its rows with `$fetch`; a failure is a [`StoreError`] naming `context`.
macro_rules! fetch_by_key {
    ($(#[$doc:meta])* $name:ident, $fetch:ident, $rows:ty) => {
        $(#[$doc])*
        pub(super) async fn $name<'e, 'c: 'e, 'q: 'e, DB, O, E>(
            conn: E,
            sql: &'static str,
            key: impl Key<'q, DB>,
            context: &'static str,
        ) -> Result<$rows, StoreError>
        where
            DB: 'e + Database,
            E: 'e + Executor<'c, Database = DB>,
            O: 'e + Send + Unpin + for<'r> FromRow<'r, DB::Row>,
            <DB as Database>::Arguments: IntoArguments<DB>,
        {
            sqlx::query_as(sql).bind_key(key).$fetch(conn).await.map_err(db(context))
        }
    };
}

fetch_by_key!(
    /// The row `sql` selects with `key` bound as its parameters, if there is one.
    optional,
    fetch_optional,
    Option<O>
);

fetch_by_key!(
    /// Every row `sql` selects with `key` bound as its parameters.
    all,
    fetch_all,
    Vec<O>
);
