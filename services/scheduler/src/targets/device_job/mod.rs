//! The `device_job` target: a job queued on a device runner of the configuration with
//! `enqueue_job`, the run's ledger key as its idempotency key (so a redelivery after a crash
//! finds the job the first delivery queued), then followed until it has ended. The jobs
//! followed on one runner are asked about together: one JSON-RPC batch of `get_run` calls per
//! poll. A job stopped and queued again from its checkpoint (preempted, or interrupted by a
//! runner restart) is followed on as the job that continues it.
//!
//! A target that selects a phone by tags (`select`) is placed per occurrence on the
//! [`fleet`]: the chosen runner and phone are written to the occurrence's ledger row before
//! `enqueue_job` is called, so a redelivery goes to the same phone with the same key. With no
//! phone to take it, the occurrence waits (without a dispatch slot) up to its policy's
//! `placement_timeout_secs`. A job placed so that waits on a phone that was quarantined is
//! taken back (`cancel_job`, which only a pending job passes) and placed again elsewhere.

mod fleet;
mod ledger;
mod placement;

pub(crate) use fleet::{Choice, Fleet};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use device_runner_api::{Job, JobStatus, RunnerError};
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient};
use jobstore::{
    JobStore, RunFilter, RunNote, RunOutcome, RunPlacement, RunRecord, RunStatus, Target,
};
use scheduler_api::DeviceJobTarget;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use service_kit::config::duration;
use service_kit::traces::TRACEPARENT;
use tokio::sync::oneshot;

use super::{Configured, Ended, Followed, Kind, Notes, Targets};
use crate::endpoint::{DispatchError, Endpoint, truncate};
use crate::outbound::default_timeout;
use crate::stores::Stores;

/// How long a runner may take to check a job for a caller of the API.
const CHECK_WITHIN: Duration = Duration::from_secs(5);

/// A device runner, named in `[device_runners.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRunnerConfig {
    /// Its JSON-RPC URL.
    pub url: String,
    /// Its `auth.token`, sent as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Per-call timeout.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// How often the state of the jobs queued there is asked for (one batch request for all
    /// of them), and its phones' (`get_status`): a device job's run ends at most this long
    /// after its job.
    #[serde(default = "default_job_poll", with = "duration")]
    pub poll: Duration,
    /// Its `auth.admin_token`, for quarantining and releasing its phones through the
    /// scheduler (`quarantine_device`, `release_device`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
}

impl DeviceRunnerConfig {
    /// Checks `[device_runners.<name>]`.
    pub(crate) fn validate(&self, name: &str) -> anyhow::Result<()> {
        service_kit::config::check_http_url(&format!("device_runners.{name}.url"), &self.url)?;
        if self.timeout.is_zero() || self.poll < Duration::from_millis(50) {
            anyhow::bail!(
                "device_runners.{name}: timeout must be more than 0s and poll at least 50ms"
            );
        }
        Ok(())
    }
}

fn default_job_poll() -> Duration {
    Duration::from_secs(2)
}

#[async_trait]
impl Kind for DeviceJobTarget {
    fn check(&self, configured: &Configured) -> Result<(), String> {
        match &self.select {
            Some(select) => match &select.runner {
                Some(runner) => Configured::lookup(
                    "target.select.runner",
                    runner,
                    "device_runners",
                    &configured.runners,
                ),
                None if configured.runners.is_empty() => Err(
                    "target.select places jobs on the device runners, and the scheduler has no \
                     [device_runners]"
                        .into(),
                ),
                None => Ok(()),
            },
            None => Configured::lookup(
                "target.runner",
                &self.runner,
                "device_runners",
                &configured.runners,
            ),
        }
    }

    /// A runner that cannot be asked (down, or refusing the scheduler's token) does not stop
    /// the schedule from being stored: its job is checked again when it is queued, and a
    /// refusal then is a `failed` run with the runner's reason.
    async fn admit(&self, targets: &Targets) -> Result<(), String> {
        // A phone is chosen per occurrence: there is none to check the job with yet.
        if self.select.is_some() {
            return Ok(());
        }
        let runner = &self.runner;
        match targets.devices.check(self).await {
            JobCheck::Taken => Ok(()),
            JobCheck::Refused(reason) => Err(format!(
                "target: device runner '{runner}' would not queue this job: {reason}"
            )),
            JobCheck::Unasked(why) => {
                tracing::warn!(%runner, %why, "the device job could not be checked with its runner; stored unchecked");
                Ok(())
            }
        }
    }

