//! Dispatching a run to its target: the retry policy every kind shares (the schedule's,
//! defaulting to the executor's), batch requests for the kinds that take them, and the
//! outcome's log line and metrics. What a kind does lives in its own module ([`crate::targets`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use jobstore::{RunOutcome, RunRecord, RunStatus};
use serde_json::Value;

use crate::autogpt::tasks::TaskRunner;
use crate::config::Config;
use crate::endpoint::{DispatchError, Endpoint, truncate};
use crate::outbound::Outbound;
use crate::spans;
use crate::stores::Stores;
use crate::targets::{DeviceRunners, Ended, Followed, Notes, Targets, kind_of};
use crate::telemetry;
use crate::watches::Watches;
use tracing::Instrument;

/// How a dispatch ended after all attempts.
pub struct Dispatched {
    /// The target's answer, or the last attempt's error.
    pub result: Result<Value, DispatchError>,
    pub attempts: u32,
}

/// Sends runs to their targets, with the retry policy they share.
pub struct Dispatcher {
    /// What the targets reach.
    pub targets: Targets,
    retries: u32,
    retry_delay: Duration,
}

impl Dispatcher {
    pub fn new(config: &Config, stores: &Stores) -> anyhow::Result<Self> {
        let executor = &config.executor;
        let http = reqwest::Client::builder()
            .timeout(executor.timeout)
            .pool_max_idle_per_host(512)
            .build()?;
        let targets = Targets {
            executor: Endpoint::new(http.clone(), "execution service", &executor.url)
                .with_batch(executor.batch),
            tasks: TaskRunner::new(&config.system_tasks, http),
            outbound: Arc::new(Outbound::new(
                &config.endpoints,
                &config.redis,
                executor.timeout,
            )?),
            devices: DeviceRunners::new(&config.device_runners, stores.clone())?,
            watches: Arc::new(Watches::new(&config.modules, &config.watches)?),
            configured: config.configured(),
        };
        Ok(Dispatcher {
            targets,
            retries: executor.retries,
            retry_delay: executor.retry_delay,
        })
    }

    /// The batch a run may join: its key and the most calls one request carries. `None` for a
    /// run sent alone (its kind is not batched here, or it is jittered and waits for its own
    /// moment).
    pub fn batch_of(&self, run: &RunRecord) -> Option<(String, usize)> {
        if run.policy.jitter_secs > 0 {
            return None;
        }
        kind_of(&run.target).batch(&self.targets)
    }

    /// One JSON-RPC batch request for runs of one batch ([`Dispatcher::batch_of`]): each
    /// call's result, in order. A failure of the whole request is every call's failure.
    pub async fn send_batch(&self, runs: &[RunRecord]) -> Vec<Result<Value, DispatchError>> {
        let mut calls = Vec::with_capacity(runs.len());
        for run in runs {
            match kind_of(&run.target).call(run, &self.targets) {
                Ok(call) => calls.push(call),
                Err(error) => return vec![Err(error); runs.len()],
            }
        }
        let Some(service) = calls.first().map(|call| call.service) else {
            return Vec::new();
        };
        let requests: Vec<(&str, Value)> = calls
            .into_iter()
            .map(|call| (call.method, call.params))
            .collect();
        match service.call_batch(&requests).await {
            Ok(results) => results,
            Err(error) => vec![Err(error); runs.len()],
        }
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
        let kind = kind_of(&run.target);
        let mut attempts = 0;
        let result = (|| {
            attempts += 1;
            kind.send(run, &self.targets)
                .instrument(spans::attempt(attempts))
        })
        .retry(backoff)
        .when(|error| matches!(error, DispatchError::Unreachable(_)))
        .notify(|error, delay| {
            tracing::warn!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, %error, ?delay, "dispatch failed, retrying");
        })
        .await;
        Dispatched { result, attempts }
    }
}

/// Dispatches one claimed run and says how it ended (and with what result, when it succeeded),
/// with its log line and metrics.
pub(crate) async fn dispatch_run(
    dispatcher: &Dispatcher,
    run: &RunRecord,
) -> (RunOutcome, Option<Value>) {
    let started = Instant::now();
    let lag = lag_of(run);
    telemetry::dispatch_started(run.jobstore.as_str(), lag);
    let dispatched = dispatcher.dispatch(run).await;
    conclude(run, dispatched, started, lag)
}

/// What a run's dispatch comes to once its target is done with it ([`crate::targets::Kind::follow`]).
pub(crate) async fn follow(
    dispatcher: &Dispatcher,
    notes: &Notes,
    run: &RunRecord,
    outcome: RunOutcome,
    answer: Option<Value>,
) -> Ended {
    let followed = Followed {
        targets: &dispatcher.targets,
        notes,
        outcome,
        answer,
    };
    kind_of(&run.target).follow(run, followed).await
}

/// Dispatches runs that share a batched JSON-RPC service ([`Dispatcher::batch_of`]) as one
/// batch request; what each call's answer comes to is its kind's ([`Kind::answered`]), and a
/// call that failed in the batch is by default dispatched again alone, with the run's
/// retries. Outcomes (and answers, as [`dispatch_run`] gives them) come in the order of
/// `runs`.
///
/// [`Kind::answered`]: crate::targets::Kind::answered
pub(crate) async fn dispatch_batch(
    dispatcher: &Dispatcher,
    runs: &[RunRecord],
) -> Vec<(RunOutcome, Option<Value>)> {
    let started = Instant::now();
    let lags: Vec<Duration> = runs.iter().map(lag_of).collect();
    let results = dispatcher.send_batch(runs).await;
    let outcomes = runs
        .iter()
        .zip(lags)
        .zip(results)
        .map(|((run, lag), answer)| async move {
            match kind_of(&run.target).answered(run, answer) {
                Some(result) => {
                    telemetry::dispatch_started(run.jobstore.as_str(), lag);
                    let dispatched = Dispatched {
                        result,
                        attempts: 1,
                    };
                    conclude(run, dispatched, started, lag)
                }
                None => {
                    tracing::debug!(schedule_id = %run.schedule_id, "a call failed in its batch; sending it alone");
                    dispatch_run(dispatcher, run).await
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
            let detail = kind_of(&run.target)
                .keeps_answer()
                .then(|| summary(&result));
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
