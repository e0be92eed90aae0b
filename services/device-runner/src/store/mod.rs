//! The runner's store: one `jobs` table holds the queues (pending), what runs, and the run
//! history (finished). PostgreSQL or SQLite, opened through [`service_kit::database`], with
//! embedded migrations per backend. [`rows`] maps the table to jobs, [`writes`] holds every
//! change, [`writer`] is SQLite's group-commit writer, [`queries`] the reads.
//!
//! Each query is written once in PostgreSQL's `$n` placeholder style and run on either backend
//! by [`service_kit::on_db!`]. Every change
//! is a [`Write`]: its own transaction on PostgreSQL, and on SQLite handed to the one writer
//! task, which commits the writes waiting together (group commit). Both backends store
//! instants as UTC milliseconds so one row type reads both.

mod queries;
mod rows;
mod writer;
mod writes;

use chrono::{DateTime, Utc};
use device_runner_api::{DeviceEvent, Job, Progress, Quarantine};
use serde_json::Value;
use service_kit::sql::Conn;
use service_kit::{Database, DatabaseUrl};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Postgres, Sqlite};
use tokio::sync::{mpsc, oneshot};

use crate::process::ProcessIdentity;
use writer::{Reply, Writer};
use writes::{Write, Written};

pub use rows::{Ending, NewJob, RunFilter};

/// What the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] service_kit::DatabaseError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored job {id} is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("database error: the commit failed: {0}")]
    Commit(String),
    #[error("the store is closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Where writes go.
#[derive(Clone, Debug)]
enum Writes {
    Postgres(PgPool),
    Sqlite {
        writer: mpsc::UnboundedSender<(Write, Reply)>,
        pool: SqlitePool,
    },
}

/// The open store.
#[derive(Clone, Debug)]
pub struct Store {
    /// Reads; on SQLite, a pool apart from the writer's connection.
    reads: Database,
    writes: Writes,
}

/// A pooled connection for reads.
pub(super) enum Reader {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Reader {
    pub(super) fn conn(&mut self) -> Conn<'_> {
        match self {
            Reader::Postgres(c) => Conn::Postgres(c),
            Reader::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

impl Store {
    /// Opens the database (creating the file or schema) and applies the migrations.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> Result<Store> {
        let reads = service_kit::database::open(url, max_connections).await?;
        let writes = match &reads {
            Database::Postgres(pool) => {
                sqlx::migrate!("./migrations/postgres").run(pool).await?;
                Writes::Postgres(pool.clone())
            }
            Database::Sqlite(pool) => {
                sqlx::migrate!("./migrations/sqlite").run(pool).await?;
                let Database::Sqlite(pool) = service_kit::database::open(url, 1).await? else {
                    unreachable!("the same URL opens the same backend")
                };
                Writes::Sqlite {
                    writer: Writer::spawn(pool.clone()),
                    pool,
                }
            }
        };
        Ok(Store { reads, writes })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.reads.ping().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.reads.close().await;
        if let Writes::Sqlite { pool, .. } = &self.writes {
            pool.close().await;
        }
    }

    pub(super) async fn reader(&self) -> Result<Reader> {
        Ok(match &self.reads {
            Database::Postgres(pool) => Reader::Postgres(pool.acquire().await?),
            Database::Sqlite(pool) => Reader::Sqlite(pool.acquire().await?),
        })
    }

    async fn write(&self, write: Write) -> Result<Written> {
        match &self.writes {
            // A write of one statement commits by itself: no BEGIN and COMMIT to wait for.
            Writes::Postgres(pool) if write.is_one_statement() => {
                let mut conn = pool.acquire().await?;
                write.apply(Conn::Postgres(&mut conn)).await
            }
            Writes::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let written = write.apply(Conn::Postgres(&mut tx)).await?;
                tx.commit().await?;
                Ok(written)
            }
            Writes::Sqlite { writer, .. } => {
                let (reply, answer) = oneshot::channel();
                writer
                    .send((write, reply))
                    .map_err(|_| StoreError::Closed)?;
                answer.await.map_err(|_| StoreError::Closed)?
            }
        }
    }

    /// Queues a job. With an idempotency key already stored, nothing is written and the job
    /// that has it is returned; the flag says whether this call created the job.
    pub async fn insert(&self, job: &NewJob) -> Result<(Job, bool)> {
        let written = self.write(Write::Insert(job.clone())).await?;
        let queued = written.queued.ok_or_else(|| StoreError::Corrupt {
            id: job.id.clone(),
            reason: "insert returned no row".into(),
        })?;
        Ok((queued, written.changed))
    }

