//! Starting a job: marking it running, creating its log, spawning its process in its own
//! group, recording the process's identity, and pumping its output into the log and the
//! store. A job that cannot start is recorded as failed.

use std::time::Duration;

use chrono::Utc;
use device_runner_api::{Job, JobStatus};
use tokio::time::Instant;

use super::{Running, Supervisor};
use crate::output::{Lines, LogFile, Report, parse_report};
use crate::process::{self, ChildStderr, ChildStdout, ProcessIdentity};
use crate::spans;
use crate::store::{Ending, Store, StoreError};
use crate::telemetry;

impl Supervisor {
    /// Starts one job. Ok(false): it did not start (recorded as failed, or taken meanwhile).
    pub(super) async fn launch(&mut self, job: Job) -> Result<bool, StoreError> {
        let store = &self.context.store;
        let log_path = self.context.config.log_path(&self.serial, &job.id);
        if !store
            .start(&job.id, Utc::now(), &log_path.display().to_string())
            .await?
        {
            return Ok(false);
        }
        let job_type = self.context.config.job_types.get(&job.job_type).cloned();
        let (mut log, progress) =
            match LogFile::create(&log_path, self.context.config.log_cap_bytes).await {
                Ok(pair) => pair,
                Err(error) => {
                    let message = format!("cannot create log file {}: {error}", log_path.display());
                    fail_to_start(store, &job, message).await?;
                    return Ok(false);
                }
            };
        let Some(job_type) = job_type else {
            let message = format!("job type '{}' is no longer configured", job.job_type);
            log.note(&message).await;
            log.close().await;
            fail_to_start(store, &job, message).await?;
            return Ok(false);
        };
        let run = spans::run(&job);
        let traceparent = service_kit::traces::traceparent_of(&run);
        let mut child = match process::spawn::job(&job_type, &job, traceparent.as_deref()) {
            Ok(child) => child,
            Err(error) => {
                let message = format!("cannot start '{}': {error}", job_type.argv[0]);
                log.note(&message).await;
                log.close().await;
                fail_to_start(store, &job, message).await?;
                return Ok(false);
            }
        };
        let pid = child.id().map_or(0, |pid| pid as i32);
        run.record("pid", pid);
        let identity = process::identify(pid).unwrap_or(ProcessIdentity {
            pid,
            pgid: pid,
            start_ticks: 0,
            boot_id: process::boot_id(),
        });
        store.record_process(&job.id, &identity).await?;
        self.context
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id.clone(), progress);
        let (notes, noted) = tokio::sync::mpsc::unbounded_channel();
        let pump = tokio::spawn(pump_output(
            store.clone(),
            job.id.clone(),
            child.stdout.take(),
            child.stderr.take(),
            log,
            noted,
        ));
        tracing::info!(job_id = %job.id, device = %self.serial, job_type = %job.job_type, pid, "job started");
        let waited = (Utc::now() - job.enqueued_at).to_std().unwrap_or_default();
        telemetry::job_started(&job.job_type, waited);
        self.view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .jobs
            .push((job.id.clone(), pid));
        let now = Instant::now();
        self.running.push(Running {
            protected: job_type.protected,
            requeue: job_type.requeue_on_preempt,
            deadline: now + Duration::from_secs(job.max_duration_secs),
            job,
            child,
            pgid: identity.pgid,
            started: now,
            pump,
            notes,
            span: run,
        });
        Ok(true)
    }
}

async fn fail_to_start(store: &Store, job: &Job, message: String) -> Result<(), StoreError> {
    tracing::warn!(job_id = %job.id, %message, "job failed to start");
    let ending = Ending {
        status: JobStatus::Failed,
        ended_at: Utc::now(),
        exit_code: None,
        signal: None,
        error: Some(message),
        preempted_by: None,
    };
    store.finish(&job.id, &ending).await?;
    telemetry::job_finished(&job.job_type, JobStatus::Failed, None);
    Ok(())
}

/// Copies stdout and stderr into the log and persists protocol lines from stdout as they come.
async fn pump_output(
    store: Store,
    job_id: String,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    mut log: LogFile,
    mut notes: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut out = stdout.map(Lines::new);
    let mut err = stderr.map(Lines::new);
    while out.is_some() || err.is_some() {
        // A stream that ends is dropped and the loop looks again, so that the notes channel
        // (open while the job is supervised) never holds the pump once both have ended.
        let (line, from_stdout) = tokio::select! {
            line = next_line(&mut out), if out.is_some() => match line {
                Some(line) => (line, true),
                None => continue,
            },
            line = next_line(&mut err), if err.is_some() => match line {
                Some(line) => (line, false),
                None => continue,
            },
            Some(note) = notes.recv() => {
                log.note(&note).await;
                continue;
            }
            else => break,
        };
        log.write(&line).await;
        if !from_stdout {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let stored = match parse_report(&text) {
            None => continue,
            Some(Err(problem)) => {
                log.note(&format!("ignored a malformed line: {problem}"))
                    .await;
                continue;
            }
            Some(Ok(Report::Checkpoint(value))) => store.set_checkpoint(&job_id, &value).await,
            Some(Ok(Report::Result(value))) => store.add_result(&job_id, &value).await,
            Some(Ok(Report::Progress(progress))) => store.set_progress(&job_id, &progress).await,
        };
        if let Err(error) = stored {
            tracing::error!(%error, %job_id, "cannot persist a job report");
        }
    }
    log.close().await;
}

/// The next line of a stream; `None` (and the stream dropped) at its end.
async fn next_line<R: tokio::io::AsyncRead + Unpin>(
    lines: &mut Option<Lines<R>>,
) -> Option<Vec<u8>> {
    let line = lines.as_mut()?.next().await;
    if line.is_none() {
        *lines = None;
    }
    line
}
