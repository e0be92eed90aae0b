//! Every change to the store, each one atomic step, applied on a connection of either backend.

use chrono::{DateTime, Utc};
use device_runner_api::{DeviceEvent, Job, Progress};
use serde_json::Value;
use service_kit::on_db;
use service_kit::sql::Conn;
use sqlx::types::Json;

use super::rows::{COLUMNS, Ending, JobRow, NewJob, millis};
use super::{Result, StoreError};
use crate::process::ProcessIdentity;

/// A change to the store. Each is one atomic step; on SQLite, concurrent ones are committed
/// together (see [`Writer`]).
#[derive(Debug)]
pub(super) enum Write {
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
    /// Writes why a device's pending jobs wait (or, with `None`, that they no longer do).
    Waiting {
        device: String,
        reason: Option<String>,
    },
    /// Puts a phone in quarantine (or changes why it is) and records it in its history.
    Quarantine {
        serial: String,
        at: DateTime<Utc>,
        reason: String,
        by: String,
    },
    /// Ends a phone's quarantine and records it in its history; not changed when it was not
    /// quarantined.
    Release {
        serial: String,
        at: DateTime<Utc>,
        message: String,
    },
    /// A step in a phone's history.
    Event(DeviceEvent),
}

/// What a write did: whether it changed a row, and the job it queued, if any.
#[derive(Debug, Default)]
pub(super) struct Written {
    pub(super) changed: bool,
    pub(super) queued: Option<Job>,
}

impl Write {
    fn changed(rows: u64) -> Written {
        Written {
            changed: rows > 0,
            queued: None,
        }
    }

    /// Queues a job, or finds the one that took its idempotency key.
    async fn insert(conn: Conn<'_>, job: &NewJob) -> Result<Written> {
        let sql = format!(
            "INSERT INTO jobs (id, device, job_type, params, priority, max_duration_secs, \
             source, status, enqueued_at, checkpoint, requeued_from, idempotency_key, \
             traceparent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11, $12) \
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING {COLUMNS}"
        );
        let mut conn = conn;
        let row = on_db!(conn.reborrow(), fetch_optional JobRow, &sql,
            &job.id, &job.device, &job.job_type, Json(&job.params), i64::from(job.priority),
            job.max_duration_secs as i64, &job.source, millis(job.enqueued_at),
            job.checkpoint.as_ref().map(Json), &job.requeued_from, &job.idempotency_key,
            &job.traceparent);
        let (changed, row) = match row {
            Some(row) => (true, Some(row)),
            // The key is taken: the job that took it.
            None => {
                let sql = format!("SELECT {COLUMNS} FROM jobs WHERE idempotency_key = $1");
                (
                    false,
                    on_db!(conn, fetch_optional JobRow, &sql, &job.idempotency_key),
                )
            }
        };
        let row = row.ok_or_else(|| StoreError::Corrupt {
            id: job.id.clone(),
            reason: "insert returned no row".into(),
        })?;
        Ok(Written {
            changed,
            queued: Some(row.into_job()?),
        })
    }

    /// Appends a result to a job's results.
    async fn add_result(conn: Conn<'_>, id: &str, result: &Value) -> Result<Written> {
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
        Ok(Self::changed(rows))
    }

