//! Dispatching a run to its target: JSON-RPC `add_graph_execution` on the execution service for
//! a graph execution, the task's own calls for a system task ([`crate::tasks`]), a call on a
//! configured endpoint or a PUBLISH for the outbound targets ([`crate::targets`]). Retries
//! follow the schedule's policy, defaulting to the executor's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use chrono::{SecondsFormat, Utc};
use jobstore::{RunOutcome, RunRecord, RunStatus, Target};
use serde_json::{Value, json};

use crate::config::Config;
use crate::device_jobs::{DeviceRunners, outcome_of};
use crate::endpoint::{DispatchError, Endpoint, truncate};
use crate::stores::Stores;
use crate::targets::Outbound;
use crate::tasks::{SystemTask, TaskRunner};
use crate::telemetry;
use crate::watches::{self, Watches};
use scheduler_api::CheckResult;

/// How a dispatch ended after all attempts.
pub struct Dispatched {
    /// The target's answer, or the last attempt's error.
    pub result: Result<Value, DispatchError>,
    pub attempts: u32,
}

/// Sends runs to their targets (the execution service, a system task), with the retry policy
/// they share.
pub struct Dispatcher {
    executor: Endpoint,
    tasks: TaskRunner,
    /// The endpoints and the Redis of the outbound targets.
    pub outbound: Arc<Outbound>,
    /// The device runners of `device_job` targets.
    pub devices: DeviceRunners,
    /// The checks and completion sends of watches.
    pub watches: Arc<Watches>,
    /// Graph executions per batch request to the execution service (1: no batching).
    executor_batch: usize,
    retries: u32,
    retry_delay: Duration,
}

impl Dispatcher {
    /// The batch a run may join: the JSON-RPC service it goes to, and the most calls one
    /// request to it carries. `None` for a run sent alone (no batching configured, another
    /// kind of target, or a jittered run, which waits for its own moment).
    pub fn batch_of(&self, run: &RunRecord) -> Option<(String, usize)> {
        if run.policy.jitter_secs > 0 {
            return None;
        }
        match &run.target {
            Target::GraphExecution { .. } if self.executor_batch > 1 => {
                Some(("executor".to_string(), self.executor_batch))
            }
            Target::Rpc {
                endpoint: Some(name),
                ..
            } => self
                .outbound
                .batch(name)
                .filter(|n| *n > 1)
                .map(|n| (format!("endpoint {name}"), n)),
            _ => None,
        }
    }

    /// One JSON-RPC batch request for runs of one batch ([`Dispatcher::batch_of`]): each
    /// call's result, in order. A failure of the whole request is every call's failure.
    pub async fn send_batch(&self, runs: &[RunRecord]) -> Vec<Result<Value, DispatchError>> {
        let mut calls = Vec::with_capacity(runs.len());
        let mut service = &self.executor;
        for run in runs {
            match &run.target {
                Target::GraphExecution { .. } => {
                    calls.push(("add_graph_execution", graph_execution_params(run)));
                }
                Target::Rpc {
                    endpoint: Some(name),
                    method,
                    params,
                    ..
                } => match self.outbound.rpc_service(name) {
                    Some(endpoint) => {
                        service = endpoint;
                        calls.push((method.as_str(), Outbound::rpc_params(run, params)));
                    }
                    None => return vec![self.outbound.unknown(name); runs.len()],
                },
                _ => {
                    let error = DispatchError::Rejected("this target is not batched".into());
                    return vec![Err(error); runs.len()];
                }
            }
        }
        match service.call_batch(&calls).await {
            Ok(results) => results,
            Err(error) => vec![Err(error); runs.len()],
        }
    }

    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let executor = &config.executor;
        let http = reqwest::Client::builder()
            .timeout(executor.timeout)
            .pool_max_idle_per_host(512)
            .build()?;
        Ok(Dispatcher {
            executor: Endpoint::new(http.clone(), "execution service", &executor.url),
            tasks: TaskRunner::new(&config.system_tasks, http),
            outbound: Arc::new(Outbound::new(
                &config.endpoints,
                &config.redis,
                executor.timeout,
            )?),
            devices: DeviceRunners::new(&config.device_runners)?,
            watches: Arc::new(Watches::new(&config.modules, &config.watches)?),
            executor_batch: executor.batch.max(1) as usize,
            retries: executor.retries,
            retry_delay: executor.retry_delay,
        })
    }

    /// Sends the run, retrying with exponential backoff while the target is unreachable, as
    /// often and as slowly as the schedule's policy says (the executor's settings otherwise).
    pub async fn dispatch(&self, run: &RunRecord) -> Dispatched {
        let retries = run
            .policy
            .attempts
            .map_or(self.retries, |attempts| attempts.saturating_sub(1));
        let delay = run
            .policy
            .backoff_ms
            .map_or(self.retry_delay, Duration::from_millis);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(delay)
            .with_max_times(retries as usize)
            .with_jitter();
        let mut attempts = 0;
        let result = (|| {
            attempts += 1;
            self.send_once(run)
        })
        .retry(backoff)
        .when(|error| matches!(error, DispatchError::Unreachable(_)))
        .notify(|error, delay| {
            tracing::warn!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, %error, ?delay, "dispatch failed, retrying");
        })
        .await;
        Dispatched { result, attempts }
    }

    async fn send_once(&self, run: &RunRecord) -> Result<Value, DispatchError> {
        match &run.target {
            Target::GraphExecution { .. } => {
                let params = graph_execution_params(run);
                self.executor.call("add_graph_execution", params).await
            }
            Target::SystemTask { task, kwargs } => {
                let Some(task) = SystemTask::parse(task) else {
                    return Err(DispatchError::Rejected(format!(
                        "unknown system task '{task}'"
                    )));
                };
                self.tasks.run(task, kwargs, Utc::now()).await
            }
            Target::Rpc {
                endpoint,
                url,
                method,
                params,
            } => {
                self.outbound
                    .rpc(run, endpoint.as_deref(), url.as_deref(), method, params)
                    .await
            }
            Target::Http {
                endpoint,
                url,
                method,
                path,
                headers,
                body,
                expected_status,
            } => {
                self.outbound
                    .http(
                        run,
                        endpoint.as_deref(),
                        url.as_deref(),
                        method,
                        path,
                        headers,
                        body,
                        expected_status,
                    )
                    .await
            }
            Target::RedisPublish { channel, message } => {
                self.outbound.publish(run, channel, message).await
            }
            Target::DeviceJob { .. } => self.devices.enqueue(run).await,
            Target::Watch { check } => {
                let result = self.watches.check(run, check).await;
                serde_json::to_value(result)
                    .map_err(|error| DispatchError::Rejected(error.to_string()))
            }
        }
    }
}

