//! The runner's store: one `jobs` table holds the queues (pending), what runs, and the run
//! history (finished). PostgreSQL or SQLite, opened as the scheduler opens its database, with
//! embedded migrations per backend.
//!
//! Each query is written once in PostgreSQL's `$n` placeholder style and run on either backend
//! by [`service_kit::on_db!`]. Every change
//! is a [`Write`]: its own transaction on PostgreSQL, and on SQLite handed to the one writer
//! task, which commits the writes waiting together (group commit). Both backends store
//! instants as UTC milliseconds so one row type reads both.

use chrono::{DateTime, TimeZone, Utc};
use device_runner_api::{Job, JobStatus, Progress};
use serde_json::Value;
use service_kit::on_db;
use service_kit::sql::Conn;
use service_kit::{Database, DatabaseUrl};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::types::Json;
use sqlx::{Postgres, Sqlite};
use tokio::sync::{mpsc, oneshot};

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

/// Who a running job's process is: enough to tell it from a later process with the same pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: i32,
    pub pgid: i32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks from boot to the process's start.
    pub start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id` when the process started.
    pub boot_id: String,
}

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub device: String,
    pub job_type: String,
    pub params: Value,
    pub priority: u8,
    pub max_duration_secs: u64,
    pub source: Option<String>,
    pub checkpoint: Option<Value>,
    pub requeued_from: Option<String>,
    pub enqueued_at: DateTime<Utc>,
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Ending {
    pub status: JobStatus,
    pub ended_at: DateTime<Utc>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub preempted_by: Option<String>,
}

/// Filters of `list_runs`.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub device: Option<String>,
    pub status: Option<JobStatus>,
    pub job_type: Option<String>,
    pub before: Option<String>,
    pub limit: i64,
}

const COLUMNS: &str = "seq, id, device, job_type, params, priority, max_duration_secs, source, status, \
     enqueued_at, started_at, ended_at, pid, pgid, proc_start_ticks, boot_id, exit_code, signal, \
     error, log_path, preempted_by, requeued_from, checkpoint, results, progress_percent, \
     progress_message";

#[derive(Debug, sqlx::FromRow)]
struct JobRow {
    #[allow(dead_code)]
    seq: i64,
    id: String,
    device: String,
    job_type: String,
    params: Json<Value>,
    priority: i64,
    max_duration_secs: i64,
    source: Option<String>,
    status: String,
    enqueued_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    pid: Option<i64>,
    pgid: Option<i64>,
    proc_start_ticks: Option<i64>,
    boot_id: Option<String>,
    exit_code: Option<i64>,
    signal: Option<i64>,
    error: Option<String>,
    log_path: Option<String>,
    preempted_by: Option<String>,
    requeued_from: Option<String>,
    checkpoint: Option<Json<Value>>,
    results: Json<Value>,
    progress_percent: Option<i64>,
    progress_message: Option<String>,
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn instant(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl JobRow {
    fn identity(&self) -> Option<ProcessIdentity> {
        Some(ProcessIdentity {
            pid: i32::try_from(self.pid?).ok()?,
            pgid: i32::try_from(self.pgid?).ok()?,
            start_ticks: u64::try_from(self.proc_start_ticks?).ok()?,
            boot_id: self.boot_id.clone()?,
        })
    }

    fn into_job(self) -> Result<Job> {
        let status = self
            .status
            .parse::<JobStatus>()
            .map_err(|reason| StoreError::Corrupt {
                id: self.id.clone(),
                reason,
            })?;
        let started_at = self.started_at.map(instant);
        let ended_at = self.ended_at.map(instant);
        let duration_secs = match (self.started_at, self.ended_at) {
            (Some(start), Some(end)) => Some((end - start).max(0) as f64 / 1000.0),
            _ => None,
        };
        let results = match self.results.0 {
            Value::Array(items) => items,
            other => vec![other],
        };
        Ok(Job {
            id: self.id,
            device: self.device,
            job_type: self.job_type,
            params: self.params.0,
            priority: self.priority.clamp(1, 5) as u8,
            max_duration_secs: self.max_duration_secs.max(0) as u64,
            source: self.source,
            status,
            enqueued_at: instant(self.enqueued_at),
            started_at,
            ended_at,
            duration_secs,
            pid: self.pid.and_then(|p| i32::try_from(p).ok()),
            exit_code: self.exit_code.and_then(|c| i32::try_from(c).ok()),
            signal: self.signal.and_then(|s| i32::try_from(s).ok()),
            error: self.error,
            log_path: self.log_path,
            preempted_by: self.preempted_by,
            requeued_from: self.requeued_from,
            checkpoint: self.checkpoint.map(|c| c.0),
            results,
            progress: self.progress_percent.map(|percent| Progress {
                percent: percent.clamp(0, 100) as u8,
                message: self.progress_message,
            }),
        })
    }
}

fn into_jobs(rows: Vec<JobRow>) -> Result<Vec<Job>> {
    rows.into_iter().map(JobRow::into_job).collect()
}

/// A change to the store. Each is one atomic step; on SQLite, concurrent ones are committed
/// together (see [`Writer`]).
#[derive(Debug)]
enum Write {
    Insert(NewJob),
    Start {
        id: String,
        at: DateTime<Utc>,
        log_path: String,
    },
    RecordProcess {
        id: String,
        process: ProcessIdentity,
    },
    SetCheckpoint {
        id: String,
        checkpoint: Value,
    },
    AddResult {
        id: String,
        result: Value,
    },
    SetProgress {
        id: String,
        progress: Progress,
    },
    /// Ends a job; with `requeue_as`, also queues it again under that id with its last
    /// checkpoint, in the same transaction.
    Finish {
        id: String,
        ending: Ending,
        requeue_as: Option<String>,
    },
    Cancel {
        id: String,
        at: DateTime<Utc>,
    },
}

/// What a write did: whether it changed a row, and the job it queued, if any.
#[derive(Debug, Default)]
struct Written {
    changed: bool,
    queued: Option<Job>,
}

impl Write {
    fn changed(rows: u64) -> Written {
        Written {
            changed: rows > 0,
            queued: None,
        }
    }

    async fn apply(&self, conn: Conn<'_>) -> Result<Written> {
        Ok(match self {
            Write::Insert(job) => {
                let sql = format!(
                    "INSERT INTO jobs (id, device, job_type, params, priority, max_duration_secs, \
                     source, status, enqueued_at, checkpoint, requeued_from) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10) RETURNING {COLUMNS}"
                );
                let row = on_db!(conn, fetch_optional JobRow, &sql,
                    &job.id, &job.device, &job.job_type, Json(&job.params), i64::from(job.priority),
                    job.max_duration_secs as i64, &job.source, millis(job.enqueued_at),
                    job.checkpoint.as_ref().map(Json), &job.requeued_from);
                let row = row.ok_or_else(|| StoreError::Corrupt {
                    id: job.id.clone(),
                    reason: "insert returned no row".into(),
                })?;
                Written {
                    changed: true,
                    queued: Some(row.into_job()?),
                }
            }
            Write::Start { id, at, log_path } => {
                let sql = "UPDATE jobs SET status = 'running', started_at = $2, log_path = $3 \
                           WHERE id = $1 AND status = 'pending'";
                Self::changed(on_db!(conn, execute, sql, id, millis(*at), log_path))
            }
            Write::RecordProcess { id, process } => {
                let sql = "UPDATE jobs SET pid = $2, pgid = $3, proc_start_ticks = $4, \
                           boot_id = $5 WHERE id = $1";
                Self::changed(on_db!(
                    conn,
                    execute,
                    sql,
                    id,
                    i64::from(process.pid),
                    i64::from(process.pgid),
                    process.start_ticks as i64,
                    &process.boot_id
                ))
            }
            Write::SetCheckpoint { id, checkpoint } => {
                let sql = "UPDATE jobs SET checkpoint = $2 WHERE id = $1";
                Self::changed(on_db!(conn, execute, sql, id, Json(checkpoint)))
            }
            Write::AddResult { id, result } => {
                let rows = match conn {
                    Conn::Postgres(c) => sqlx::query(
                        "UPDATE jobs SET results = results || jsonb_build_array($2::jsonb) \
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(Json(result))
                    .execute(c)
                    .await?
                    .rows_affected(),
                    Conn::Sqlite(c) => sqlx::query(
                        "UPDATE jobs SET results = json_insert(results, '$[#]', json(?2)) \
                         WHERE id = ?1",
                    )
                    .bind(id)
                    .bind(Json(result))
                    .execute(c)
                    .await?
                    .rows_affected(),
                };
                Self::changed(rows)
            }
            Write::SetProgress { id, progress } => {
                let sql =
                    "UPDATE jobs SET progress_percent = $2, progress_message = $3 WHERE id = $1";
                Self::changed(on_db!(
                    conn,
                    execute,
                    sql,
                    id,
                    i64::from(progress.percent),
                    &progress.message
                ))
            }
            Write::Finish {
                id,
                ending,
                requeue_as,
            } => {
                let sql = "UPDATE jobs SET status = $2, ended_at = $3, exit_code = $4, \
                           signal = $5, error = $6, preempted_by = $7 \
                           WHERE id = $1 AND status IN ('pending', 'running')";
                let mut conn = conn;
                let rows = on_db!(
                    conn.reborrow(),
                    execute,
                    sql,
                    id,
                    ending.status.as_str(),
                    millis(ending.ended_at),
                    ending.exit_code.map(i64::from),
                    ending.signal.map(i64::from),
                    &ending.error,
                    &ending.preempted_by
                );
                let queued = match requeue_as {
                    Some(new_id) if rows > 0 => {
                        let sql = format!(
                            "INSERT INTO jobs (id, device, job_type, params, priority, \
                             max_duration_secs, source, status, enqueued_at, checkpoint, \
                             requeued_from) \
                             SELECT $2, device, job_type, params, priority, max_duration_secs, \
                             source, 'pending', $3, checkpoint, id FROM jobs WHERE id = $1 \
                             RETURNING {COLUMNS}"
                        );
                        on_db!(conn, fetch_optional JobRow, &sql, id, new_id, millis(ending.ended_at))
                            .map(JobRow::into_job)
                            .transpose()?
                    }
                    _ => None,
                };
                Written {
                    changed: rows > 0,
                    queued,
                }
            }
            Write::Cancel { id, at } => {
                let sql = "UPDATE jobs SET status = 'cancelled', ended_at = $2, \
                           error = 'cancelled by kill_job' WHERE id = $1 AND status = 'pending'";
                Self::changed(on_db!(conn, execute, sql, id, millis(*at)))
            }
        })
    }
}

type Reply = oneshot::Sender<Result<Written>>;

/// SQLite's single writer: one task owns the writing connection and commits every write that
/// is waiting in one transaction, so concurrent writers share one fsync (group commit) and
/// never contend for SQLite's write lock. A write that fails alone (a constraint) fails alone;
/// a commit that fails fails every write of its batch.
struct Writer;

impl Writer {
    const MAX_BATCH: usize = 512;

    fn spawn(pool: SqlitePool) -> mpsc::UnboundedSender<(Write, Reply)> {
        let (sender, mut receiver) = mpsc::unbounded_channel::<(Write, Reply)>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while receiver.recv_many(&mut batch, Self::MAX_BATCH).await > 0 {
                match Self::commit(&pool, &batch).await {
                    Ok(outcomes) => {
                        for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                            let _ = reply.send(outcome);
                        }
                    }
                    Err(error) => {
                        let message = error.to_string();
                        for (_, reply) in batch.drain(..) {
                            let _ = reply.send(Err(StoreError::Commit(message.clone())));
                        }
                    }
                }
            }
        });
        sender
    }

    async fn commit(pool: &SqlitePool, batch: &[(Write, Reply)]) -> Result<Vec<Result<Written>>> {
        let mut tx = pool.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (write, _) in batch {
            outcomes.push(write.apply(Conn::Sqlite(&mut tx)).await);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

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
enum Reader {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Reader {
    fn conn(&mut self) -> Conn<'_> {
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

    async fn reader(&self) -> Result<Reader> {
        Ok(match &self.reads {
            Database::Postgres(pool) => Reader::Postgres(pool.acquire().await?),
            Database::Sqlite(pool) => Reader::Sqlite(pool.acquire().await?),
        })
    }

    async fn write(&self, write: Write) -> Result<Written> {
        match &self.writes {
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

    pub async fn insert(&self, job: &NewJob) -> Result<Job> {
        let written = self.write(Write::Insert(job.clone())).await?;
        written.queued.ok_or_else(|| StoreError::Corrupt {
            id: job.id.clone(),
            reason: "insert returned no row".into(),
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
        let mut reader = self.reader().await?;
        on_db!(reader.conn(), fetch_optional JobRow, &sql, id)
            .map(JobRow::into_job)
            .transpose()
    }

    /// The pending job of `device` that starts next: highest priority, then first in.
    pub async fn next_pending(&self, device: &str) -> Result<Option<Job>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE status = 'pending' AND device = $1 \
             ORDER BY priority, seq LIMIT 1"
        );
        let mut reader = self.reader().await?;
        on_db!(reader.conn(), fetch_optional JobRow, &sql, device)
            .map(JobRow::into_job)
            .transpose()
    }

    /// The pending jobs, of one device or all, in start order.
    pub async fn queue(&self, device: Option<&str>) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE status = 'pending' AND device = coalesce($1, device) \
             ORDER BY device, priority, seq"
        );
        let mut reader = self.reader().await?;
        into_jobs(on_db!(reader.conn(), fetch_all JobRow, &sql, device))
    }

    /// How many jobs wait, per device.
    pub async fn pending_counts(&self) -> Result<Vec<(String, i64)>> {
        let sql = "SELECT device, count(*) FROM jobs WHERE status = 'pending' GROUP BY device";
        let mut reader = self.reader().await?;
        Ok(on_db!(reader.conn(), fetch_all(String, i64), sql))
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

    /// pending → cancelled. False when the job was not pending.
    pub async fn cancel(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let write = Write::Cancel { id: id.into(), at };
        Ok(self.write(write).await?.changed)
    }

    /// The jobs recorded as running, with their process identity when it was recorded.
    pub async fn running(&self) -> Result<Vec<(Job, Option<ProcessIdentity>)>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE status = 'running' ORDER BY seq");
        let mut reader = self.reader().await?;
        on_db!(reader.conn(), fetch_all JobRow, &sql)
            .into_iter()
            .map(|row| {
                let identity = row.identity();
                Ok((row.into_job()?, identity))
            })
            .collect()
    }

    /// Finished runs, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE ended_at IS NOT NULL \
             AND device = coalesce($1, device) AND status = coalesce($2, status) \
             AND job_type = coalesce($3, job_type) \
             AND (coalesce($4, '') = '' OR (ended_at, seq) < (SELECT ended_at, seq FROM jobs WHERE id = $4)) \
             ORDER BY ended_at DESC, seq DESC LIMIT $5"
        );
        let mut reader = self.reader().await?;
        into_jobs(
            on_db!(reader.conn(), fetch_all JobRow, &sql, &filter.device,
            filter.status.map(JobStatus::as_str), &filter.job_type, &filter.before, filter.limit),
        )
    }

    /// Runs that started and had not ended before `since`, oldest first.
    pub async fn timeline(&self, since: DateTime<Utc>) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE started_at IS NOT NULL \
             AND (ended_at IS NULL OR ended_at >= $1) ORDER BY started_at, seq"
        );
        let mut reader = self.reader().await?;
        into_jobs(on_db!(reader.conn(), fetch_all JobRow, &sql, millis(since)))
    }
}
