//! Queueing, killing and restarting jobs.

use chrono::Utc;
use device_runner_api::{Job, JobStatus, RunnerError};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::config::{JobTypeConfig, parse_api_duration, pool_queue};
use crate::state::{Command, RunnerState, storage_error};
use crate::store::NewJob;

pub(super) struct Enqueue {
    /// A device's serial, or a pool's queue (`pool:<name>`) once resolved.
    pub device: Option<String>,
    pub pool: Option<String>,
    pub job_type: String,
    pub params: Option<Value>,
    pub priority: Option<i64>,
    pub max_duration: Option<Value>,
    pub source: Option<String>,
    pub checkpoint: Option<Value>,
    /// The run this job repeats.
    pub requeued_from: Option<String>,
    pub idempotency_key: Option<String>,
    /// The trace the job continues; without one, the trace of the request that queues it.
    pub traceparent: Option<String>,
}

/// The longest idempotency key taken.
const MAX_KEY_CHARS: usize = 256;

pub(super) async fn enqueue(
    runner: &RunnerState,
    mut request: Enqueue,
) -> Result<Job, RunnerError> {
    let key = request.idempotency_key.clone();
    if let Some(key) = &key {
        check_key(key)?;
    }
    match &request.traceparent {
        Some(given) => service_kit::traces::check_traceparent(given)
            .map_err(|e| RunnerError::Value(format!("traceparent: {e}")))?,
        None => request.traceparent = service_kit::traces::traceparent(),
    }
    let new = match checked(runner, request) {
        Ok(new) => new,
        // A key seen before: the job it created, whatever has changed since (the device may
        // be gone); nothing is created.
        Err(refused) => {
            let Some(key) = key else {
                return Err(refused);
            };
            return match runner.store.by_key(&key).await.map_err(storage_error)? {
                Some(job) => Ok(job),
                None => Err(refused),
            };
        }
    };
    // The insert finds the job of a key seen before itself, in the same statement's stead.
    let (job, created) = runner.store.insert(&new).await.map_err(storage_error)?;
    if created {
        crate::spans::queued(&job);
        tracing::info!(job_id = %job.id, device = %job.device, job_type = %job.job_type, priority = job.priority, "job queued");
        runner.send(&job.device, Command::Wake);
    }
    Ok(job)
}

/// The job `request` asks for, checked as `enqueue_job` and `check_job` check it: its job
/// type, its queue, priority, params and maximum duration.
pub(super) fn checked(runner: &RunnerState, request: Enqueue) -> Result<NewJob, RunnerError> {
    let Some(job_type) = runner.config.job_types.get(&request.job_type) else {
        let known: Vec<_> = runner.config.job_types.keys().map(String::as_str).collect();
        return Err(RunnerError::Value(format!(
            "unknown job type '{}' (one of {})",
            request.job_type,
            known.join(", ")
        )));
    };
    let queue = queue_of(runner, &request, job_type)?;
    let priority = request.priority.unwrap_or(5);
    if !(1..=5).contains(&priority) {
        return Err(RunnerError::Value(format!(
            "priority must be from 1 (highest) to 5, got {priority}"
        )));
    }
    let params = match request.params {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(params @ Value::Object(_)) => params,
        Some(other) => {
            let mut given = other.to_string();
            if given.len() > 40 {
                given = format!("{}…", given.chars().take(40).collect::<String>());
            }
            return Err(RunnerError::Value(format!(
                "params must be a JSON object, got {given}"
            )));
        }
    };
    let size = params.to_string().len() as u64;
    if size > runner.config.max_params_bytes {
        return Err(RunnerError::Value(format!(
            "params are {size} bytes as JSON; the limit is {}",
            runner.config.max_params_bytes
        )));
    }
    let max_duration = match &request.max_duration {
        None | Some(Value::Null) => job_type.max_duration,
        Some(value) => parse_api_duration(value).map_err(RunnerError::Value)?,
    };
    Ok(NewJob {
        id: uuid::Uuid::new_v4().to_string(),
        device: queue,
        job_type: request.job_type,
        params,
        priority: priority as u8,
        max_duration_secs: max_duration.as_secs().max(1),
        source: request.source,
        checkpoint: request.checkpoint.filter(|c| !c.is_null()),
        requeued_from: request.requeued_from,
        enqueued_at: Utc::now(),
        idempotency_key: request.idempotency_key,
        traceparent: request.traceparent,
    })
}

