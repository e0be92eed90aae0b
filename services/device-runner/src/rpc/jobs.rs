//! Queueing, killing and restarting jobs.

use chrono::Utc;
use device_runner_api::{Job, JobStatus, RunnerError};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::config::parse_api_duration;
use crate::state::{Command, RunnerState, storage_error};
use crate::store::NewJob;

pub(super) struct Enqueue {
    pub device: String,
    pub job_type: String,
    pub params: Option<Value>,
    pub priority: Option<i64>,
    pub max_duration: Option<Value>,
    pub source: Option<String>,
    pub checkpoint: Option<Value>,
    /// The run this job repeats.
    pub requeued_from: Option<String>,
    pub idempotency_key: Option<String>,
}

/// The longest idempotency key taken.
const MAX_KEY_CHARS: usize = 256;

pub(super) async fn enqueue(runner: &RunnerState, request: Enqueue) -> Result<Job, RunnerError> {
    if let Some(key) = &request.idempotency_key {
        check_key(key)?;
        // A key seen before: the job it created, whatever has changed since (the device may
        // be gone); nothing is created.
        if let Some(job) = runner.store.by_key(key).await.map_err(storage_error)? {
            return Ok(job);
        }
    }
    if runner.device_info(&request.device).is_none() {
        return Err(RunnerError::Value(format!(
            "unknown device '{}' (see list_devices)",
            request.device
        )));
    }
    let Some(job_type) = runner.config.job_types.get(&request.job_type) else {
        let known: Vec<_> = runner.config.job_types.keys().map(String::as_str).collect();
        return Err(RunnerError::Value(format!(
            "unknown job type '{}' (one of {})",
            request.job_type,
            known.join(", ")
        )));
    };
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
    let new = NewJob {
        id: uuid::Uuid::new_v4().to_string(),
        device: request.device,
        job_type: request.job_type,
        params,
        priority: priority as u8,
        max_duration_secs: max_duration.as_secs().max(1),
        source: request.source,
        checkpoint: request.checkpoint.filter(|c| !c.is_null()),
        requeued_from: request.requeued_from,
        enqueued_at: Utc::now(),
        idempotency_key: request.idempotency_key,
    };
    let (job, created) = runner.store.insert(&new).await.map_err(storage_error)?;
    if created {
        tracing::info!(job_id = %job.id, device = %job.device, job_type = %job.job_type, priority = job.priority, "job queued");
        runner.send(&job.device, Command::Wake);
    }
    Ok(job)
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
        JobStatus::Pending => {
            if runner
                .store
                .cancel(id, Utc::now())
                .await
                .map_err(storage_error)?
            {
                tracing::info!(job_id = id, "pending job cancelled");
                runner.send(&job.device, Command::Wake);
                return find(runner, id).await;
            }
            // It started meanwhile: stop it.
            Box::pin(kill(runner, id)).await
        }
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

pub(super) async fn restart(runner: &RunnerState, run_id: &str) -> Result<Job, RunnerError> {
    let run = find(runner, run_id).await?;
    if !run.status.is_finished() {
        return Err(RunnerError::Conflict(format!(
            "run {run_id} has not ended yet ({})",
            run.status
        )));
    }
    let request = Enqueue {
        device: run.device,
        job_type: run.job_type,
        params: Some(run.params),
        priority: Some(i64::from(run.priority)),
        max_duration: Some(Value::from(run.max_duration_secs)),
        source: run.source,
        checkpoint: None,
        requeued_from: Some(run.id),
        idempotency_key: None,
    };
    enqueue(runner, request).await
}

pub(super) async fn find(runner: &RunnerState, id: &str) -> Result<Job, RunnerError> {
    runner
        .store
        .get(id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| RunnerError::NotFound(format!("no job or run with id '{id}'")))
}
