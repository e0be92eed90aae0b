//! Helpers shared by the workspace's tests: [`daemon`] starts a real service binary and waits
//! for it; [`hostile`] derives a hostile caller's requests from an OpenRPC document;
//! [`backend_matrix!`] runs each case on every backend; [`Stack`] starts the scheduler with a
//! device runner (and fake phones) for the tests that need both.
//!
//! PostgreSQL tests each get a schema of their own in the database named by
//! `SCHEDULER_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/scheduler_test`,
//! created when missing) and drop it when done, so runs can overlap. When the server cannot be
//! reached the tests fail under `CI=true`; elsewhere they say so and return early.

pub mod daemon;
pub mod db_proxy;
pub mod fleet;
pub mod hostile;
mod matrix;
pub mod phones;
mod stack;

pub use daemon::{Daemon, Launch, built_binary, free_port, wait_until};
pub use db_proxy::DbProxy;
pub use matrix::Backend;
pub use stack::{Stack, StackBuilder};

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/scheduler_test";

/// Whether we run under CI, where a missing service is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The base URL of the test database, without a schema parameter.
pub fn base_url() -> String {
    std::env::var("SCHEDULER_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A private schema in the test database, dropped when this value is dropped.
pub struct PgSchema {
    base: String,
    name: String,
}

impl PgSchema {
    /// Creates a fresh schema. Returns `None` (after saying why) when PostgreSQL is unreachable
    /// outside CI; panics under CI.
    pub async fn create(prefix: &str) -> Option<PgSchema> {
        let base = base_url();
        if let Err(error) = ensure_database(&base).await {
            let message = format!("PostgreSQL at {base} is not reachable: {error}");
            assert!(
                !under_ci(),
                "{message} (CI=true: PostgreSQL tests must run)"
            );
            eprintln!(
                "{message}; PostgreSQL part of this test not run (set CI=true to fail instead)"
            );
            return None;
        }
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        Some(PgSchema { base, name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database URL with `?schema=` pointing at this schema, as AutoGPT writes it.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{separator}schema={}", self.base, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let base = self.base.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime; do the cleanup on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                        let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                        let _ = sqlx::query(&sql).execute(&mut conn).await;
                    }
                });
            }
        });
        let _ = cleanup.join();
    }
}

/// Creates the test database when it does not exist yet.
async fn ensure_database(base: &str) -> Result<(), sqlx::Error> {
    let options = PgConnectOptions::from_str(base)?;
    if options.connect().await.is_ok() {
        return Ok(());
    }
    let database = options
        .get_database()
        .unwrap_or("scheduler_test")
        .to_string();
    let mut admin = options.clone().database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&database)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let create = format!("CREATE DATABASE \"{}\"", database.replace('"', ""));
        if let Err(error) = sqlx::query(&create).execute(&mut admin).await {
            // Another test process may have created it meanwhile.
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&database)
                    .fetch_one(&mut admin)
                    .await?;
            if !exists {
                return Err(error);
            }
        }
    }
    options.connect().await.map(|_| ())
}