    /// pending → running. False when the job is no longer pending (cancelled meanwhile).
    pub async fn start(&self, id: &str, at: DateTime<Utc>, log_path: &str) -> Result<bool> {
        let write = Write::Start {
            id: id.into(),
            at,
            log_path: log_path.into(),
        };
        Ok(self.write(write).await?.changed)
    }

    pub async fn record_process(&self, id: &str, process: &ProcessIdentity) -> Result<()> {
        let write = Write::RecordProcess {
            id: id.into(),
            process: process.clone(),
        };
        self.write(write).await.map(drop)
    }

    pub async fn set_checkpoint(&self, id: &str, checkpoint: &Value) -> Result<()> {
        let write = Write::SetCheckpoint {
            id: id.into(),
            checkpoint: checkpoint.clone(),
        };
        self.write(write).await.map(drop)
    }

    pub async fn add_result(&self, id: &str, result: &Value) -> Result<()> {
        let write = Write::AddResult {
            id: id.into(),
            result: result.clone(),
        };
        self.write(write).await.map(drop)
    }

    pub async fn set_progress(&self, id: &str, progress: &Progress) -> Result<()> {
        let write = Write::SetProgress {
            id: id.into(),
            progress: progress.clone(),
        };
        self.write(write).await.map(drop)
    }

    /// Records how a running (or, for `interrupted`, pending) job ended. False when it had
    /// already ended.
    pub async fn finish(&self, id: &str, ending: &Ending) -> Result<bool> {
        let write = Write::Finish {
            id: id.into(),
            ending: ending.clone(),
            requeue_as: None,
        };
        Ok(self.write(write).await?.changed)
    }

    /// Records how a job ended and, in the same transaction, queues it again as `new_id` with
    /// its parameters, priority and last checkpoint. The new job, or `None` when the job had
    /// already ended (nothing is written then).
    pub async fn finish_and_requeue(
        &self,
        id: &str,
        ending: &Ending,
        new_id: &str,
    ) -> Result<Option<Job>> {
        let write = Write::Finish {
            id: id.into(),
            ending: ending.clone(),
            requeue_as: Some(new_id.into()),
        };
        Ok(self.write(write).await?.queued)
    }

    /// Ends a job the one way both the supervisor and start-up recovery do: with `requeue`,
    /// queued again under a fresh id from its last checkpoint in the same transaction (the new
    /// job is returned); without, only ended. `None` also when the job had already ended.
    pub async fn end(&self, id: &str, ending: &Ending, requeue: bool) -> Result<Option<Job>> {
        if requeue {
            let new_id = uuid::Uuid::new_v4().to_string();
            self.finish_and_requeue(id, ending, &new_id).await
        } else {
            self.finish(id, ending).await.map(|_| None)
        }
    }

    /// pending → cancelled. False when the job was not pending.
    pub async fn cancel(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let write = Write::Cancel { id: id.into(), at };
        Ok(self.write(write).await?.changed)
    }

    /// Writes on a device's pending jobs why they wait (`None`: they no longer do).
    pub async fn set_waiting(&self, device: &str, reason: Option<&str>) -> Result<()> {
        let write = Write::Waiting {
            device: device.into(),
            reason: reason.map(str::to_string),
        };
        self.write(write).await.map(drop)
    }

    /// Puts a phone in quarantine (kept from the first time while it lasts), recorded in its
    /// history.
    pub async fn quarantine(&self, serial: &str, quarantine: &Quarantine) -> Result<()> {
        let write = Write::Quarantine {
            serial: serial.into(),
            at: quarantine.since,
            reason: quarantine.reason.clone(),
            by: quarantine.by.clone(),
        };
        self.write(write).await.map(drop)
    }

    /// Ends a phone's quarantine, recorded in its history with `message`. False when it was
    /// not quarantined.
    pub async fn release(&self, serial: &str, at: DateTime<Utc>, message: &str) -> Result<bool> {
        let write = Write::Release {
            serial: serial.into(),
            at,
            message: message.into(),
        };
        Ok(self.write(write).await?.changed)
    }

    /// Records a step in a phone's history.
    pub async fn record_event(&self, event: DeviceEvent) -> Result<()> {
        self.write(Write::Event(event)).await.map(drop)
    }
}
