//! Status, devices and job types.

use chrono::Utc;
use device_runner_api::{
    DeviceInfo, DeviceStatus, JobTypeInfo, PoolStatus, RunnerError, RunnerStatus,
};

use crate::config::POOL_PREFIX;

use crate::state::{RunnerState, storage_error};

pub(super) async fn status(runner: &RunnerState) -> Result<RunnerStatus, RunnerError> {
    let counts = runner.store.pending_counts().await.map_err(storage_error)?;
    let pending_of = |queue: &str| {
        counts
            .iter()
            .find(|(name, _)| name == queue)
            .map_or(0, |(_, count)| *count as u64)
    };
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
    let mut pools = Vec::new();
    let mut running_jobs = Vec::new();
    for (info, view) in views {
        let mut running = Vec::with_capacity(view.jobs.len());
        for (id, _) in &view.jobs {
            if let Some(job) = runner.store.get(id).await.map_err(storage_error)? {
                running.push(job);
            }
        }
        running_jobs.extend(running.iter().cloned());
        let pending = pending_of(&info.serial);
        match info.serial.strip_prefix(POOL_PREFIX) {
            Some(name) => pools.push(PoolStatus {
                name: name.to_string(),
                concurrency: runner
                    .config
                    .pools
                    .iter()
                    .find(|p| p.name == name)
                    .map_or(1, |p| p.concurrency),
                running,
                pending,
            }),
            None => devices.push(DeviceStatus {
                device: info,
                running: running.into_iter().next(),
                pid: view.jobs.first().map(|(_, pid)| *pid),
                pending,
                last_ended_at: view.last_ended,
            }),
        }
    }
    let now = Utc::now();
    let uptime = (now - runner.started_at).to_std().unwrap_or_default();
    Ok(RunnerStatus {
        name: runner.name.clone(),
        started_at: runner.started_at,
        uptime_secs: uptime.as_millis() as f64 / 1000.0,
        uptime: readable_uptime(uptime),
        modules: runner.config.job_types.len(),
        devices,
        pools,
        running_jobs,
    })
}

/// An uptime as the job engine writes it: its two largest units (`"2h 15m"`, `"3d 4h"`,
/// `"5m 2s"`, `"45s"`).
fn readable_uptime(uptime: std::time::Duration) -> String {
    let secs = uptime.as_secs();
    let units = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let first = units.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    units[first..]
        .iter()
        .take(2)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn devices(runner: &RunnerState) -> Vec<DeviceInfo> {
    runner.phones()
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
            runs_on: t.runs_on.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::readable_uptime;
    use std::time::Duration;

    #[test]
    fn uptimes_read_as_their_two_largest_units() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (302, "5m 2s"),
            (2 * 3600 + 15 * 60 + 9, "2h 15m"),
            (3600, "1h 0m"),
            (3 * 86_400 + 4 * 3600 + 59, "3d 4h"),
        ] {
            assert_eq!(readable_uptime(Duration::from_secs(secs)), text, "{secs} s");
        }
    }
}
