//! Integration tests: the real `device-runner` binary on a temporary directory, driven over
//! JSON-RPC, with small shell programs standing in for the phone bots.

/// Runs each `body(Backend)` as two tests, `sqlite::<name>` and `postgres::<name>`.
macro_rules! on_both_backends {
    ($($name:ident => $body:ident;)+) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$body(crate::helpers::Backend::Sqlite).await
            })+
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$body(crate::helpers::Backend::Postgres).await
            })+
        }
    };
}

mod devices;
mod helpers;
mod hostile;
mod jobs;
mod openrpc;
mod pools;
mod restart;
mod serving;
mod stopping;
mod store;
