//! Backend-parametrised tests: one `async fn` runs unchanged on SQLite and PostgreSQL.

/// Generates `sqlite::NAME` and `postgres::NAME` for each listed test, each on a fresh
/// database: `module::NAME` for tests in a child module of the invoking one, a bare
/// `NAME` for tests in the invoking module itself.
///
/// Tests in `store` take `&Store`; tests in `url` also take the URL of the same database
/// (to reach it behind the store's back or to open a second store on it) and run on a
/// multi-threaded runtime, so that the concurrent ones among them race for real.
macro_rules! contract {
    (
        store: [$($module:ident::$test:ident),* $(,)?],
        url: [$($url_module:ident::$url_test:ident),* $(,)?] $(,)?
    ) => {
        $crate::support::contract::contract! {
            @generate
            store: [$(super::$module::$test => $test),*],
            url: [$(super::$url_module::$url_test => $url_test),*],
        }
    };
    (
        store: [$($test:ident),* $(,)?],
        url: [$($url_test:ident),* $(,)?] $(,)?
    ) => {
        $crate::support::contract::contract! {
            @generate
            store: [$(super::$test => $test),*],
            url: [$(super::$url_test => $url_test),*],
        }
    };
    (
        @generate
        store: [$($call:path => $test:ident),*],
        url: [$($url_call:path => $url_test:ident),*] $(,)?
    ) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let (store, _dir) = $crate::support::sqlite_store().await;
                    $call(&store).await;
                    store.close().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $url_test() {
                    let (store, _dir) = $crate::support::sqlite_store().await;
                    let url = $crate::support::sqlite_url(&store);
                    $url_call(&store, &url).await;
                    store.close().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = $crate::support::postgres_store().await;
                    $call(&db.store).await;
                    db.drop_db().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $url_test() {
                    let db = $crate::support::postgres_store().await;
                    $url_call(&db.store, &db.url).await;
                    db.drop_db().await;
                }
            )*
        }
    };
}

pub(crate) use contract;
