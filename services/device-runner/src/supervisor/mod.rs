//! One supervisor per device: starts its queue's jobs one at a time, watches the running one,
//! and stops it (SIGTERM to its process group, the kill grace, SIGKILL) when it runs too long,
//! is preempted, killed, loses its device, or the runner shuts down. It waits on events only:
//! a command, the process's exit, the deadline, or the end of the preemption grace.
//!
//! Split by verb, as pueue's process handler is: [`launch`] starts a job, [`stop`] stops one
//! for a reason, [`finish`] records how it ended.

mod finish;
mod launch;
mod stop;

use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use device_runner_api::{Job, RunnerError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Config;
use crate::process::Child;
use crate::state::{Command, LogFollowers, RunningView};
use crate::store::Store;
use stop::StopReason;

/// What a supervisor works with, and nothing more: the store, the configuration, and the
/// logs being written (for followers).
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub config: Arc<Config>,
    pub logs: LogFollowers,
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
    context: Context,
    serial: String,
    usable: bool,
    commands: mpsc::UnboundedReceiver<Command>,
    view: Arc<Mutex<RunningView>>,
    running: Option<Running>,
}

impl Supervisor {
    pub fn new(
        context: Context,
        serial: String,
        usable: bool,
        commands: mpsc::UnboundedReceiver<Command>,
        view: Arc<Mutex<RunningView>>,
    ) -> Self {
        Supervisor {
            context,
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
                            match self.context.store.get(&job_id).await {
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
        let next = match self.context.store.next_pending(&self.serial).await {
            Ok(next) => next?,
            Err(error) => {
                tracing::error!(%error, device = %self.serial, "cannot read the queue");
                return None;
            }
        };
        if next.priority >= running.job.priority {
            return None;
        }
        let grace_end = running.started + self.context.config.preempt_grace;
        if Instant::now() < grace_end {
            return Some(grace_end);
        }
        self.stop(StopReason::Preempted { by: next.id }).await;
        None
    }

    /// Starts the next pending job, recording failures to start as failed runs.
    async fn start_next(&mut self) {
        loop {
            let job = match self.context.store.next_pending(&self.serial).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(%error, device = %self.serial, "cannot read the queue");
                    return;
                }
            };
            match self.launch(job).await {
                Ok(true) => return,
                Ok(false) => continue,
                Err(error) => {
                    tracing::error!(%error, device = %self.serial, "cannot start a job");
                    return;
                }
            }
        }
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