    /// Queues the run's job; answers the job as the runner has it (the one an earlier delivery
    /// of the same run queued, if there was one). An occurrence to place is placed first
    /// (the answer then names the runner); with no phone to take it, the answer says so and
    /// the run waits for one in [`Kind::follow`].
    async fn send(&self, run: &RunRecord, targets: &Targets) -> Result<Value, DispatchError> {
        let devices = &targets.devices;
        if self.select.is_none() {
            return devices.enqueue(self, run).await;
        }
        let (placed, choice) = match self.placed() {
            // Placed by an earlier delivery: the same phone, the same key.
            Some(_) => (self.clone(), None),
            None => match devices.place(self, run, None).await? {
                Ok(placed) => placed,
                Err(reason) => return Ok(json!({ WAITING: reason })),
            },
        };
        let answer = devices.enqueue_placed(&placed, run).await;
        devices.settle(choice, answer.is_ok());
        answer
    }

    /// The run ends with its job on the runner.
    async fn follow(&self, run: &RunRecord, followed: Followed<'_>) -> Ended {
        if self.select.is_some() {
            return placement::follow(self, run, followed).await;
        }
        let outcome = followed.outcome;
        let Some(job) = followed.answer else {
            return Ended::from(outcome);
        };
        let job_id = match job_id(&self.runner, &job) {
            Ok(id) => id,
            Err(detail) => {
                return Ended::from(RunOutcome {
                    status: RunStatus::Failed,
                    detail: Some(detail),
                    ..outcome
                });
            }
        };
        let (status, detail) = follow_job(
            run,
            followed.targets,
            followed.notes,
            &self.runner,
            &job_id,
            false,
        )
        .await
        .settled();
        Ended::from(RunOutcome {
            status,
            detail: Some(detail),
            finished_at: Utc::now(),
            ..outcome
        })
    }
}

/// The answer of a `device_job` occurrence that found no phone to take it, with the reason.
const WAITING: &str = "waiting_for_phone";

/// The placement of a run as its ledger row has it, while the run is pending.
async fn placed_in_ledger(store: &dyn JobStore, run: &RunRecord) -> Option<DeviceJobTarget> {
    let filter = RunFilter {
        since: Some(run.scheduled_time),
        ..RunFilter::latest(1000)
    };
    let rows = store.runs(&run.schedule_id, &filter).await.ok()?;
    let row = rows
        .into_iter()
        .find(|row| row.scheduled_time == run.scheduled_time)?;
    match row.target {
        Target::DeviceJob(job) if row.status == RunStatus::Pending && job.placed().is_some() => {
            Some(job)
        }
        _ => None,
    }
}

/// The id of the job a runner answered `enqueue_job` with, or the run's failure.
fn job_id(runner: &str, job: &Value) -> Result<String, String> {
    job.get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "device runner '{runner}' answered enqueue_job without a job id: {}",
                truncate(&job.to_string(), 300)
            )
        })
}

/// How following a job ended.
enum Follow {
    /// It ended, as the runner has it.
    Ended(Job),
    /// It waits on a phone that was quarantined (only for a job placed by tags).
    Quarantined(Job),
    Failed(String),
}

impl Follow {
    /// The run's status and detail, for a job that ended or could not be followed.
    fn settled(self) -> (RunStatus, String) {
        match self {
            Follow::Ended(job) | Follow::Quarantined(job) => outcome_of(&job),
            Follow::Failed(detail) => (RunStatus::Failed, detail),
        }
    }
}

