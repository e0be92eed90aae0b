//! One supervisor per device: starts its queue's jobs one at a time, watches the running one,
//! and stops it (SIGTERM to its process group, the kill grace, SIGKILL) when it runs too long,
//! is preempted, killed, loses its device, or the runner shuts down. It waits on events only:
//! a command, the process's exit, the deadline, or the end of the preemption grace.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use device_runner_api::{Job, JobStatus, RunnerError};
use nix::sys::signal::Signal;
use tokio::process::{Child, Command as Process};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::JobTypeConfig;
use crate::output::{Lines, LogFile, Report, parse_report};
use crate::state::{Command, RunnerState, RunningView};
use crate::store::{Ending, Store};
use crate::{process, telemetry};

/// Why a running job is being stopped.
#[derive(Debug, Clone)]
enum StopReason {
    Timeout(Duration),
    Killed,
    Preempted { by: String },
    DeviceLost(String),
    Shutdown,
}

impl StopReason {
    fn status(&self) -> JobStatus {
        match self {
            StopReason::Timeout(_) => JobStatus::Timeout,
            StopReason::Killed => JobStatus::Killed,
            StopReason::Preempted { .. } => JobStatus::Preempted,
            StopReason::DeviceLost(_) => JobStatus::DeviceLost,
            StopReason::Shutdown => JobStatus::Interrupted,
        }
    }

    fn message(&self) -> String {
        match self {
            StopReason::Timeout(limit) => format!(
                "ran past its max duration of {}",
                humantime::format_duration(*limit)
            ),
            StopReason::Killed => "killed by kill_job".into(),
            StopReason::Preempted { by } => format!("preempted by job {by} of higher priority"),
            StopReason::DeviceLost(state) => format!("the device disappeared ({state})"),
            StopReason::Shutdown => "the runner shut down".into(),
        }
    }
}

struct Running {
    job: Job,
    protected: bool,
    requeue: bool,
    child: Child,
    pgid: i32,
    started: Instant,
    deadline: Instant,
    pump: JoinHandle<()>,
}

pub struct Supervisor {
    runner: Arc<RunnerState>,
    serial: String,
    usable: bool,
    commands: mpsc::UnboundedReceiver<Command>,
    view: Arc<Mutex<RunningView>>,
    running: Option<Running>,
}

impl Supervisor {
    pub fn new(
        runner: Arc<RunnerState>,
        serial: String,
        usable: bool,
        commands: mpsc::UnboundedReceiver<Command>,
        view: Arc<Mutex<RunningView>>,
    ) -> Self {
        Supervisor {
            runner,
            serial,
            usable,
            commands,
            view,
            running: None,
        }
    }

