//! The runner's store: one `jobs` table holds the queues (pending), what runs, and the run
//! history (finished). PostgreSQL or SQLite, opened as the scheduler opens its database, with
//! embedded migrations per backend.
//!
//! Each query is written once in PostgreSQL's `$n` placeholder style; [`on_db!`] runs it on
//! whichever pool is open, rewriting the placeholders to SQLite's `?n`. Both backends store
//! instants as UTC milliseconds so one row type reads both.

use chrono::{DateTime, TimeZone, Utc};
use device_runner_api::{Job, JobStatus, Progress};
use jobstore::{Database, DatabaseUrl};
use serde_json::Value;
use sqlx::types::Json;

/// What the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Connect(#[from] jobstore::StoreError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored job {id} is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
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

/// Runs one query on the open pool. Forms: `fetch_all`, `fetch_optional`, `execute`
/// (rows affected), each with the row type where it returns rows.
macro_rules! on_db {
    ($db:expr, fetch_all $row:ty, $sql:expr $(, $bind:expr)* $(,)?) => {
        match $db {
            Database::Postgres(pool) => sqlx::query_as::<_, $row>($sql)$(.bind($bind))*.fetch_all(pool).await?,
            Database::Sqlite(pool) => sqlx::query_as::<_, $row>(&sqlite_sql($sql))$(.bind($bind))*.fetch_all(pool).await?,
        }
    };
    ($db:expr, fetch_optional $row:ty, $sql:expr $(, $bind:expr)* $(,)?) => {
        match $db {
            Database::Postgres(pool) => sqlx::query_as::<_, $row>($sql)$(.bind($bind))*.fetch_optional(pool).await?,
            Database::Sqlite(pool) => sqlx::query_as::<_, $row>(&sqlite_sql($sql))$(.bind($bind))*.fetch_optional(pool).await?,
        }
    };
    ($db:expr, execute, $sql:expr $(, $bind:expr)* $(,)?) => {
        match $db {
            Database::Postgres(pool) => sqlx::query($sql)$(.bind($bind))*.execute(pool).await?.rows_affected(),
            Database::Sqlite(pool) => sqlx::query(&sqlite_sql($sql))$(.bind($bind))*.execute(pool).await?.rows_affected(),
        }
    };
}

/// `$1` → `?1`: SQLite's numbered placeholders. Only `$` followed by a digit is rewritten.
fn sqlite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
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