/// The parameters of `add_graph_execution` for a run. The ledger key goes along as the
/// idempotency key, so the execution service can drop a repeat after a crash between dispatch
/// and recording.
pub fn graph_execution_params(run: &RunRecord) -> Value {
    let Target::GraphExecution {
        graph_id,
        graph_version,
        input_data,
        input_credentials,
    } = &run.target
    else {
        return Value::Null;
    };
    json!({
        "user_id": run.owner,
        "graph_id": graph_id,
        "graph_version": graph_version,
        "inputs": input_data,
        "graph_credentials_inputs": input_credentials,
        "schedule_id": run.schedule_id,
        "scheduled_time": run.scheduled_time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "idempotency_key": run.idempotency_key(),
    })
}

/// Dispatches one claimed run and says how it ended (and with what result, when it succeeded),
/// with its log line and metrics.
pub async fn dispatch_run(
    dispatcher: &Dispatcher,
    run: &RunRecord,
) -> (RunOutcome, Option<serde_json::Value>) {
    let started = Instant::now();
    let lag = lag_of(run);
    telemetry::dispatch_started(run.jobstore.as_str(), lag);
    let dispatched = dispatcher.dispatch(run).await;
    conclude(run, dispatched, started, lag)
}

/// How a run ended, for the ledger: its outcome, and for a watch's attempt what its check
/// found (recorded with the attempt's count in the same transaction).
pub struct Ended {
    pub outcome: RunOutcome,
    pub check: Option<CheckResult>,
}

impl From<RunOutcome> for Ended {
    fn from(outcome: RunOutcome) -> Self {
        Ended {
            outcome,
            check: None,
        }
    }
}

/// What a run's dispatch comes to once its target is done with it: for a device job that was
/// queued, the end of its job on the runner (waited for without a dispatch slot; meanwhile
/// the run is in progress, for the overlap policy); for a watch's attempt, what its check
/// found; for any other run, the dispatch's outcome.
pub async fn follow(
    dispatcher: &Dispatcher,
    stores: &Stores,
    run: &RunRecord,
    outcome: RunOutcome,
    result: Option<Value>,
) -> Ended {
    if let (Target::Watch { .. }, Some(result)) = (&run.target, &result) {
        return match serde_json::from_value::<CheckResult>(result.clone()) {
            Ok(check) => Ended {
                outcome: watches::ledger_outcome(run, &check),
                check: Some(check),
            },
            Err(error) => Ended::from(RunOutcome {
                status: RunStatus::Failed,
                detail: Some(format!("the check's result is unreadable: {error}")),
                ..outcome
            }),
        };
    }
    Ended::from(follow_device_job(dispatcher, stores, run, outcome, result).await)
}