/// Notes the queued job in the ledger and follows it until it ends (or, when `movable`, until
/// it waits on a quarantined phone).
async fn follow_job(
    run: &RunRecord,
    targets: &Targets,
    notes: &Notes,
    runner: &str,
    job_id: &str,
    movable: bool,
) -> Follow {
    tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, %runner, job_id, "device job queued; following it until it ends");
    // The ledger shows the job while it runs, noted with the others queued meanwhile.
    let note = RunNote {
        schedule_id: run.schedule_id.clone(),
        scheduled_time: run.scheduled_time,
        detail: format!("job {job_id} queued on device runner '{runner}'"),
    };
    let _ = notes.send((run.jobstore, note));
    let followed = match targets.devices.ended(runner, job_id, movable).await {
        Ok(job) if !job.status.is_finished() => Follow::Quarantined(job),
        Ok(job) => Follow::Ended(job),
        Err(error) => Follow::Failed(format!("job {job_id}: {error}")),
    };
    if let Follow::Ended(job) = &followed {
        tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, job_id, status = %job.status, "device job ended");
    }
    followed
}

/// The configured device runners, by name.
pub struct DeviceRunners {
    runners: HashMap<String, Arc<Runner>>,
    /// Every runner's phones, for `list_fleet` and placements.
    pub(crate) fleet: Arc<Fleet>,
    /// The ledger, where an occurrence's placement is written before its job is queued.
    ledger: Stores,
    /// The writer of placements.
    placements: ledger::Placements,
}

/// Who waits for a job's end: and whether they want to hear of it waiting on a quarantined
/// phone (a job placed by tags, to be moved).
struct Waiter {
    tell: oneshot::Sender<Result<Job, DispatchError>>,
    movable: bool,
}

type Waiters = HashMap<String, Vec<Waiter>>;

struct Runner {
    name: String,
    endpoint: Endpoint,
    /// The typed client, for the checks whose refusals are the caller's to read.
    client: DeviceRunnerClient,
    /// A client with the runner's admin token, when one is configured.
    admin: Option<DeviceRunnerClient>,
    poll: Duration,
    /// The jobs followed, by id, with who waits for each one's end.
    followed: Mutex<Waiters>,
    polling: AtomicBool,
}

impl DeviceRunners {
    pub fn new(
        config: &BTreeMap<String, DeviceRunnerConfig>,
        ledger: Stores,
    ) -> anyhow::Result<Self> {
        let mut runners = HashMap::new();
        let mut followed = Vec::new();
        for (name, runner) in config {
            let http = reqwest::Client::builder().timeout(runner.timeout).build()?;
            let endpoint = Endpoint::new(http, format!("device runner '{name}'"), &runner.url)
                .with_token(runner.token.clone());
            let client = DeviceRunnerClient::with_options(
                &runner.url,
                runner.timeout,
                runner.token.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("device_runners.{name}: {e}"))?;
            let admin = runner
                .admin_token
                .as_deref()
                .map(|token| {
                    DeviceRunnerClient::with_options(&runner.url, runner.timeout, Some(token))
                })
                .transpose()
                .map_err(|e| anyhow::anyhow!("device_runners.{name}: {e}"))?;
            followed.push((name.clone(), client.clone(), runner.poll));
            runners.insert(
                name.clone(),
                Arc::new(Runner {
                    name: name.clone(),
                    endpoint,
                    client,
                    admin,
                    poll: runner.poll,
                    followed: Mutex::default(),
                    polling: AtomicBool::new(false),
                }),
            );
        }
        Ok(DeviceRunners {
            runners,
            fleet: Arc::new(Fleet::new(followed)),
            placements: ledger::Placements::new(ledger.clone()),
            ledger,
        })
    }

    fn runner(&self, name: &str) -> Result<&Arc<Runner>, DispatchError> {
        self.runners.get(name).ok_or_else(|| {
            DispatchError::Rejected(format!(
                "device runner '{name}' is not configured (add [device_runners.{name}])"
            ))
        })
    }

