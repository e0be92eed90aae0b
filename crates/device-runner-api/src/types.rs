//! The values the device runner's API takes and returns.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a job is in its life. `Pending` and `Running` are live; every other state is final and
/// the job is then a run in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Queued for its device.
    Pending,
    /// Its process is running.
    Running,
    /// The process exited with status 0.
    Completed,
    /// The process exited non-zero, was killed by a signal nobody sent, or could not start.
    Failed,
    /// Stopped for running past its max duration.
    Timeout,
    /// Stopped by `kill_job`.
    Killed,
    /// Removed from the queue by `kill_job` before it started.
    Cancelled,
    /// Stopped to make room for a job of higher priority (`preempted_by`).
    Preempted,
    /// Its device disappeared while it ran.
    DeviceLost,
    /// The runner stopped or restarted while it ran.
    Interrupted,
}

impl JobStatus {
    pub const ALL: [JobStatus; 10] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Timeout,
        JobStatus::Killed,
        JobStatus::Cancelled,
        JobStatus::Preempted,
        JobStatus::DeviceLost,
        JobStatus::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Timeout => "timeout",
            JobStatus::Killed => "killed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Preempted => "preempted",
            JobStatus::DeviceLost => "device_lost",
            JobStatus::Interrupted => "interrupted",
        }
    }

    /// Whether the job has ended (it is in the run history).
    pub fn is_finished(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<_> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown status '{text}' (one of {})", known.join(", "))
            })
    }
}

/// The last `::progress` line of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub percent: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A job: a queue entry while pending, a run once started. One record from enqueue to archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub device: String,
    pub job_type: String,
    pub params: Value,
    /// 1 (highest) to 5.
    pub priority: u8,
    pub max_duration_secs: u64,
    pub source: Option<String>,
    pub status: JobStatus,
    pub enqueued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Seconds from start to end, once ended.
    pub duration_secs: Option<f64>,
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// Why the job failed or was stopped.
    pub error: Option<String>,
    pub log_path: Option<String>,
    /// The job whose arrival preempted this one.
    pub preempted_by: Option<String>,
    /// The run this job continues (after a preemption or a runner restart) or repeats
    /// (`restart_run`).
    pub requeued_from: Option<String>,
    /// The last checkpoint: given at enqueue, or the last `::checkpoint` line.
    pub checkpoint: Option<Value>,
    /// Every `::result` line, in order.
    pub results: Vec<Value>,
    pub progress: Option<Progress>,
    /// The pool it runs in; `None` for a device's job. A pool job's `device` is its queue,
    /// `pool:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The key it was enqueued with: enqueueing again with it returns this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The job queued from its checkpoint to carry on after it was stopped (preempted, or
    /// interrupted by a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continued_by: Option<String>,
    /// Why a pending job does not start although its turn has come: its phone is outside a
    /// health gate or quarantined (`battery 12 % < 20 %`). Cleared when it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The W3C trace context it continues (`enqueue_job`'s `traceparent`, kept by the jobs that
    /// carry it on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A phone as the runner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub serial: String,
    pub label: Option<String>,
    /// adb's state (`device`, `offline`, `unauthorized`, ...), `absent` when adb does not list
    /// it, or `configured` when adb is not in use.
    pub state: String,
    /// Whether jobs start on it (adb state `device`, or configured without adb).
    pub usable: bool,
    /// Whether it is listed in the configuration (else discovered through adb).
    pub configured: bool,
    /// What it offers, as configured (`[[devices]] tags`); none for a phone adb found that
    /// the configuration does not list, and for a pool.
    #[serde(default)]
    pub tags: Vec<String>,
    /// What adb last told of the phone (every `health.poll`); none before the first read, for
    /// a phone adb does not list, and without adb.
    #[serde(default)]
    pub health: Option<DeviceHealth>,
    /// Set while the phone is out of service: it takes no new job.
    #[serde(default)]
    pub quarantine: Option<Quarantine>,
    /// Why it starts no new job now, when it does not although it is usable: quarantined, or
    /// outside a health gate (`temperature 44.5 °C > 42.0 °C`).
    #[serde(default)]
    pub held: Option<String>,
}

/// What adb tells of a phone (`getprop`, `dumpsys battery`), read every `health.poll`. A fact
/// adb did not give is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceHealth {
    /// `ro.product.model`.
    pub model: Option<String>,
    /// `ro.build.version.release`.
    pub android_version: Option<String>,
    /// 0 to 100.
    pub battery_percent: Option<u8>,
    /// Whether the battery is charging (or full on power).
    pub charging: Option<bool>,
    /// The battery's temperature.
    pub temperature_celsius: Option<f64>,
    pub read_at: DateTime<Utc>,
}

/// Why and since when a phone is out of service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantine {
    pub since: DateTime<Utc>,
    pub reason: String,
    /// `operator` (`quarantine_device`) or `failures` (`health.quarantine_after` jobs in a row
    /// failed, timed out or lost their device).
    pub by: String,
}

/// A step in a phone's history: `quarantined`, `released`, `reboot`, `online`,
/// `recovery_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceEvent {
    pub serial: String,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub message: String,
}

/// One device's line in `get_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    #[serde(flatten)]
    pub device: DeviceInfo,
    pub running: Option<Job>,
    pub pid: Option<i32>,
    pub pending: u64,
    /// When its last job ended.
    #[serde(default)]
    pub last_ended_at: Option<DateTime<Utc>>,
}

/// The answer of `get_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerStatus {
    /// The runner's name (`name`, by default the host name).
    #[serde(default)]
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub uptime_secs: f64,
    /// The uptime as people read it: `"2h 15m"`, `"3d 4h"`, `"45s"`.
    pub uptime: String,
    /// How many job types (modules) are configured.
    pub modules: usize,
    pub devices: Vec<DeviceStatus>,
    pub pools: Vec<PoolStatus>,
    /// Every running job, on devices and in pools.
    pub running_jobs: Vec<Job>,
}

/// A pool as the runner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub name: String,
    pub concurrency: u32,
    pub running: Vec<Job>,
    pub pending: u64,
}

/// A job type from the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTypeInfo {
    pub name: String,
    pub argv: Vec<String>,
    pub cwd: String,
    pub env: BTreeMap<String, String>,
    pub max_duration_secs: u64,
    pub protected: bool,
    pub requeue_on_preempt: bool,
    /// `device` or `pool:<name>`.
    #[serde(default)]
    pub runs_on: String,
}

/// A piece of a job's log, read by byte offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    pub job_id: String,
    pub offset: u64,
    /// Where the next read continues.
    pub next_offset: u64,
    /// The bytes read, as UTF-8 (invalid sequences replaced).
    pub data: String,
    /// Whether the job has ended and this chunk reaches the end of its log.
    pub eof: bool,
}

/// One run on a device's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub job_id: String,
    pub job_type: String,
    pub status: JobStatus,
    pub started_at: DateTime<Utc>,
    /// `None` while it runs.
    pub ended_at: Option<DateTime<Utc>>,
}

/// A device's runs in the window of `get_timeline`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceTimeline {
    pub serial: String,
    pub label: Option<String>,
    pub runs: Vec<TimelineEntry>,
}