    pub async fn run(mut self) {
        // The queue is looked at for a job to preempt only when it changed (a wake-up) or a
        // grace ended: a job just started is the queue's first, so nothing waits above it.
        let mut look_for_preemption = false;
        let mut preempt_at = None;
        loop {
            if self.running.is_none() {
                preempt_at = None;
                if self.usable {
                    self.start_next().await;
                }
            } else if std::mem::take(&mut look_for_preemption) {
                preempt_at = self.preemption_check().await;
                if self.running.is_none() {
                    // Preempted: start the job that preempted it.
                    continue;
                }
            }
            let deadline = self.running.as_ref().map(|r| r.deadline);
            let event = {
                let exit = async {
                    match self.running.as_mut() {
                        Some(running) => running.child.wait().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    command = self.commands.recv() => Event::Command(command),
                    status = exit => Event::Exited(status),
                    _ = sleep_until(deadline) => Event::Deadline,
                    _ = sleep_until(preempt_at) => Event::Recheck,
                }
            };
            match event {
                Event::Command(None) => return,
                Event::Command(Some(Command::Wake)) | Event::Recheck => look_for_preemption = true,
                Event::Command(Some(Command::Kill { job_id, reply })) => {
                    let answer = match self.running.as_ref() {
                        Some(running) if running.job.id == job_id => {
                            self.stop(StopReason::Killed).await;
                            match self.runner.store.get(&job_id).await {
                                Ok(Some(job)) => Ok(job),
                                Ok(None) => Err(RunnerError::Runtime("job record vanished".into())),
                                Err(error) => Err(crate::state::storage_error(error)),
                            }
                        }
                        _ => Err(RunnerError::Conflict(format!(
                            "job {job_id} is not running on {}",
                            self.serial
                        ))),
                    };
                    let _ = reply.send(answer);
                }
                Event::Command(Some(Command::Usable(usable, state))) => {
                    self.usable = usable;
                    if !usable && self.running.is_some() {
                        self.stop(StopReason::DeviceLost(state)).await;
                    }
                }
                Event::Command(Some(Command::Shutdown(done))) => {
                    if self.running.is_some() {
                        self.stop(StopReason::Shutdown).await;
                    }
                    let _ = done.send(());
                    return;
                }
                Event::Exited(status) => self.finish_exited(status).await,
                Event::Deadline => {
                    let limit = Duration::from_secs(
                        self.running.as_ref().map_or(0, |r| r.job.max_duration_secs),
                    );
                    self.stop(StopReason::Timeout(limit)).await;
                }
            }
        }
    }

    /// Preempts the running job when a pending one has strictly higher priority and the
    /// running one is past the grace and not protected. Returns when to look again if the
    /// grace has not passed yet.
    async fn preemption_check(&mut self) -> Option<Instant> {
        let running = self.running.as_ref()?;
        if running.protected {
            return None;
        }
        let next = match self.runner.store.next_pending(&self.serial).await {
            Ok(next) => next?,
            Err(error) => {
                tracing::error!(%error, device = %self.serial, "cannot read the queue");
                return None;
            }
        };
        if next.priority >= running.job.priority {
            return None;
        }
        let grace_end = running.started + self.runner.config.preempt_grace;
        if Instant::now() < grace_end {
            return Some(grace_end);
        }
        self.stop(StopReason::Preempted { by: next.id }).await;
        None
    }

    /// Starts the next pending job, recording failures to start as failed runs.
    async fn start_next(&mut self) {
        loop {
            let job = match self.runner.store.next_pending(&self.serial).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(%error, device = %self.serial, "cannot read the queue");
                    return;
                }
            };
            match self.start(job).await {
                Ok(true) => return,
                Ok(false) => continue,
                Err(error) => {
                    tracing::error!(%error, device = %self.serial, "cannot start a job");
                    return;
                }
            }
        }
    }

    /// Starts one job. Ok(false): it did not start (recorded as failed, or taken meanwhile).
    async fn start(&mut self, job: Job) -> Result<bool, crate::store::StoreError> {
        let store = &self.runner.store;
        let log_path = self.runner.log_path(&self.serial, &job.id);
        if !store
            .start(&job.id, Utc::now(), &log_path.display().to_string())
            .await?
        {
            return Ok(false);
        }
        let job_type = self.runner.config.job_types.get(&job.job_type).cloned();
        let (mut log, progress) =
            match LogFile::create(&log_path, self.runner.config.log_cap_bytes).await {
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
        let mut command = build_command(&job_type, &job);
        let mut child = match command.spawn() {
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
        let identity = process::identify(pid).unwrap_or(crate::store::ProcessIdentity {
            pid,
            pgid: pid,
            start_ticks: 0,
            boot_id: process::boot_id(),
        });
        store.record_process(&job.id, &identity).await?;
        self.runner
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id.clone(), progress);
        let pump = tokio::spawn(pump_output(
            store.clone(),
            job.id.clone(),
            child.stdout.take(),
            child.stderr.take(),
            log,
        ));
        tracing::info!(job_id = %job.id, device = %self.serial, job_type = %job.job_type, pid, "job started");
        let waited = (Utc::now() - job.enqueued_at).to_std().unwrap_or_default();
        telemetry::job_started(&job.job_type, waited);
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = RunningView {
            job_id: Some(job.id.clone()),
            pid: Some(pid),
        };
        let now = Instant::now();
        self.running = Some(Running {
            protected: job_type.protected,
            requeue: job_type.requeue_on_preempt,
            deadline: now + Duration::from_secs(job.max_duration_secs),
            job,
            child,
            pgid: identity.pgid,
            started: now,
            pump,
        });
        Ok(true)
    }

    /// Stops the running job for `reason` and records it.
    async fn stop(&mut self, reason: StopReason) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        tracing::info!(job_id = %running.job.id, device = %self.serial, reason = %reason.message(), "stopping job");
        process::signal_group(running.pgid, Signal::SIGTERM);
        let status = match tokio::time::timeout(self.runner.config.kill_grace, running.child.wait())
            .await
        {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(job_id = %running.job.id, "job ignored SIGTERM; sending SIGKILL");
                process::signal_group(running.pgid, Signal::SIGKILL);
                running.child.wait().await
            }
        };
        let status = status.ok();
        self.finish(running, status, Some(reason)).await
    }

    async fn finish_exited(&mut self, status: std::io::Result<ExitStatus>) {
        if let Some(running) = self.running.take() {
            self.finish(running, status.ok(), None).await;
        }
    }

    /// Kills what is left of the group, waits for the output, and records the end.
    async fn finish(
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
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = RunningView::default();
        let job = running.job;
        let exit_code = status.and_then(|s| s.code());
        let signal = status.and_then(|s| s.signal());
        let (status_kind, error) = match &reason {
            Some(reason) => (reason.status(), Some(reason.message())),
            None => match (exit_code, signal) {
                (Some(0), _) => (JobStatus::Completed, None),
                (Some(code), _) => (JobStatus::Failed, Some(format!("exited with code {code}"))),
                (None, Some(signal)) => (
                    JobStatus::Failed,
                    Some(format!(
                        "killed by signal {signal} ({})",
                        signal_name(signal)
                    )),
                ),
                (None, None) => (JobStatus::Failed, Some("exit status unknown".into())),
            },
        };
        let preempted_by = match &reason {
            Some(StopReason::Preempted { by }) => Some(by.clone()),
            _ => None,
        };
        let mut ending = Ending {
            status: status_kind,
            ended_at: Utc::now(),
            exit_code,
            signal,
            error,
            preempted_by,
        };
        let store = &self.runner.store;
        let requeue = match &reason {
            Some(StopReason::Preempted { .. }) => running.requeue,
            // A deploy must not lose what a crash keeps: like a restart after SIGKILL, the
            // next start resumes the job from its last checkpoint.
            Some(StopReason::Shutdown) => match store.get(&job.id).await {
                Ok(Some(stored)) => crate::recover::resumes(&self.runner.config, &stored),
                Ok(None) => false,
                Err(error) => {
                    tracing::error!(%error, job_id = %job.id, "cannot read the job's checkpoint");
                    false
                }
            },
            _ => false,
        };
        if requeue && status_kind == JobStatus::Interrupted {
            ending.error = Some(format!(
                "{}; queued again to resume from its last checkpoint at the next start",
                reason.as_ref().map(StopReason::message).unwrap_or_default()
            ));
        }
        record_end(store, &job.id, &ending, requeue).await;
        telemetry::job_finished(
            &job.job_type,
            status_kind.as_str(),
            Some(running.started.elapsed()),
        );
        self.runner
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.id);
        tracing::info!(job_id = %job.id, device = %self.serial, status = %status_kind, "job ended");
    }
}