    /// Queues the run's job; returns the job as the runner answered (the one an earlier
    /// delivery of the same run queued, if there was one).
    pub async fn enqueue(
        &self,
        job: &DeviceJobTarget,
        run: &RunRecord,
    ) -> Result<Value, DispatchError> {
        let mut params = job_params(job);
        params.insert(
            "source".into(),
            format!("schedule {}", run.schedule_id).into(),
        );
        params.insert(
            "idempotency_key".into(),
            job.job_key(&run.idempotency_key()).into(),
        );
        // The occurrence's trace, which the runner continues for the job.
        if let Some(traceparent) = service_kit::traces::traceparent() {
            params.insert(TRACEPARENT.into(), traceparent.into());
        }
        self.runner(&job.runner)?
            .endpoint
            .call("enqueue_job", Value::Object(params))
            .await
    }

    /// Queues the job of an occurrence placed by tags on its phone; the answer is the job with
    /// the runner it went to (`runner`) and how often it was moved (`moves`).
    pub(crate) async fn enqueue_placed(
        &self,
        placed: &DeviceJobTarget,
        run: &RunRecord,
    ) -> Result<Value, DispatchError> {
        let mut job = self.enqueue(placed, run).await?;
        if let Some(fields) = job.as_object_mut() {
            fields.insert("runner".into(), placed.runner.clone().into());
            fields.insert("moves".into(), placed.moves.into());
        }
        Ok(job)
    }

