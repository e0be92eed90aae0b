//! The SQL store: one implementation of the store's traits for PostgreSQL and SQLite, each
//! query written once ([`service_kit::on_db!`]) with the few places where the two differ taken
//! from [`dialect`].
//!
//! On PostgreSQL, claims lock the due rows with `FOR UPDATE SKIP LOCKED`, so any number of
//! replicas share one database and each occurrence is claimed once. On SQLite (the embedded
//! default), writes run in `BEGIN IMMEDIATE` transactions, which take the file's write lock up
//! front, in the order this process's writers asked for it; instants are stored as integer
//! milliseconds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Weak};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use service_kit::Database;
use service_kit::sql::{Column, Conn, Row};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, Postgres};
use sqlx::sqlite::{Sqlite, SqlitePool};
use sqlx::types::Json;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::model::{RunRecord, RunStatus, Schedule, StoreName};
use crate::store::StoreError;

mod alerts;
mod changes;
mod claims;
mod dialect;
mod ledger;
mod plans;
mod retention;
mod schedules;
mod watches;

pub(crate) use dialect::{At, Batch, Dialect, Kind, List};
pub use plans::Plans;

const SCHEDULE_COLUMNS: &str = "id, name, owner, trigger, target, policy, tags, paused, \
     paused_reason, next_run_at, created_at";
const RUN_COLUMNS: &str = "schedule_id, scheduled_time, jobstore, owner, target, status, detail, \
     attempts, claimed_at, lease_until, finished_at, policy";

/// One jobstore's table, and the ledger and watches beside it, in a PostgreSQL or SQLite
/// database.
#[derive(Clone)]
pub struct SqlStore {
    db: Db,
    jobstore: StoreName,
}

#[derive(Clone)]
enum Db {
    Postgres(PgPool),
    Sqlite {
        pool: SqlitePool,
        /// This process's writers of the file take their turns here.
        writer: Arc<Mutex<()>>,
    },
}

/// The write turn of a database file, shared by every store of it in this process. SQLite lets
/// one writer in at a time, and its busy handler is not fair: a writer waiting on another's
/// lock can miss its turn for as long as others keep writing (the engine's claims and records
/// under load), until its busy timeout fails it. Queued here, writers go in the order they came.
fn writer_of(pool: &SqlitePool) -> Arc<Mutex<()>> {
    type Writers = std::sync::Mutex<HashMap<PathBuf, Weak<Mutex<()>>>>;
    static WRITERS: LazyLock<Writers> = LazyLock::new(Writers::default);
    let file = pool.connect_options().get_filename().to_path_buf();
    let mut writers = WRITERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    writers.retain(|_, writer| writer.strong_count() > 0);
    if let Some(writer) = writers.get(&file).and_then(Weak::upgrade) {
        return writer;
    }
    let writer = Arc::new(Mutex::new(()));
    writers.insert(file, Arc::downgrade(&writer));
    writer
}

/// A transaction that writes; on SQLite, with the write turn it holds until it ends.
enum Tx {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(
        sqlx::Transaction<'static, Sqlite>,
        #[allow(dead_code, reason = "held until the transaction ends")] OwnedMutexGuard<()>,
    ),
}

impl Tx {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Postgres(tx) => Conn::Postgres(tx),
            Tx::Sqlite(tx, _) => Conn::Sqlite(tx),
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx, _turn) => tx.commit().await?,
        }
        Ok(())
    }
}

/// A connection for statements of their own; on SQLite, one that writes holds the write turn.
enum Held {
    Postgres(PoolConnection<Postgres>),
    Sqlite(
        PoolConnection<Sqlite>,
        #[allow(dead_code, reason = "held while the statement runs")] Option<OwnedMutexGuard<()>>,
    ),
}

impl Held {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Held::Postgres(conn) => Conn::Postgres(conn),
            Held::Sqlite(conn, _) => Conn::Sqlite(conn),
        }
    }
}

impl SqlStore {
    /// The store of one jobstore on an already migrated database (see [`crate::connect`]).
    pub fn new(database: &Database, jobstore: StoreName) -> Self {
        let db = match database {
            Database::Postgres(pool) => Db::Postgres(pool.clone()),
            Database::Sqlite(pool) => Db::Sqlite {
                writer: writer_of(pool),
                pool: pool.clone(),
            },
        };
        SqlStore { db, jobstore }
    }

    fn dialect(&self) -> Dialect {
        match self.db {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    fn table(&self) -> &'static str {
        self.jobstore.table()
    }

    /// Begins a transaction that writes: on SQLite, once this process's turn to write has
    /// come, with `BEGIN IMMEDIATE`, which takes the file's write lock at once.
    async fn write(&self) -> Result<Tx, StoreError> {
        Ok(match &self.db {
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Db::Sqlite { pool, writer } => {
                let turn = writer.clone().lock_owned().await;
                Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?, turn)
            }
        })
    }

