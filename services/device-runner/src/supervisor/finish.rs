//! Recording how a job ended: what is left of its group is killed, its output drained, its
//! status derived from the exit or the stop reason, and the end persisted (with a requeue from
//! its last checkpoint when its type resumes).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use chrono::Utc;
use device_runner_api::{JobStatus, Quarantine};

use super::stop::StopReason;
use super::{Running, Supervisor};
use crate::process;
use crate::store::{Ending, Store};
use crate::telemetry;

impl Supervisor {
    pub(super) async fn finish_exited(&mut self, at: usize, status: std::io::Result<ExitStatus>) {
        if at < self.running.len() {
            let running = self.running.remove(at);
            self.finish(running, status.ok(), None).await;
        }
    }

    /// Kills what is left of the group, waits for the output, and records the end.
    pub(super) async fn finish(
        &mut self,
        running: Running,
        status: Option<ExitStatus>,
        reason: Option<StopReason>,
    ) {
        // The leader is reaped; whatever it left in its group goes with it.
        process::kill_group(running.pgid).await;
        let mut pump = running.pump;
        if tokio::time::timeout(Duration::from_secs(2), &mut pump)
            .await
            .is_err()
        {
            // A process outside the group still holds the pipes.
            pump.abort();
        }
        {
            let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
            view.jobs.retain(|(id, _)| *id != running.job.id);
            view.last_ended = Some(Utc::now());
        }
        let job = running.job;
        let mut ending = ending_of(status, reason.as_ref());
        let store = &self.context.store;
        let requeue = match &reason {
            Some(StopReason::Preempted { .. }) => running.requeue,
            // A deploy must not lose what a crash keeps: like a restart after SIGKILL, the
            // next start resumes the job from its last checkpoint. So does a job stopped
            // because its phone overheated, once the phone is cool again.
            Some(StopReason::Shutdown | StopReason::Overheated(_)) => {
                match store.get(&job.id).await {
                    Ok(Some(stored)) => crate::recover::resumes(&self.context.config, &stored),
                    Ok(None) => false,
                    Err(error) => {
                        tracing::error!(%error, job_id = %job.id, "cannot read the job's checkpoint");
                        false
                    }
                }
            }
            _ => false,
        };
        if requeue && ending.status == JobStatus::Interrupted {
            ending.error = Some(format!(
                "{}; queued again to resume from its last checkpoint at the next start",
                reason.as_ref().map(StopReason::message).unwrap_or_default()
            ));
        }
        record_end(store, &job.id, &ending, requeue).await;
        if counts_against_the_phone(ending.status) {
            self.quarantine_after_failures().await;
        }
        telemetry::job_finished(
            &job.job_type,
            ending.status,
            Some(running.started.elapsed()),
        );
        self.context
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.id);
        crate::spans::ended(running.span, ending.status.as_str());
        tracing::info!(job_id = %job.id, device = %self.serial, status = %ending.status, "job ended");
    }
}

/// Whether a job that ended so counts toward `health.quarantine_after`.
fn counts_against_the_phone(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Failed | JobStatus::Timeout | JobStatus::DeviceLost
    )
}

impl Supervisor {
    /// Quarantines its phone when its last `health.quarantine_after` jobs all failed: stored,
    /// held here at once so nothing more starts, and told to the health task.
    async fn quarantine_after_failures(&mut self) {
        let Some(count) = self.context.config.health.quarantine_after else {
            return;
        };
        if self.slots > 1 || self.serial.starts_with(crate::config::POOL_PREFIX) {
            return;
        }
        if self.quarantine.is_some() {
            return;
        }
        match self
            .context
            .store
            .failed_in_a_row(&self.serial, count)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::error!(%error, device = %self.serial, "cannot count the phone's failures");
                return;
            }
        }
        let quarantine = Quarantine {
            since: Utc::now(),
            reason: format!("{count} jobs in a row failed, timed out or lost the device"),
            by: crate::health::BY_FAILURES.into(),
        };
        if let Err(error) = self
            .context
            .store
            .quarantine(&self.serial, &quarantine)
            .await
        {
            tracing::error!(%error, device = %self.serial, "cannot quarantine the phone");
            return;
        }
        self.quarantine = Some(quarantine.clone());
        self.write_waiting().await;
        let _ = self
            .context
            .quarantine_notices
            .send((self.serial.clone(), quarantine));
    }
}

/// Records how a job ended; with `requeue`, also queues it again with its last checkpoint, in
/// the same transaction. A failure is logged: the job, still recorded as running, is then
/// settled by the next start-up's reconciliation.
async fn record_end(store: &Store, job_id: &str, ending: &Ending, requeue: bool) {
    match store.end(job_id, ending, requeue).await {
        Ok(Some(queued)) => {
            tracing::info!(job_id, new_job_id = %queued.id, status = %ending.status,
                "job requeued from its last checkpoint");
        }
        Ok(None) => {}
        Err(error) => tracing::error!(%error, job_id, "cannot record the end of a job"),
    }
}

/// How a job ended: as `reason` says when it was stopped, else by its exit status.
fn ending_of(status: Option<ExitStatus>, reason: Option<&StopReason>) -> Ending {
    let exit_code = status.and_then(|s| s.code());
    let signal = status.and_then(|s| s.signal());
    let (status, error) = match reason {
        Some(reason) => (reason.status(), Some(reason.message())),
        None => match (exit_code, signal) {
            (Some(0), _) => (JobStatus::Completed, None),
            (Some(code), _) => (JobStatus::Failed, Some(format!("exited with code {code}"))),
            (None, Some(signal)) => (
                JobStatus::Failed,
                Some(format!(
                    "killed by signal {signal} ({})",
                    process::signal_name(signal)
                )),
            ),
            (None, None) => (JobStatus::Failed, Some("exit status unknown".into())),
        },
    };
    let preempted_by = match reason {
        Some(StopReason::Preempted { by }) => Some(by.clone()),
        _ => None,
    };
    Ending {
        status,
        ended_at: Utc::now(),
        exit_code,
        signal,
        error,
        preempted_by,
    }
}