    /// Places an occurrence of `job` (a target that selects by tags; `job` as its ledger row
    /// has it, placed already when it is being moved): chooses a phone and writes the choice
    /// to the occurrence's ledger row. The placed target, with the choice to settle once its
    /// job is queued ([`DeviceRunners::settle`]); `Ok(Err(reason))` when no phone can take
    /// it; an error when the ledger cannot be written (the run is retried). When the row was
    /// placed meanwhile (an earlier attempt of this delivery, or another delivery), that
    /// placement is the one taken.
    pub(crate) async fn place(
        &self,
        job: &DeviceJobTarget,
        run: &RunRecord,
        moved_from: Option<(&str, &str)>,
    ) -> Result<Result<(DeviceJobTarget, Option<Choice>), String>, DispatchError> {
        let store = self.ledger.get(run.jobstore).ok_or_else(|| {
            DispatchError::Rejected(format!(
                "jobstore {} is not served here",
                run.jobstore.as_str()
            ))
        })?;
        let Some(select) = &job.select else {
            return Ok(Ok((job.clone(), None)));
        };
        let placing = std::time::Instant::now();
        let choice = match self.fleet.choose(select, moved_from).await {
            Ok(choice) => choice,
            Err(reason) => return Ok(Err(reason)),
        };
        let placed = DeviceJobTarget {
            runner: choice.runner.clone(),
            device: Some(choice.serial.clone()),
            moves: job.moves + u32::from(moved_from.is_some()),
            ..job.clone()
        };
        let detail = match moved_from {
            None => format!(
                "placed on phone {} of device runner '{}'",
                choice.serial, choice.runner
            ),
            Some((runner, serial)) => format!(
                "moved from phone {serial} of device runner '{runner}' (quarantined) to phone {} \
                 of device runner '{}'",
                choice.serial, choice.runner
            ),
        };
        let placement = RunPlacement {
            schedule_id: run.schedule_id.clone(),
            scheduled_time: run.scheduled_time,
            expected: Target::DeviceJob(job.clone()).placement(),
            target: Target::DeviceJob(placed.clone()),
            detail,
        };
        match self.placements.write(run.jobstore, placement).await {
            Ok(true) => {
                crate::telemetry::placed(placing.elapsed());
                tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, runner = %choice.runner, device = %choice.serial, moves = placed.moves, "device job placed");
                Ok(Ok((placed, Some(choice))))
            }
            Ok(false) => {
                self.fleet.dropped(&choice);
                match placed_in_ledger(store.as_ref(), run).await {
                    Some(placed) => Ok(Ok((placed, None))),
                    None => Err(DispatchError::Rejected(
                        "the occurrence has ended meanwhile".into(),
                    )),
                }
            }
            Err(error) => {
                self.fleet.dropped(&choice);
                Err(DispatchError::Unreachable(format!(
                    "cannot write the placement to the ledger: {error}"
                )))
            }
        }
    }

    /// A placed job was queued (its phone's load is the runner's to count now), or not.
    pub(crate) fn settle(&self, choice: Option<Choice>, queued: bool) {
        match (choice, queued) {
            (Some(choice), true) => self.fleet.queued(&choice),
            (Some(choice), false) => self.fleet.dropped(&choice),
            (None, _) => {}
        }
    }

    /// Cancels a job only while it waits (`cancel_job`): true when it was cancelled.
    pub(crate) async fn take_back(
        &self,
        runner: &str,
        job_id: &str,
    ) -> Result<bool, DispatchError> {
        let runner = self.runner(runner)?;
        match runner.client.rpc().cancel_job(job_id.to_string()).await {
            Ok(_) => Ok(true),
            Err(error) => match device_runner_client::Error::from(error) {
                device_runner_client::Error::Runner(RunnerError::Conflict(_)) => Ok(false),
                other => Err(DispatchError::Unreachable(other.to_string())),
            },
        }
    }

    /// Quarantines or releases (`reason` `None`) a phone through its runner, with the
    /// runner's admin token; the phone as the fleet then sees it.
    pub(crate) async fn set_quarantine(
        &self,
        runner_name: &str,
        serial: &str,
        quarantine: Option<Option<String>>,
    ) -> Result<(), String> {
        let runner = self.runner(runner_name).map_err(|e| e.to_string())?;
        let Some(admin) = &runner.admin else {
            return Err(format!(
                "device runner '{runner_name}' has no admin_token in [device_runners.{runner_name}]: \
                 the scheduler cannot quarantine or release its phones"
            ));
        };
        let answer = match quarantine {
            Some(reason) => {
                admin
                    .rpc()
                    .quarantine_device(serial.to_string(), reason)
                    .await
            }
            None => admin.rpc().release_device(serial.to_string()).await,
        };
        answer.map_err(|e| {
            format!(
                "device runner '{runner_name}': {}",
                device_runner_client::Error::from(e)
            )
        })?;
        self.fleet.refresh_now(runner_name).await;
        Ok(())
    }

    /// Whether the runner a `device_job` target names would queue its job (`check_job`: its
    /// job type, device or pool, priority, params and maximum duration).
    pub async fn check(&self, job: &DeviceJobTarget) -> JobCheck {
        let Ok(runner) = self.runner(&job.runner) else {
            return JobCheck::Refused(format!("device runner '{}' is not configured", job.runner));
        };
        let asked = runner.client.rpc().check_job(
            job.device.clone(),
            job.job_type.clone(),
            Some(Value::Object(job.params.clone())),
            Some(i64::from(job.priority)),
            job.max_duration.clone().map(Value::from),
            job.pool.clone(),
        );
        // A caller waits for this answer: a runner that does not give it soon counts as one
        // that cannot be asked.
        let Ok(answer) = tokio::time::timeout(CHECK_WITHIN, asked).await else {
            return JobCheck::Unasked(format!("no answer within {CHECK_WITHIN:?}"));
        };
        match answer.map_err(device_runner_client::Error::from) {
            Ok(_) => JobCheck::Taken,
            Err(device_runner_client::Error::Runner(RunnerError::Value(message))) => {
                JobCheck::Refused(message)
            }
            Err(other) => JobCheck::Unasked(other.to_string()),
        }
    }

    /// Waits until job `job_id` on `runner` has ended, and returns it as it ended; with
    /// `movable`, also returns it (pending) when it waits on a quarantined phone.
    pub async fn ended(
        &self,
        runner: &str,
        job_id: &str,
        movable: bool,
    ) -> Result<Job, DispatchError> {
        let runner = self.runner(runner)?.clone();
        let (tell, told) = oneshot::channel();
        lock(&runner.followed)
            .entry(job_id.to_string())
            .or_default()
            .push(Waiter { tell, movable });
        if !runner.polling.swap(true, Ordering::AcqRel) {
            tokio::spawn(poll(runner.clone()));
        }
        told.await
            .unwrap_or_else(|_| Err(DispatchError::Unreachable("the poller stopped".into())))
    }
}

/// What a runner says of a job it is asked to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCheck {
    /// It would queue it.
    Taken,
    /// It would refuse it, for this reason (naming the devices or job types it knows).
    Refused(String),
    /// It could not be asked (down, or it refused the call itself), for this reason.
    Unasked(String),
}