/// The open store.
#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens the database (creating the file or schema) and applies the migrations.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> Result<Store> {
        let db = jobstore::open(url, max_connections).await?;
        match &db {
            Database::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
            Database::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
        }
        Ok(Store { db })
    }

    pub async fn close(&self) {
        self.db.close().await;
    }

    pub async fn insert(&self, job: &NewJob) -> Result<Job> {
        let sql = format!(
            "INSERT INTO jobs (id, device, job_type, params, priority, max_duration_secs, source, \
             status, enqueued_at, checkpoint, requeued_from) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10) RETURNING {COLUMNS}"
        );
        let row = on_db!(&self.db, fetch_optional JobRow, &sql,
            &job.id, &job.device, &job.job_type, Json(&job.params), i64::from(job.priority),
            job.max_duration_secs as i64, &job.source, millis(job.enqueued_at),
            job.checkpoint.as_ref().map(Json), &job.requeued_from);
        row.ok_or_else(|| StoreError::Corrupt {
            id: job.id.clone(),
            reason: "insert returned no row".into(),
        })?
        .into_job()
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
        on_db!(&self.db, fetch_optional JobRow, &sql, id)
            .map(JobRow::into_job)
            .transpose()
    }

    /// The pending job of `device` that starts next: highest priority, then first in.
    pub async fn next_pending(&self, device: &str) -> Result<Option<Job>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE status = 'pending' AND device = $1 \
             ORDER BY priority, seq LIMIT 1"
        );
        on_db!(&self.db, fetch_optional JobRow, &sql, device)
            .map(JobRow::into_job)
            .transpose()
    }

    /// The pending jobs, of one device or all, in start order.
    pub async fn queue(&self, device: Option<&str>) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE status = 'pending' AND device = coalesce($1, device) \
             ORDER BY device, priority, seq"
        );
        into_jobs(on_db!(&self.db, fetch_all JobRow, &sql, device))
    }

    /// How many jobs wait, per device.
    pub async fn pending_counts(&self) -> Result<Vec<(String, i64)>> {
        let sql = "SELECT device, count(*) FROM jobs WHERE status = 'pending' GROUP BY device";
        Ok(on_db!(&self.db, fetch_all(String, i64), sql))
    }

    /// pending → running. False when the job is no longer pending (cancelled meanwhile).
    pub async fn start(&self, id: &str, at: DateTime<Utc>, log_path: &str) -> Result<bool> {
        let sql = "UPDATE jobs SET status = 'running', started_at = $2, log_path = $3 \
                   WHERE id = $1 AND status = 'pending'";
        Ok(on_db!(&self.db, execute, sql, id, millis(at), log_path) == 1)
    }

    pub async fn record_process(&self, id: &str, process: &ProcessIdentity) -> Result<()> {
        let sql = "UPDATE jobs SET pid = $2, pgid = $3, proc_start_ticks = $4, boot_id = $5 \
                   WHERE id = $1";
        on_db!(
            &self.db,
            execute,
            sql,
            id,
            i64::from(process.pid),
            i64::from(process.pgid),
            process.start_ticks as i64,
            &process.boot_id
        );
        Ok(())
    }

    pub async fn set_checkpoint(&self, id: &str, checkpoint: &Value) -> Result<()> {
        let sql = "UPDATE jobs SET checkpoint = $2 WHERE id = $1";
        on_db!(&self.db, execute, sql, id, Json(checkpoint));
        Ok(())
    }

    pub async fn add_result(&self, id: &str, result: &Value) -> Result<()> {
        match &self.db {
            Database::Postgres(pool) => {
                sqlx::query("UPDATE jobs SET results = results || jsonb_build_array($2::jsonb) WHERE id = $1")
                    .bind(id)
                    .bind(Json(result))
                    .execute(pool)
                    .await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query("UPDATE jobs SET results = json_insert(results, '$[#]', json(?2)) WHERE id = ?1")
                    .bind(id)
                    .bind(Json(result))
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn set_progress(&self, id: &str, progress: &Progress) -> Result<()> {
        let sql = "UPDATE jobs SET progress_percent = $2, progress_message = $3 WHERE id = $1";
        on_db!(
            &self.db,
            execute,
            sql,
            id,
            i64::from(progress.percent),
            &progress.message
        );
        Ok(())
    }

    /// Records how a running (or, for `interrupted`, pending) job ended. False when it had
    /// already ended.
    pub async fn finish(&self, id: &str, ending: &Ending) -> Result<bool> {
        let sql = "UPDATE jobs SET status = $2, ended_at = $3, exit_code = $4, signal = $5, \
                   error = $6, preempted_by = $7 WHERE id = $1 AND status IN ('pending', 'running')";
        let changed = on_db!(
            &self.db,
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
        Ok(changed == 1)
    }

    /// pending → cancelled. False when the job was not pending.
    pub async fn cancel(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let sql = "UPDATE jobs SET status = 'cancelled', ended_at = $2, error = 'cancelled by kill_job' \
                   WHERE id = $1 AND status = 'pending'";
        Ok(on_db!(&self.db, execute, sql, id, millis(at)) == 1)
    }

    /// The jobs recorded as running, with their process identity when it was recorded.
    pub async fn running(&self) -> Result<Vec<(Job, Option<ProcessIdentity>)>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE status = 'running' ORDER BY seq");
        on_db!(&self.db, fetch_all JobRow, &sql)
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
        into_jobs(on_db!(&self.db, fetch_all JobRow, &sql, &filter.device,
            filter.status.map(JobStatus::as_str), &filter.job_type, &filter.before, filter.limit))
    }

    /// Runs that started and had not ended before `since`, oldest first.
    pub async fn timeline(&self, since: DateTime<Utc>) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE started_at IS NOT NULL \
             AND (ended_at IS NULL OR ended_at >= $1) ORDER BY started_at, seq"
        );
        into_jobs(on_db!(&self.db, fetch_all JobRow, &sql, millis(since)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_numbered_placeholders_are_rewritten() {
        assert_eq!(
            super::sqlite_sql("a = $1 AND b = json_insert(x, '$[#]', $12)"),
            "a = ?1 AND b = json_insert(x, '$[#]', ?12)"
        );
    }
}
