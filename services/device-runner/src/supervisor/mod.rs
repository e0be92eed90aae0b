//! One supervisor per device and per pool: starts its queue's jobs (one at a time on a device,
//! up to the pool's concurrency in a pool), watches the running ones, and stops one (SIGTERM
//! to its process group, the kill grace, SIGKILL) when it runs too long, is preempted, killed,
//! loses its device, or the runner shuts down. It waits on events only: a command, a process's
//! exit, the nearest deadline, or the end of the preemption grace.
//!
//! Split by verb, as pueue's process handler is: [`launch`] starts a job, [`stop`] stops one
//! for a reason, [`finish`] records how it ended.

mod finish;
mod launch;
mod stop;

use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use device_runner_api::{DeviceInfo, Job, Quarantine, RunnerError};
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
    /// Where a phone quarantined after failures is told of (to the health task).
    pub quarantine_notices: mpsc::UnboundedSender<(String, Quarantine)>,
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
    /// Lines from the runner for the job's log, written by its pump.
    notes: mpsc::UnboundedSender<String>,
    /// The run's span in the job's trace, closed when it ends.
    span: tracing::Span,
}

pub struct Supervisor {
    context: Context,
    /// The queue: a device's serial, or `pool:<name>`.
    serial: String,
    /// How many of its jobs run at once: 1 on a device.
    slots: usize,
    usable: bool,
    /// The health gate it is outside of.
    gate: Option<String>,
    quarantine: Option<Quarantine>,
    commands: mpsc::UnboundedReceiver<Command>,
    view: Arc<Mutex<RunningView>>,
    running: Vec<Running>,
}

impl Supervisor {
    pub fn new(
        context: Context,
        info: &DeviceInfo,
        slots: usize,
        commands: mpsc::UnboundedReceiver<Command>,
        view: Arc<Mutex<RunningView>>,
    ) -> Self {
        Supervisor {
            context,
            serial: info.serial.clone(),
            slots: slots.max(1),
            usable: info.usable,
            gate: None,
            quarantine: info.quarantine.clone(),
            commands,
            view,
            running: Vec::new(),
        }
    }

    fn full(&self) -> bool {
        self.running.len() >= self.slots
    }

    /// Why it starts no new job although its device is usable: quarantined, or outside a
    /// health gate.
    fn held(&self) -> Option<String> {
        crate::health::held(self.quarantine.as_ref(), self.gate.as_deref())
    }

    /// Writes why its pending jobs wait, or that they no longer do.
    async fn write_waiting(&self) {
        let held = self.held();
        if let Err(error) = self
            .context
            .store
            .set_waiting(&self.serial, held.as_deref())
            .await
        {
            tracing::error!(%error, device = %self.serial, "cannot record why its jobs wait");
        }
    }

    /// Where job `job_id` is among the running ones.
    fn position(&self, job_id: &str) -> Option<usize> {
        self.running.iter().position(|r| r.job.id == job_id)
    }