/// The named params `enqueue_job` takes for a `device_job` target's job.
fn job_params(job: &DeviceJobTarget) -> Map<String, Value> {
    let params = [
        ("device", json!(job.device)),
        ("pool", json!(job.pool)),
        ("job_type", json!(job.job_type)),
        ("params", json!(job.params)),
        ("priority", json!(job.priority)),
        ("max_duration", json!(job.max_duration)),
    ];
    params
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Asks the runner, every `poll`, how the followed jobs stand, and tells the waiters of each
/// one that has ended. A runner that cannot be reached is asked again at the next poll.
async fn poll(runner: Arc<Runner>) {
    let mut tick = tokio::time::interval(runner.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ids: Vec<String> = lock(&runner.followed).keys().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        let calls: Vec<(&str, Value)> = ids
            .iter()
            .map(|id| ("get_run", json!({"run_id": id})))
            .collect();
        let answers = match runner.endpoint.call_batch(&calls).await {
            Ok(answers) => answers,
            Err(error) => {
                tracing::warn!(runner = %runner.name, %error, jobs = ids.len(), "cannot ask the device runner about its jobs; asking again");
                continue;
            }
        };
        for (id, answer) in ids.iter().zip(answers) {
            let settled = match answer {
                Ok(value) => match serde_json::from_value::<Job>(value) {
                    // Stopped and queued again from its checkpoint: its work goes on there.
                    Ok(Job {
                        continued_by: Some(next),
                        status,
                        ..
                    }) if status.is_finished() => {
                        tracing::info!(runner = %runner.name, job_id = %id, %status, continued_by = %next, "device job continues as another job; following that one");
                        let mut followed = lock(&runner.followed);
                        let waiters = followed.remove(id).unwrap_or_default();
                        followed.entry(next).or_default().extend(waiters);
                        None
                    }
                    Ok(job) if job.status.is_finished() => Some(Ok(job)),
                    // Waiting on a quarantined phone: those who would move it hear of it.
                    Ok(job)
                        if job.status == JobStatus::Pending
                            && job
                                .waiting
                                .as_deref()
                                .is_some_and(|w| w.starts_with("quarantined")) =>
                    {
                        let mut followed = lock(&runner.followed);
                        let waiters = followed.entry(id.clone()).or_default();
                        let (movers, others): (Vec<_>, Vec<_>) =
                            std::mem::take(waiters).into_iter().partition(|w| w.movable);
                        *waiters = others;
                        if waiters.is_empty() {
                            followed.remove(id);
                        }
                        drop(followed);
                        for mover in movers {
                            let _ = mover.tell.send(Ok(job.clone()));
                        }
                        None
                    }
                    Ok(_) => None,
                    Err(error) => Some(Err(DispatchError::Rejected(format!(
                        "device runner '{}' answered get_run with something that is not a job: {error}",
                        runner.name
                    )))),
                },
                Err(error @ DispatchError::Rejected(_)) => Some(Err(error)),
                Err(DispatchError::Unreachable(_)) => None,
            };
            let Some(settled) = settled else {
                continue;
            };
            let waiters = lock(&runner.followed).remove(id).unwrap_or_default();
            for waiter in waiters {
                let _ = waiter.tell.send(settled.clone());
            }
        }
    }
}

/// How a device job's run ends in the ledger: `dispatched` when its job completed, `failed`
/// otherwise; the detail names the job, how it ended, its exit code and duration.
pub(crate) fn outcome_of(job: &Job) -> (RunStatus, String) {
    let mut detail = format!("job {} on {}: {}", job.id, job.device, job.status);
    if let Some(error) = &job.error {
        detail.push_str(&format!(" ({error})"));
    }
    if let Some(code) = job.exit_code {
        detail.push_str(&format!(", exit code {code}"));
    }
    if let Some(secs) = job.duration_secs {
        detail.push_str(&format!(", {secs:.1} s"));
    }
    let status = if job.status == JobStatus::Completed {
        RunStatus::Dispatched
    } else {
        RunStatus::Failed
    };
    (status, detail)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
