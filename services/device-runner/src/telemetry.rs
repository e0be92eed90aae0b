//! Metrics, served as Prometheus text at `GET /metrics`. Names and labels:
//!
//! - `device_runner_jobs_started_total{job_type}`: jobs whose process started;
//! - `device_runner_jobs_finished_total{job_type, status}`: jobs that ended, by final status
//!   (`completed`, `failed`, `killed`, `timeout`, `preempted`, `interrupted`);
//! - `device_runner_job_start_latency_seconds{job_type}`: from enqueue to start;
//! - `device_runner_job_duration_seconds{job_type, status}`: from start to end;
//! - `device_runner_queue_depth{device}`: pending jobs, as of the last scrape;
//! - `device_runner_running_jobs{device}`: jobs running (0 or 1 on a phone), as of the last
//!   scrape;
//! - `device_runner_process_kills_total{signal}`: signals delivered to job process groups
//!   (`SIGTERM` to stop, `SIGKILL` when the grace ran out or to clear what a job left);
//! - `device_runner_device_battery_percent{device}`, `device_runner_device_temperature_celsius{device}`:
//!   a phone's battery as adb last told it (from the first read on);
//! - `device_runner_device_quarantined{device}`: 1 while a phone is quarantined, else 0.
//!
//! [`register`] creates at start every series whose labels the configuration tells (each job
//! type with each final status, each device and pool, each signal), so each reads 0 from the
//! first scrape instead of being absent until the first job.

use std::time::Duration;

use device_runner_api::{DeviceHealth, JobStatus};
use metrics::{counter, gauge, histogram};

use crate::config::{Config, pool_queue};

/// The signals `device_runner_process_kills_total` counts.
const SIGNALS: [&str; 2] = ["SIGTERM", "SIGKILL"];

/// Registers every series the configuration knows of, at 0.
pub fn register(config: &Config) {
    for job_type in config.job_types.keys() {
        let job_type = job_type.to_string();
        counter!("device_runner_jobs_started_total", "job_type" => job_type.clone()).increment(0);
        // Registered, a histogram is rendered with no observations.
        let _registered =
            histogram!("device_runner_job_start_latency_seconds", "job_type" => job_type.clone());
        for status in JobStatus::ALL.into_iter().filter(|s| s.is_finished()) {
            let status = status.as_str();
            counter!("device_runner_jobs_finished_total", "job_type" => job_type.clone(), "status" => status)
                .increment(0);
            let _registered = histogram!("device_runner_job_duration_seconds", "job_type" => job_type.clone(), "status" => status);
        }
    }
    let devices = config.devices.iter().map(|d| d.serial.clone());
    let pools = config.pools.iter().map(|p| pool_queue(&p.name));
    for queue in devices.chain(pools) {
        self::queue(&queue, 0, 0);
    }
    for signal in SIGNALS {
        counter!("device_runner_process_kills_total", "signal" => signal).increment(0);
    }
}

/// Registers the descriptions once the recorder is installed.
pub fn describe() {
    metrics::describe_counter!(
        "device_runner_jobs_started_total",
        "Jobs whose process started."
    );
    metrics::describe_counter!(
        "device_runner_jobs_finished_total",
        "Jobs that ended, by final status."
    );
    metrics::describe_histogram!(
        "device_runner_job_start_latency_seconds",
        metrics::Unit::Seconds,
        "Time from enqueue to the start of the job's process."
    );
    metrics::describe_histogram!(
        "device_runner_job_duration_seconds",
        metrics::Unit::Seconds,
        "Time from the start of a job to its end."
    );
    metrics::describe_gauge!("device_runner_queue_depth", "Pending jobs per device.");
    metrics::describe_gauge!("device_runner_running_jobs", "Running jobs per device.");
    metrics::describe_counter!(
        "device_runner_process_kills_total",
        "Signals delivered to job process groups, by signal."
    );
    metrics::describe_gauge!(
        "device_runner_device_battery_percent",
        "A phone's battery level, as adb last told it."
    );
    metrics::describe_gauge!(
        "device_runner_device_temperature_celsius",
        "A phone's battery temperature in degrees Celsius, as adb last told it."
    );
    metrics::describe_gauge!(
        "device_runner_device_quarantined",
        "1 while a phone is quarantined, else 0."
    );
}

/// A phone's facts, as just read.
pub fn device_health(device: &str, health: &DeviceHealth) {
    if let Some(level) = health.battery_percent {
        gauge!("device_runner_device_battery_percent", "device" => device.to_string())
            .set(f64::from(level));
    }
    if let Some(temperature) = health.temperature_celsius {
        gauge!("device_runner_device_temperature_celsius", "device" => device.to_string())
            .set(temperature);
    }
}

pub fn device_quarantined(device: &str, quarantined: bool) {
    gauge!("device_runner_device_quarantined", "device" => device.to_string())
        .set(if quarantined { 1.0 } else { 0.0 });
}

pub fn job_started(job_type: &str, waited: Duration) {
    let job_type = job_type.to_string();
    counter!("device_runner_jobs_started_total", "job_type" => job_type.clone()).increment(1);
    histogram!("device_runner_job_start_latency_seconds", "job_type" => job_type)
        .record(waited.as_secs_f64());
}

/// A job ended; `ran` is `None` for a job that never started.
pub fn job_finished(job_type: &str, status: JobStatus, ran: Option<Duration>) {
    let (job_type, status) = (job_type.to_string(), status.as_str());
    counter!("device_runner_jobs_finished_total", "job_type" => job_type.clone(), "status" => status)
        .increment(1);
    if let Some(ran) = ran {
        histogram!("device_runner_job_duration_seconds", "job_type" => job_type, "status" => status)
            .record(ran.as_secs_f64());
    }
}

pub fn queue(device: &str, pending: usize, running: usize) {
    gauge!("device_runner_queue_depth", "device" => device.to_string()).set(pending as f64);
    gauge!("device_runner_running_jobs", "device" => device.to_string()).set(running as f64);
}

pub fn process_signalled(signal: &'static str) {
    counter!("device_runner_process_kills_total", "signal" => signal).increment(1);
}
