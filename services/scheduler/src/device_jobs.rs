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

use device_runner_api::{Job, JobStatus, RunnerError};
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient};
use jobstore::{RunRecord, RunStatus, Target};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::config::DeviceRunnerConfig;
use crate::endpoint::{DispatchError, Endpoint};

/// How long a runner may take to check a job for a caller of the API.
const CHECK_WITHIN: Duration = Duration::from_secs(5);

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

    pub fn has(&self, name: &str) -> bool {
        self.runners.contains_key(name)
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.runners.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
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
    pub async fn enqueue(&self, run: &RunRecord) -> Result<Value, DispatchError> {
        let job = JobRequest::of(&run.target)
            .ok_or_else(|| DispatchError::Rejected("not a device job".into()))?;
        let mut params = job.params();
        params.insert(
            "source".into(),
            format!("schedule {}", run.schedule_id).into(),
        );
        params.insert("idempotency_key".into(), run.idempotency_key().into());
        self.runner(job.runner)?
            .endpoint
            .call("enqueue_job", Value::Object(params))
            .await
    }

    /// Whether the runner a `device_job` target names would queue its job (`check_job`: its
    /// job type, device or pool, priority, params and maximum duration).
    pub async fn check(&self, target: &Target) -> JobCheck {
        let Some(job) = JobRequest::of(target) else {
            return JobCheck::Taken;
        };
        let Ok(runner) = self.runner(job.runner) else {
            return JobCheck::Refused(format!("device runner '{}' is not configured", job.runner));
        };
        let asked = runner.client.rpc().check_job(
            job.device.clone(),
            job.job_type.to_string(),
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

/// The job a `device_job` target asks of its runner, as `enqueue_job` and `check_job` take it.
struct JobRequest<'a> {
    runner: &'a str,
    device: &'a Option<String>,
    pool: &'a Option<String>,
    job_type: &'a str,
    params: &'a Map<String, Value>,
    priority: u8,
    max_duration: &'a Option<String>,
}

impl<'a> JobRequest<'a> {
    fn of(target: &'a Target) -> Option<Self> {
        let Target::DeviceJob {
            runner,
            device,
            pool,
            job_type,
            params,
            priority,
            max_duration,
        } = target
        else {
            return None;
        };
        Some(JobRequest {
            runner,
            device,
            pool,
            job_type,
            params,
            priority: *priority,
            max_duration,
        })
    }

    /// The named params `enqueue_job` takes for it.
    fn params(&self) -> Map<String, Value> {
        let params = [
            ("device", json!(self.device)),
            ("pool", json!(self.pool)),
            ("job_type", json!(self.job_type)),
            ("params", json!(self.params)),
            ("priority", json!(self.priority)),
            ("max_duration", json!(self.max_duration)),
        ];
        params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
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
pub fn outcome_of(job: &Job) -> (RunStatus, String) {
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
