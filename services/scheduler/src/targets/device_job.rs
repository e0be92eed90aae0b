//! The `device_job` target: a job queued on a device runner of the configuration with
//! `enqueue_job`, the run's ledger key as its idempotency key (so a redelivery after a crash
//! finds the job the first delivery queued), then followed until it has ended. The jobs
//! followed on one runner are asked about together: one JSON-RPC batch of `get_run` calls per
//! poll. A job stopped and queued again from its checkpoint (preempted, or interrupted by a
//! runner restart) is followed on as the job that continues it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use device_runner_api::{Job, JobStatus, RunnerError};
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient};
use jobstore::{RunNote, RunOutcome, RunRecord, RunStatus};
use scheduler_api::DeviceJobTarget;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use service_kit::config::duration;
use tokio::sync::oneshot;

use super::{Configured, Ended, Followed, Kind, Targets};
use crate::endpoint::{DispatchError, Endpoint, truncate};
use crate::outbound::default_timeout;

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
    /// of them): a device job's run ends at most this long after its job.
    #[serde(default = "default_job_poll", with = "duration")]
    pub poll: Duration,
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
        Configured::lookup(
            "target.runner",
            &self.runner,
            "device_runners",
            &configured.runners,
        )
    }

    /// A runner that cannot be asked (down, or refusing the scheduler's token) does not stop
    /// the schedule from being stored: its job is checked again when it is queued, and a
    /// refusal then is a `failed` run with the runner's reason.
    async fn admit(&self, targets: &Targets) -> Result<(), String> {
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
    /// of the same run queued, if there was one).
    async fn send(&self, run: &RunRecord, targets: &Targets) -> Result<Value, DispatchError> {
        targets.devices.enqueue(self, run).await
    }

    /// The run ends with its job on the runner.
    async fn follow(&self, run: &RunRecord, followed: Followed<'_>) -> Ended {
        let outcome = followed.outcome;
        let Some(job) = followed.answer else {
            return Ended::from(outcome);
        };
        let runner = &self.runner;
        let Some(job_id) = job.get("id").and_then(Value::as_str) else {
            return Ended::from(RunOutcome {
                status: RunStatus::Failed,
                detail: Some(format!(
                    "device runner '{runner}' answered enqueue_job without a job id: {}",
                    truncate(&job.to_string(), 300)
                )),
                ..outcome
            });
        };
        tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, %runner, job_id, "device job queued; following it until it ends");
        // The ledger shows the job while it runs, noted with the others queued meanwhile.
        let note = RunNote {
            schedule_id: run.schedule_id.clone(),
            scheduled_time: run.scheduled_time,
            detail: format!("job {job_id} queued on device runner '{runner}'"),
        };
        let _ = followed.notes.send((run.jobstore, note));
        let (status, detail) = match followed.targets.devices.ended(runner, job_id).await {
            Ok(job) => outcome_of(&job),
            Err(error) => (RunStatus::Failed, format!("job {job_id}: {error}")),
        };
        tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, job_id, status = status.as_str(), %detail, "device job ended");
        Ended::from(RunOutcome {
            status,
            detail: Some(detail),
            finished_at: Utc::now(),
            ..outcome
        })
    }
}

/// The configured device runners, by name.
pub struct DeviceRunners {
    runners: HashMap<String, Arc<Runner>>,
}

type Waiters = HashMap<String, Vec<oneshot::Sender<Result<Job, DispatchError>>>>;

struct Runner {
    name: String,
    endpoint: Endpoint,
    /// The typed client, for the checks whose refusals are the caller's to read.
    client: DeviceRunnerClient,
    poll: Duration,
    /// The jobs followed, by id, with who waits for each one's end.
    followed: Mutex<Waiters>,
    polling: AtomicBool,
}

impl DeviceRunners {
    pub fn new(config: &BTreeMap<String, DeviceRunnerConfig>) -> anyhow::Result<Self> {
        let mut runners = HashMap::new();
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
            runners.insert(
                name.clone(),
                Arc::new(Runner {
                    name: name.clone(),
                    endpoint,
                    client,
                    poll: runner.poll,
                    followed: Mutex::default(),
                    polling: AtomicBool::new(false),
                }),
            );
        }
        Ok(DeviceRunners { runners })
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
        params.insert("idempotency_key".into(), run.idempotency_key().into());
        self.runner(&job.runner)?
            .endpoint
            .call("enqueue_job", Value::Object(params))
            .await
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

    /// Waits until job `job_id` on `runner` has ended, and returns it as it ended.
    pub async fn ended(&self, runner: &str, job_id: &str) -> Result<Job, DispatchError> {
        let runner = self.runner(runner)?.clone();
        let (tell, told) = oneshot::channel();
        lock(&runner.followed)
            .entry(job_id.to_string())
            .or_default()
            .push(tell);
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
                let _ = waiter.send(settled.clone());
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
