//! Status, devices and job types.

use chrono::Utc;
use device_runner_api::{DeviceInfo, DeviceStatus, JobTypeInfo, RunnerError, RunnerStatus};

use crate::state::{RunnerState, storage_error};

pub(super) async fn status(runner: &RunnerState) -> Result<RunnerStatus, RunnerError> {
    let counts = runner.store.pending_counts().await.map_err(storage_error)?;
    let views: Vec<_> = {
        let devices = runner.devices.read().unwrap_or_else(|e| e.into_inner());
        devices
            .values()
            .map(|entry| {
                let view = entry
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                (entry.info.clone(), view)
            })
            .collect()
    };
    let mut devices = Vec::with_capacity(views.len());
    for (info, view) in views {
        let running = match &view.job_id {
            Some(id) => runner.store.get(id).await.map_err(storage_error)?,
            None => None,
        };
        let pending = counts
            .iter()
            .find(|(device, _)| *device == info.serial)
            .map_or(0, |(_, count)| *count as u64);
        devices.push(DeviceStatus {
            device: info,
            running,
            pid: view.pid,
            pending,
        });
    }
    let now = Utc::now();
    Ok(RunnerStatus {
        started_at: runner.started_at,
        uptime_secs: (now - runner.started_at).num_milliseconds() as f64 / 1000.0,
        devices,
    })
}

pub(super) fn devices(runner: &RunnerState) -> Vec<DeviceInfo> {
    let devices = runner.devices.read().unwrap_or_else(|e| e.into_inner());
    devices.values().map(|entry| entry.info.clone()).collect()
}

pub(super) fn job_types(runner: &RunnerState) -> Vec<JobTypeInfo> {
    runner
        .config
        .job_types
        .iter()
        .map(|(name, t)| JobTypeInfo {
            name: name.clone(),
            argv: t.argv.clone(),
            cwd: t.cwd.display().to_string(),
            env: t.env.clone(),
            max_duration_secs: t.max_duration.as_secs(),
            protected: t.protected,
            requeue_on_preempt: t.requeue_on_preempt,
        })
        .collect()
}
