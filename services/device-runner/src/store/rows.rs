//! The `jobs` table's rows and the API's jobs. Both backends store instants as UTC
//! milliseconds, so one row type reads both.

use chrono::{DateTime, TimeZone, Utc};
use device_runner_api::{Job, JobStatus, Progress};
use serde_json::Value;
use sqlx::types::Json;

use super::{Result, StoreError};
use crate::process::ProcessIdentity;

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
    /// The caller's key: a job with the same key already stored is returned instead.
    pub idempotency_key: Option<String>,
    /// The W3C trace context the job continues.
    pub traceparent: Option<String>,
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
    /// Only runs that ended before this instant.
    pub ended_before: Option<DateTime<Utc>>,
    pub limit: i64,
}

pub(super) const COLUMNS: &str = "seq, id, device, job_type, params, priority, max_duration_secs, source, status, \
     enqueued_at, started_at, ended_at, pid, pgid, proc_start_ticks, boot_id, exit_code, signal, \
     error, log_path, preempted_by, requeued_from, checkpoint, results, progress_percent, \
     progress_message, idempotency_key, continued_by, waiting, traceparent";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct JobRow {
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
    idempotency_key: Option<String>,
    continued_by: Option<String>,
    waiting: Option<String>,
    traceparent: Option<String>,
}

pub(super) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(super) fn instant(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl JobRow {
    pub(super) fn identity(&self) -> Option<ProcessIdentity> {
        Some(ProcessIdentity {
            pid: i32::try_from(self.pid?).ok()?,
            pgid: i32::try_from(self.pgid?).ok()?,
            start_ticks: u64::try_from(self.proc_start_ticks?).ok()?,
            boot_id: self.boot_id.clone()?,
        })
    }

    pub(super) fn into_job(self) -> Result<Job> {
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
            device: self.device.clone(),
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
            pool: self
                .device
                .strip_prefix(crate::config::POOL_PREFIX)
                .map(str::to_string),
            idempotency_key: self.idempotency_key,
            continued_by: self.continued_by,
            waiting: self.waiting,
            traceparent: self.traceparent,
        })
    }
}

pub(super) fn into_jobs(rows: Vec<JobRow>) -> Result<Vec<Job>> {
    rows.into_iter().map(JobRow::into_job).collect()
}