/// The queue a job goes to: the device given, or the pool given or its type's, checked
/// against where its type runs.
fn queue_of(
    runner: &RunnerState,
    request: &Enqueue,
    job_type: &JobTypeConfig,
) -> Result<String, RunnerError> {
    let name = &request.job_type;
    let queue = match (&request.device, &request.pool, job_type.pool()) {
        (Some(_), Some(_), _) => {
            return Err(RunnerError::Value("give device or pool, not both".into()));
        }
        (Some(device), None, None) => device.clone(),
        (Some(_), None, Some(pool)) => {
            return Err(RunnerError::Value(format!(
                "job type '{name}' runs on pool '{pool}', not on a device"
            )));
        }
        (None, Some(given), Some(pool)) if given != pool => {
            return Err(RunnerError::Value(format!(
                "job type '{name}' runs on pool '{pool}', not on pool '{given}'"
            )));
        }
        (None, _, Some(pool)) => pool_queue(pool),
        (None, Some(_), None) => {
            return Err(RunnerError::Value(format!(
                "job type '{name}' runs on a device: give device, not pool"
            )));
        }
        (None, None, None) => {
            return Err(RunnerError::Value(format!(
                "job type '{name}' runs on a device: device is required"
            )));
        }
    };
    if runner.device_info(&queue).is_none() {
        let mut known: Vec<String> = super::info::devices(runner)
            .into_iter()
            .map(|device| device.serial)
            .collect();
        known.sort();
        let known = if known.is_empty() {
            "this runner has none".to_string()
        } else {
            format!("devices: {}", known.join(", "))
        };
        return Err(RunnerError::Value(format!(
            "unknown device '{queue}' ({known})"
        )));
    }
    Ok(queue)
}