    /// A connection for one statement that writes: on SQLite, in this process's turn.
    async fn writer(&self) -> Result<Held, StoreError> {
        Ok(match &self.db {
            Db::Postgres(pool) => Held::Postgres(pool.acquire().await?),
            Db::Sqlite { pool, writer } => {
                let turn = writer.clone().lock_owned().await;
                Held::Sqlite(pool.acquire().await?, Some(turn))
            }
        })
    }

    /// A connection for statements that only read.
    async fn reader(&self) -> Result<Held, StoreError> {
        Ok(match &self.db {
            Db::Postgres(pool) => Held::Postgres(pool.acquire().await?),
            Db::Sqlite { pool, .. } => Held::Sqlite(pool.acquire().await?, None),
        })
    }
}

/// A column of a row; a value the column's type cannot hold is [`StoreError::Corrupt`],
/// naming the column.
fn get<T: Column>(row: &Row, column: &str) -> Result<T, StoreError> {
    row.try_get(column).map_err(|error| match error {
        sqlx::Error::ColumnDecode { source, .. } => StoreError::corrupt(column, source),
        other => other.into(),
    })
}

/// A JSON column as `T`; SQL NULL reads as JSON `null` (so `T = Option<_>` reads a nullable
/// column).
fn json<T: DeserializeOwned + 'static>(row: &Row, column: &str) -> Result<T, StoreError> {
    match get::<Option<Json<T>>>(row, column)? {
        Some(Json(value)) => Ok(value),
        None => serde_json::from_value(serde_json::Value::Null)
            .map_err(|e| StoreError::corrupt(column, e)),
    }
}

fn instant(row: &Row, column: &str) -> Result<DateTime<Utc>, StoreError> {
    Ok(get::<At>(row, column)?.0)
}

fn optional_instant(row: &Row, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(get::<Option<At>>(row, column)?.map(|at| at.0))
}

/// A value as JSON, for a JSON column or a field of a batch.
fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::corrupt("serialize", e))
}

fn schedule_from_row(row: &Row) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: get(row, "id")?,
        name: get(row, "name")?,
        owner: get(row, "owner")?,
        trigger: json(row, "trigger")?,
        target: json(row, "target")?,
        policy: json(row, "policy")?,
        tags: json(row, "tags")?,
        paused: get(row, "paused")?,
        paused_reason: get(row, "paused_reason")?,
        next_run_at: optional_instant(row, "next_run_at")?,
        created_at: instant(row, "created_at")?,
    })
}

/// The `jobstore` column of a ledger row or an audit record.
fn store_name(row: &Row) -> Result<StoreName, StoreError> {
    let name: String = get(row, "jobstore")?;
    serde_json::from_value(serde_json::Value::String(name))
        .map_err(|e| StoreError::corrupt("jobstore", e))
}

fn run_from_row(row: &Row) -> Result<RunRecord, StoreError> {
    let status: String = get(row, "status")?;
    let attempts: i32 = get(row, "attempts")?;
    Ok(RunRecord {
        schedule_id: get(row, "schedule_id")?,
        scheduled_time: instant(row, "scheduled_time")?,
        jobstore: store_name(row)?,
        owner: get(row, "owner")?,
        target: json(row, "target")?,
        policy: json::<Option<_>>(row, "policy")?.unwrap_or_default(),
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("status", format!("unknown status '{status}'")))?,
        detail: get(row, "detail")?,
        attempts: attempts.max(0) as u32,
        claimed_at: instant(row, "claimed_at")?,
        lease_until: optional_instant(row, "lease_until")?,
        finished_at: optional_instant(row, "finished_at")?,
    })
}

/// A row of one column (a one-element tuple, which `on_db!`'s row type cannot spell).
type One<T> = (T,);

/// Appends to a query the conditions of the filters that were given (each with its fixed
/// parameter number): a condition that holds when its filter is absent (`$1 IS NULL OR …`)
/// would keep the planner from the index of the filter that is there.
fn push_given<const N: usize>(sql: &mut String, conditions: [(bool, &str); N]) {
    for (given, condition) in conditions {
        if given {
            sql.push_str(condition);
        }
    }
}

/// The keys of ledger rows as a statement returns them.
fn keys(rows: Vec<(String, At)>) -> std::collections::HashSet<(String, DateTime<Utc>)> {
    rows.into_iter().map(|(id, at)| (id, at.0)).collect()
}
