//! Stopping the running job for a reason: SIGTERM to its group, the kill grace, SIGKILL.

use std::time::Duration;

use device_runner_api::JobStatus;

use super::Supervisor;
use crate::process;

/// Why a running job is being stopped.
#[derive(Debug, Clone)]
pub(super) enum StopReason {
    Timeout(Duration),
    Killed,
    Preempted {
        by: String,
    },
    DeviceLost(String),
    Shutdown,
    /// Hotter than `health.stop_above_temperature` (the reason says how hot).
    Overheated(String),
}

impl StopReason {
    pub(super) fn status(&self) -> JobStatus {
        match self {
            StopReason::Timeout(_) => JobStatus::Timeout,
            StopReason::Killed => JobStatus::Killed,
            StopReason::Preempted { .. } => JobStatus::Preempted,
            StopReason::DeviceLost(_) => JobStatus::DeviceLost,
            StopReason::Shutdown | StopReason::Overheated(_) => JobStatus::Interrupted,
        }
    }

    pub(super) fn message(&self) -> String {
        match self {
            StopReason::Timeout(limit) => format!(
                "ran past its max duration of {}",
                humantime::format_duration(*limit)
            ),
            StopReason::Killed => "killed by kill_job".into(),
            StopReason::Preempted { by } => format!("preempted by job {by} of higher priority"),
            StopReason::DeviceLost(state) => format!("the device disappeared ({state})"),
            StopReason::Shutdown => "the runner shut down".into(),
            StopReason::Overheated(reason) => reason.clone(),
        }
    }
}

impl Supervisor {
    /// Stops the running job at `at` for `reason` and records it.
    pub(super) async fn stop(&mut self, at: usize, reason: StopReason) {
        if at >= self.running.len() {
            return;
        }
        let mut running = self.running.remove(at);
        if let StopReason::Timeout(limit) = &reason {
            let _ = running.notes.send(format!(
                "Duration limit reached ({}); stopping the job",
                humantime::format_duration(*limit)
            ));
        }
        tracing::info!(job_id = %running.job.id, device = %self.serial, reason = %reason.message(), "stopping job");
        crate::spans::killed(&running.span, &reason.message());
        process::ask_to_stop(running.pgid);
        let status = match tokio::time::timeout(
            self.context.config.kill_grace,
            running.child.wait(),
        )
        .await
        {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(job_id = %running.job.id, "job ignored SIGTERM; sending SIGKILL");
                process::kill_now(running.pgid);
                running.child.wait().await
            }
        };
        let status = status.ok();
        self.finish(running, status, Some(reason)).await
    }
}