fn check_key(key: &str) -> Result<(), RunnerError> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(RunnerError::Value(format!(
            "idempotency_key must be 1 to {MAX_KEY_CHARS} characters, got {}",
            key.chars().count()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(RunnerError::Value(
            "idempotency_key must not contain control characters".into(),
        ));
    }
    Ok(())
}

pub(super) async fn list_queue(
    runner: &RunnerState,
    device: Option<String>,
) -> Result<Vec<Job>, RunnerError> {
    runner
        .store
        .queue(device.as_deref())
        .await
        .map_err(storage_error)
}

pub(super) async fn kill(runner: &RunnerState, id: &str) -> Result<Job, RunnerError> {
    let job = find(runner, id).await?;
    match job.status {
        JobStatus::Pending => match cancel_if_pending(runner, &job).await? {
            Some(cancelled) => Ok(cancelled),
            // It started meanwhile: stop it.
            None => Box::pin(kill(runner, id)).await,
        },
        JobStatus::Running => {
            let (reply, answer) = oneshot::channel();
            let command = Command::Kill {
                job_id: id.to_string(),
                reply,
            };
            if !runner.send(&job.device, command) {
                return Err(RunnerError::Runtime(format!(
                    "the supervisor of device {} is not running",
                    job.device
                )));
            }
            answer
                .await
                .map_err(|_| RunnerError::Runtime("the runner is shutting down".into()))?
        }
        finished => Err(RunnerError::Conflict(format!(
            "job {id} has already ended ({finished})"
        ))),
    }
}

/// Cancels `job` if it is still pending (the store's write changes it only in that state): the
/// job as it is then, or `None` when it had left the queue meanwhile.
async fn cancel_if_pending(runner: &RunnerState, job: &Job) -> Result<Option<Job>, RunnerError> {
    let cancelled = runner
        .store
        .cancel(&job.id, Utc::now())
        .await
        .map_err(storage_error)?;
    if !cancelled {
        return Ok(None);
    }
    tracing::info!(job_id = %job.id, "pending job cancelled");
    runner.send(&job.device, Command::Wake);
    find(runner, &job.id).await.map(Some)
}

/// Cancels a job only while it is pending: the store's write changes it only in that state,
/// so a job that starts at the same moment is left running and the call is refused.
pub(super) async fn cancel(runner: &RunnerState, id: &str) -> Result<Job, RunnerError> {
    let job = find(runner, id).await?;
    if job.status == JobStatus::Pending
        && let Some(cancelled) = cancel_if_pending(runner, &job).await?
    {
        return Ok(cancelled);
    }
    let now = find(runner, id).await?;
    Err(RunnerError::Conflict(format!(
        "job {id} is no longer pending ({}); only a pending job is cancelled",
        now.status
    )))
}

/// Queues an ended run again with its device or pool, type, parameters and priority;
/// `from_checkpoint` also hands it its last checkpoint (`resume_job`), else it starts afresh
/// (`restart_run`).
pub(super) async fn requeue(
    runner: &RunnerState,
    run_id: &str,
    from_checkpoint: bool,
) -> Result<Job, RunnerError> {
    let run = find(runner, run_id).await?;
    if !run.status.is_finished() {
        return Err(RunnerError::Conflict(format!(
            "run {run_id} has not ended yet ({})",
            run.status
        )));
    }
    let request = Enqueue {
        device: run.pool.is_none().then_some(run.device),
        pool: run.pool,
        job_type: run.job_type,
        params: Some(run.params),
        priority: Some(i64::from(run.priority)),
        max_duration: Some(Value::from(run.max_duration_secs)),
        source: run.source,
        checkpoint: run.checkpoint.filter(|_| from_checkpoint),
        requeued_from: Some(run.id),
        idempotency_key: None,
        traceparent: None,
    };
    enqueue(runner, request).await
}

/// What `start_job` is given.
pub(super) struct Module {
    pub module_id: String,
    pub inputs: Option<Value>,
    pub settings: Option<Value>,
    pub checkpoint: Option<Value>,
    pub max_duration: Option<Value>,
}

/// The job engine's `start_job`: a job of a type that runs on a pool, with params
/// `{inputs, settings}`.
pub(super) async fn start(runner: &RunnerState, module: Module) -> Result<String, RunnerError> {
    let Some(job_type) = runner.config.job_types.get(&module.module_id) else {
        let modules: Vec<_> = runner
            .config
            .job_types
            .iter()
            .filter(|(_, t)| t.pool().is_some())
            .map(|(name, _)| name.as_str())
            .collect();
        return Err(RunnerError::Value(format!(
            "unknown module '{}' (modules: {})",
            module.module_id,
            if modules.is_empty() {
                "none configured".to_string()
            } else {
                modules.join(", ")
            }
        )));
    };
    if job_type.pool().is_none() {
        return Err(RunnerError::Value(format!(
            "'{}' runs on a device, not on a pool: queue it with enqueue_job",
            module.module_id
        )));
    }
    let object = |field: &str, value: Option<Value>| match value {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(value @ Value::Object(_)) => Ok(value),
        Some(_) => Err(RunnerError::Value(format!("{field} must be a JSON object"))),
    };
    let params = serde_json::json!({
        "inputs": object("inputs", module.inputs)?,
        "settings": object("settings", module.settings)?,
    });
    let request = Enqueue {
        device: None,
        pool: None,
        job_type: module.module_id,
        params: Some(params),
        priority: None,
        max_duration: module.max_duration,
        source: Some("start_job".into()),
        checkpoint: module.checkpoint,
        requeued_from: None,
        idempotency_key: None,
        traceparent: None,
    };
    Ok(enqueue(runner, request).await?.id)
}

/// The job engine's `stop_job`: true when the job was there and is now stopped.
pub(super) async fn stop(runner: &RunnerState, job_id: &str) -> Result<bool, RunnerError> {
    match runner.store.get(job_id).await.map_err(storage_error)? {
        Some(job) if !job.status.is_finished() => match kill(runner, job_id).await {
            Ok(_) => Ok(true),
            // It ended by itself meanwhile.
            Err(RunnerError::Conflict(_)) => Ok(false),
            Err(error) => Err(error),
        },
        _ => Ok(false),
    }
}

pub(super) async fn find(runner: &RunnerState, id: &str) -> Result<Job, RunnerError> {
    runner
        .store
        .get(id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| RunnerError::NotFound(format!("no job or run with id '{id}'")))
}
