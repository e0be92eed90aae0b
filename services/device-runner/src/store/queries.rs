//! The reads: queues, running jobs, history, the timeline.

use chrono::{DateTime, Utc};
use device_runner_api::{DeviceEvent, Job, JobStatus, Quarantine};
use service_kit::on_db;

use super::rows::{COLUMNS, JobRow, RunFilter, instant, into_jobs, millis};
use super::{Result, Store};
use crate::process::ProcessIdentity;

impl Store {
    pub async fn get(&self, id: &str) -> Result<Option<Job>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
        let mut reader = self.reader().await?;
        on_db!(reader.conn(), fetch_optional JobRow, &sql, id)
            .map(JobRow::into_job)
            .transpose()
    }

    /// The job enqueued with this idempotency key.
    pub async fn by_key(&self, key: &str) -> Result<Option<Job>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE idempotency_key = $1");
        let mut reader = self.reader().await?;
        on_db!(reader.conn(), fetch_optional JobRow, &sql, key)
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
             AND ended_at < coalesce($6, ended_at + 1) \
             ORDER BY ended_at DESC, seq DESC LIMIT $5"
        );
        let mut reader = self.reader().await?;
        into_jobs(
            on_db!(reader.conn(), fetch_all JobRow, &sql, &filter.device,
            filter.status.map(JobStatus::as_str), &filter.job_type, &filter.before, filter.limit,
            filter.ended_before.map(millis)),
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

    /// When the last job of `device` ended.
    pub async fn last_ended(&self, device: &str) -> Result<Option<DateTime<Utc>>> {
        let sql = "SELECT max(ended_at) FROM jobs WHERE device = $1 AND ended_at IS NOT NULL";
        let mut reader = self.reader().await?;
        type Last = (Option<i64>,);
        let (last,) = on_db!(reader.conn(), fetch_one Last, sql, device);
        Ok(last.map(instant))
    }

    /// The phones in quarantine, as stored.
    pub async fn quarantines(&self) -> Result<Vec<(String, Quarantine)>> {
        let sql = "SELECT serial, quarantined_at, quarantine_reason, quarantined_by FROM devices \
                   WHERE quarantined_at IS NOT NULL ORDER BY serial";
        let mut reader = self.reader().await?;
        let rows = on_db!(
            reader.conn(),
            fetch_all(String, i64, Option<String>, Option<String>),
            sql
        );
        Ok(rows
            .into_iter()
            .map(|(serial, since, reason, by)| {
                let quarantine = Quarantine {
                    since: instant(since),
                    reason: reason.unwrap_or_default(),
                    by: by.unwrap_or_else(|| "operator".into()),
                };
                (serial, quarantine)
            })
            .collect())
    }

    /// Whether the last `count` jobs of `device` that ended on their own since it was last
    /// released (completed, failed, timed out or lost their device; a job killed, cancelled,
    /// preempted or interrupted tells nothing of the phone) all failed.
    pub async fn failed_in_a_row(&self, device: &str, count: u32) -> Result<bool> {
        let sql = "SELECT status FROM jobs WHERE device = $1 AND ended_at IS NOT NULL \
                   AND ended_at > coalesce((SELECT released_at FROM devices WHERE serial = $1), -1) \
                   AND status IN ('completed', 'failed', 'timeout', 'device_lost') \
                   ORDER BY ended_at DESC, seq DESC LIMIT $2";
        let mut reader = self.reader().await?;
        let statuses = on_db!(
            reader.conn(),
            fetch_all(String,),
            sql,
            device,
            i64::from(count)
        );
        Ok(statuses.len() == count as usize && statuses.iter().all(|(s,)| s != "completed"))
    }

    /// A phone's history, newest first.
    pub async fn device_history(&self, serial: &str, limit: i64) -> Result<Vec<DeviceEvent>> {
        let sql = "SELECT at, kind, message FROM device_events WHERE serial = $1 \
                   ORDER BY seq DESC LIMIT $2";
        let mut reader = self.reader().await?;
        let rows = on_db!(
            reader.conn(),
            fetch_all(i64, String, String),
            sql,
            serial,
            limit
        );
        Ok(rows
            .into_iter()
            .map(|(at, kind, message)| DeviceEvent {
                serial: serial.into(),
                at: instant(at),
                kind,
                message,
            })
            .collect())
    }
}