    pub async fn run(mut self) {
        // The queue is looked at for a job to preempt only when it changed (a wake-up) or a
        // grace ended: a job just started is the queue's first, so nothing waits above it.
        let mut look_for_preemption = false;
        let mut preempt_at = None;
        match self.context.store.last_ended(&self.serial).await {
            Ok(last) => {
                self.view
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_ended = last
            }
            Err(error) => {
                tracing::warn!(%error, device = %self.serial, "cannot read when its last job ended")
            }
        }
        if self.held().is_some() {
            self.write_waiting().await;
        }
        loop {
            if !self.full() {
                // A free slot: what waits starts, nothing needs preempting.
                preempt_at = None;
                if self.usable && self.held().is_none() {
                    self.start_next().await;
                }
            }
            if std::mem::take(&mut look_for_preemption) && self.full() {
                preempt_at = self.preemption_check().await;
                if !self.full() {
                    // Preempted: start the job that preempted it.
                    continue;
                }
            }
            let deadline = self.running.iter().map(|r| r.deadline).min();
            let event = {
                let exit = async {
                    if self.running.is_empty() {
                        return std::future::pending().await;
                    }
                    let waits = self.running.iter_mut().enumerate().map(|(at, running)| {
                        Box::pin(async move { (at, running.child.wait().await) })
                    });
                    futures::future::select_all(waits).await.0
                };
                tokio::select! {
                    command = self.commands.recv() => Event::Command(command),
                    (at, status) = exit => Event::Exited(at, status),
                    _ = sleep_until(deadline) => Event::Deadline,
                    _ = sleep_until(preempt_at) => Event::Recheck,
                }
            };
            match event {
                Event::Command(None) => return,
                Event::Command(Some(Command::Wake)) | Event::Recheck => {
                    look_for_preemption = true;
                    // A job queued while it is held is told why it waits.
                    if self.held().is_some() {
                        self.write_waiting().await;
                    }
                }
                Event::Command(Some(Command::Gate(gate))) => {
                    self.gate = gate;
                    self.write_waiting().await;
                }
                Event::Command(Some(Command::Quarantine(quarantine))) => {
                    self.quarantine = quarantine;
                    self.write_waiting().await;
                }
                Event::Command(Some(Command::Overheat(reason))) => {
                    while !self.running.is_empty() {
                        self.stop(0, StopReason::Overheated(reason.clone())).await;
                    }
                }
                Event::Command(Some(Command::Kill { job_id, reply })) => {
                    let _ = reply.send(self.kill(&job_id).await);
                }
                Event::Command(Some(Command::Usable(usable, state))) => {
                    self.usable = usable;
                    while !usable && !self.running.is_empty() {
                        self.stop(0, StopReason::DeviceLost(state.clone())).await;
                    }
                }
                Event::Command(Some(Command::Shutdown(done))) => {
                    while !self.running.is_empty() {
                        self.stop(0, StopReason::Shutdown).await;
                    }
                    let _ = done.send(());
                    return;
                }
                Event::Exited(at, status) => self.finish_exited(at, status).await,
                Event::Deadline => {
                    let now = Instant::now();
                    if let Some(at) = self.running.iter().position(|r| r.deadline <= now) {
                        let limit = Duration::from_secs(self.running[at].job.max_duration_secs);
                        self.stop(at, StopReason::Timeout(limit)).await;
                    }
                }
            }
        }
    }

    /// Stops a running job at an operator's word; the job as it is then.
    async fn kill(&mut self, job_id: &str) -> Result<Job, RunnerError> {
        let Some(at) = self.position(job_id) else {
            return Err(RunnerError::Conflict(format!(
                "job {job_id} is not running on {}",
                self.serial
            )));
        };
        self.stop(at, StopReason::Killed).await;
        match self.context.store.get(job_id).await {
            Ok(Some(job)) => Ok(job),
            Ok(None) => Err(RunnerError::Runtime("job record vanished".into())),
            Err(error) => Err(crate::state::storage_error(error)),
        }
    }

    /// With every slot taken, preempts the running job of lowest priority (the latest
    /// started among equals) that is not protected, when a pending one has strictly higher
    /// priority and it is past the grace. Returns when to look again if the grace has not
    /// passed yet.
    async fn preemption_check(&mut self) -> Option<Instant> {
        let (at, running) = self
            .running
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.protected)
            .max_by_key(|(_, r)| (r.job.priority, r.started))?;
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
        self.stop(at, StopReason::Preempted { by: next.id }).await;
        None
    }

    /// Starts pending jobs while slots are free, recording failures to start as failed runs.
    async fn start_next(&mut self) {
        while !self.full() {
            let job = match self.context.store.next_pending(&self.serial).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(%error, device = %self.serial, "cannot read the queue");
                    return;
                }
            };
            match self.launch(job).await {
                Ok(true) => {}
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
    Exited(usize, std::io::Result<ExitStatus>),
    Deadline,
    Recheck,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