/// A device job's run: it ends with its job on the runner.
async fn follow_device_job(
    dispatcher: &Dispatcher,
    stores: &Stores,
    run: &RunRecord,
    outcome: RunOutcome,
    result: Option<Value>,
) -> RunOutcome {
    let (Target::DeviceJob { runner, .. }, Some(job)) = (&run.target, result) else {
        return outcome;
    };
    let Some(job_id) = job.get("id").and_then(Value::as_str) else {
        return RunOutcome {
            status: RunStatus::Failed,
            detail: Some(format!(
                "device runner '{runner}' answered enqueue_job without a job id: {}",
                truncate(&job.to_string(), 300)
            )),
            ..outcome
        };
    };
    tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, %runner, job_id, "device job queued; following it until it ends");
    // The ledger shows the job while it runs; only the outcome is essential, so a failure
    // here is logged and the run goes on.
    if let Some(store) = stores.get(run.jobstore) {
        let waiting = format!("job {job_id} queued on device runner '{runner}'");
        let noted = store.annotate(&run.schedule_id, run.scheduled_time, &waiting);
        if let Err(error) = noted.await {
            tracing::warn!(%error, job_id, "cannot note the device job in the ledger");
        }
    }
    let (status, detail) = match dispatcher.devices.ended(runner, job_id).await {
        Ok(job) => outcome_of(&job),
        Err(error) => (RunStatus::Failed, format!("job {job_id}: {error}")),
    };
    tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, job_id, status = status.as_str(), %detail, "device job ended");
    RunOutcome {
        status,
        detail: Some(detail),
        finished_at: Utc::now(),
        ..outcome
    }
}

/// Dispatches runs that share a batched JSON-RPC service ([`Dispatcher::batch_of`]) as one
/// batch request; a call that fails in the batch is dispatched again alone, with the run's
/// retries. Outcomes come in the order of `runs`.
pub async fn dispatch_batch(dispatcher: &Dispatcher, runs: &[RunRecord]) -> Vec<RunOutcome> {
    let started = Instant::now();
    let lags: Vec<Duration> = runs.iter().map(lag_of).collect();
    let results = dispatcher.send_batch(runs).await;
    let outcomes = runs
        .iter()
        .zip(lags)
        .zip(results)
        .map(|((run, lag), result)| async move {
            match result {
                Ok(value) => {
                    telemetry::dispatch_started(run.jobstore.as_str(), lag);
                    let dispatched = Dispatched {
                        result: Ok(value),
                        attempts: 1,
                    };
                    conclude(run, dispatched, started, lag).0
                }
                Err(error) => {
                    tracing::debug!(schedule_id = %run.schedule_id, %error, "a call failed in its batch; sending it alone");
                    dispatch_run(dispatcher, run).await.0
                }
            }
        });
    futures::future::join_all(outcomes).await
}

/// How late a run goes: from the moment it was due to go, its jitter included.
fn lag_of(run: &RunRecord) -> Duration {
    (Utc::now() - run.goes_at()).to_std().unwrap_or_default()
}

/// A dispatch's outcome for the ledger, with its log line and metrics.
fn conclude(
    run: &RunRecord,
    dispatched: Dispatched,
    started: Instant,
    lag: Duration,
) -> (RunOutcome, Option<serde_json::Value>) {
    let jobstore = run.jobstore.as_str();
    let finished_at = Utc::now();
    let lag_ms = lag.as_millis() as u64;
    let (status, detail, failure, result) = match dispatched.result {
        Ok(result) => {
            tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, jobstore, lag_ms, attempts = dispatched.attempts, "dispatched");
            // AutoGPT's ledger keeps nothing for a graph execution; every other target's
            // answer is kept, short.
            let detail = (run.target.graph_id().is_none()).then(|| summary(&result));
            (RunStatus::Dispatched, detail, None, Some(result))
        }
        Err(error) => {
            tracing::warn!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, jobstore, lag_ms, attempts = dispatched.attempts, %error, "dispatch failed");
            let reason = error.reason();
            (
                RunStatus::Failed,
                Some(error.to_string()),
                Some(reason),
                None,
            )
        }
    };
    telemetry::dispatch_ended(jobstore, failure, started.elapsed());
    let outcome = RunOutcome::of(run, status, detail, dispatched.attempts, finished_at);
    (outcome, result)
}

/// A system task's result as the ledger keeps it: the text, or compact JSON, cut at 2,000
/// characters.
fn summary(result: &serde_json::Value) -> String {
    match result {
        serde_json::Value::String(text) => truncate(text, 2000),
        other => truncate(&other.to_string(), 2000),
    }
}