    /// Ends a job that has not ended, queueing its continuation when it is requeued.
    async fn finish(
        conn: Conn<'_>,
        id: &str,
        ending: &Ending,
        requeue_as: Option<&str>,
    ) -> Result<Written> {
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
                     requeued_from, traceparent) \
                     SELECT $2, device, job_type, params, priority, max_duration_secs, \
                     source, 'pending', $3, checkpoint, id, traceparent FROM jobs WHERE id = $1 \
                     RETURNING {COLUMNS}"
                );
                let queued = on_db!(conn.reborrow(), fetch_optional JobRow, &sql, id, new_id,
                    millis(ending.ended_at));
                let link = "UPDATE jobs SET continued_by = $2 WHERE id = $1";
                on_db!(conn, execute, link, id, new_id);
                queued.map(JobRow::into_job).transpose()?
            }
            _ => None,
        };
        Ok(Written {
            changed: rows > 0,
            queued,
        })
    }

    /// Whether the write is one statement, atomic without a transaction around it. An insert
    /// whose idempotency key is taken reads the job that took it after its statement, a row
    /// already committed, so it is one as well.
    pub(super) fn is_one_statement(&self) -> bool {
        !matches!(
            self,
            Write::Finish {
                requeue_as: Some(_),
                ..
            } | Write::Quarantine { .. }
                | Write::Release { .. }
        )
    }

    async fn event(conn: Conn<'_>, event: &DeviceEvent) -> Result<()> {
        let sql = "INSERT INTO device_events (serial, at, kind, message) VALUES ($1, $2, $3, $4)";
        on_db!(
            conn,
            execute,
            sql,
            &event.serial,
            millis(event.at),
            &event.kind,
            &event.message
        );
        Ok(())
    }

    async fn quarantine(
        conn: Conn<'_>,
        serial: &str,
        at: DateTime<Utc>,
        reason: &str,
        by: &str,
    ) -> Result<Written> {
        let sql = "INSERT INTO devices (serial, quarantined_at, quarantine_reason, quarantined_by) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT (serial) DO UPDATE SET \
                   quarantined_at = coalesce(devices.quarantined_at, excluded.quarantined_at), \
                   quarantine_reason = excluded.quarantine_reason, \
                   quarantined_by = excluded.quarantined_by";
        let mut conn = conn;
        on_db!(
            conn.reborrow(),
            execute,
            sql,
            serial,
            millis(at),
            reason,
            by
        );
        let event = DeviceEvent {
            serial: serial.into(),
            at,
            kind: "quarantined".into(),
            message: format!("{reason} (by {by})"),
        };
        Self::event(conn, &event).await?;
        Ok(Self::changed(1))
    }

    async fn release(
        conn: Conn<'_>,
        serial: &str,
        at: DateTime<Utc>,
        message: &str,
    ) -> Result<Written> {
        let sql = "UPDATE devices SET quarantined_at = NULL, quarantine_reason = NULL, \
                   quarantined_by = NULL, released_at = $2 \
                   WHERE serial = $1 AND quarantined_at IS NOT NULL";
        let mut conn = conn;
        let rows = on_db!(conn.reborrow(), execute, sql, serial, millis(at));
        if rows > 0 {
            let event = DeviceEvent {
                serial: serial.into(),
                at,
                kind: "released".into(),
                message: message.into(),
            };
            Self::event(conn, &event).await?;
        }
        Ok(Self::changed(rows))
    }

    pub(super) async fn apply(&self, conn: Conn<'_>) -> Result<Written> {
        Ok(match self {
            Write::Insert(job) => Self::insert(conn, job).await?,
            Write::Start { id, at, log_path } => {
                let sql = "UPDATE jobs SET status = 'running', started_at = $2, log_path = $3, \
                           waiting = NULL WHERE id = $1 AND status = 'pending'";
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
            Write::AddResult { id, result } => Self::add_result(conn, id, result).await?,
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
            } => Self::finish(conn, id, ending, requeue_as.as_deref()).await?,
            Write::Cancel { id, at } => {
                let sql = "UPDATE jobs SET status = 'cancelled', ended_at = $2, \
                           error = 'cancelled by kill_job' WHERE id = $1 AND status = 'pending'";
                Self::changed(on_db!(conn, execute, sql, id, millis(*at)))
            }
            Write::Waiting { device, reason } => {
                let sql = "UPDATE jobs SET waiting = $2 WHERE device = $1 AND status = 'pending' \
                           AND waiting IS DISTINCT FROM $2";
                Self::changed(on_db!(conn, execute, sql, device, reason))
            }
            Write::Quarantine {
                serial,
                at,
                reason,
                by,
            } => Self::quarantine(conn, serial, *at, reason, by).await?,
            Write::Release {
                serial,
                at,
                message,
            } => Self::release(conn, serial, *at, message).await?,
            Write::Event(event) => {
                Self::event(conn, event).await?;
                Self::changed(1)
            }
        })
    }
}
