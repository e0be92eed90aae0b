//! The run history and the timeline.

use chrono::{TimeDelta, Utc};
use device_runner_api::{DeviceTimeline, Job, JobStatus, RunnerError, TimelineEntry};

use super::jobs::find;
use crate::state::{RunnerState, storage_error};
use crate::store::RunFilter;

pub(super) struct RunsQuery {
    pub device: Option<String>,
    pub status: Option<String>,
    pub job_type: Option<String>,
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub ended_before: Option<chrono::DateTime<Utc>>,
}

pub(super) async fn list(runner: &RunnerState, query: RunsQuery) -> Result<Vec<Job>, RunnerError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(RunnerError::Value(format!(
            "limit must be between 1 and 1000, got {limit}"
        )));
    }
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => {
            let status = text.parse::<JobStatus>().map_err(RunnerError::Value)?;
            if !status.is_finished() {
                return Err(RunnerError::Value(format!(
                    "runs are finished jobs; '{status}' jobs are in list_queue or get_status"
                )));
            }
            Some(status)
        }
    };
    if let Some(before) = &query.before {
        find(runner, before).await?;
    }
    let filter = RunFilter {
        device: query.device,
        status,
        job_type: query.job_type,
        before: query.before,
        ended_before: query.ended_before,
        limit,
    };
    runner.store.runs(&filter).await.map_err(storage_error)
}

pub(super) async fn get(runner: &RunnerState, run_id: &str) -> Result<Job, RunnerError> {
    find(runner, run_id).await
}

pub(super) async fn timeline(
    runner: &RunnerState,
    hours: Option<f64>,
) -> Result<Vec<DeviceTimeline>, RunnerError> {
    let hours = hours.unwrap_or(24.0);
    if !(hours > 0.0 && hours <= 24.0 * 90.0) {
        return Err(RunnerError::Value(format!(
            "hours must be more than 0 and at most 2160 (90 days), got {hours}"
        )));
    }
    let since = Utc::now() - TimeDelta::milliseconds((hours * 3_600_000.0) as i64);
    let jobs = runner.store.timeline(since).await.map_err(storage_error)?;
    let mut devices: Vec<DeviceTimeline> = {
        let registered = runner.devices.read().unwrap_or_else(|e| e.into_inner());
        registered
            .values()
            .map(|entry| DeviceTimeline {
                serial: entry.info.serial.clone(),
                label: entry.info.label.clone(),
                runs: Vec::new(),
            })
            .collect()
    };
    for job in jobs {
        let Some(started_at) = job.started_at else {
            continue;
        };
        let entry = TimelineEntry {
            job_id: job.id,
            job_type: job.job_type,
            status: job.status,
            started_at,
            ended_at: job.ended_at,
        };
        match devices.iter_mut().find(|d| d.serial == job.device) {
            Some(device) => device.runs.push(entry),
            None => devices.push(DeviceTimeline {
                serial: job.device,
                label: None,
                runs: vec![entry],
            }),
        }
    }
    Ok(devices)
}