enum Event {
    Command(Option<Command>),
    Exited(std::io::Result<ExitStatus>),
    Deadline,
    Recheck,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn fail_to_start(
    store: &Store,
    job: &Job,
    message: String,
) -> Result<(), crate::store::StoreError> {
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
    telemetry::job_finished(&job.job_type, JobStatus::Failed.as_str(), None);
    Ok(())
}

/// Records how a job ended; with `requeue`, also queues it again with its last checkpoint, in
/// the same transaction. A failure is logged: the job, still recorded as running, is then
/// settled by the next start-up's reconciliation.
async fn record_end(store: &Store, job_id: &str, ending: &Ending, requeue: bool) {
    let outcome = if requeue {
        let new_id = uuid::Uuid::new_v4().to_string();
        store.finish_and_requeue(job_id, ending, &new_id).await
    } else {
        store.finish(job_id, ending).await.map(|_| None)
    };
    match outcome {
        Ok(Some(queued)) => {
            tracing::info!(job_id, new_job_id = %queued.id, status = %ending.status,
                "job requeued from its last checkpoint");
        }
        Ok(None) => {}
        Err(error) => tracing::error!(%error, job_id, "cannot record the end of a job"),
    }
}

/// The job's process: argv with placeholders filled in, its own process group, the job
/// protocol's environment.
fn build_command(job_type: &JobTypeConfig, job: &Job) -> Process {
    let params_json = job.params.to_string();
    let fill = |arg: &str| {
        arg.replace("{device}", &job.device)
            .replace("{job_id}", &job.id)
            .replace("{params_json}", &params_json)
    };
    let mut command = Process::new(fill(&job_type.argv[0]));
    command
        .args(job_type.argv[1..].iter().map(|arg| fill(arg)))
        .current_dir(&job_type.cwd)
        .envs(&job_type.env)
        .env("JOB_ID", &job.id)
        .env("ANDROID_SERIAL", &job.device)
        .env("JOB_PARAMS", &params_json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    match &job.checkpoint {
        Some(checkpoint) => command.env("JOB_CHECKPOINT", checkpoint.to_string()),
        None => command.env_remove("JOB_CHECKPOINT"),
    };
    command
}

/// Copies stdout and stderr into the log and persists protocol lines from stdout as they come.
async fn pump_output(
    store: Store,
    job_id: String,
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    mut log: LogFile,
) {
    let mut out = stdout.map(Lines::new);
    let mut err = stderr.map(Lines::new);
    loop {
        let (line, from_stdout) = tokio::select! {
            Some(line) = next_line(&mut out) => (line, true),
            Some(line) = next_line(&mut err) => (line, false),
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

fn signal_name(signal: i32) -> &'static str {
    Signal::try_from(signal).map_or("unknown", Signal::as_str)
}
