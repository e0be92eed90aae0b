//! `execute_<task>`: run a system task now, as an occurrence in the run ledger under the task's
//! id, and answer with its result.

use std::sync::Arc;

use chrono::{SubsecRound, TimeDelta, Utc};
use jobstore::{JobStore, RunRecord, RunStatus};
use scheduler_api::SchedulerError;
use serde_json::Value;

use crate::app::{App, storage_error};
use crate::autogpt::tasks::{DeclaredTask, OWNER, SystemTask};
use crate::dispatch::dispatch_run;

/// How many later milliseconds are tried when a run by hand lands on an instant already in the
/// ledger (two calls in the same millisecond).
const INSTANT_ATTEMPTS: i64 = 5;

pub(super) async fn execute(
    app: &App,
    task: SystemTask,
    kwargs: Option<Value>,
) -> Result<Value, SchedulerError> {
    // Wrong arguments are the caller's error, whatever the task's state: refused before
    // anything is recorded.
    if let Some(kwargs) = &kwargs {
        task.check_kwargs(kwargs).map_err(SchedulerError::Value)?;
    }
    let declared = declared(app, task)?;
    if let Some(reason) = &declared.disabled {
        return Err(SchedulerError::Runtime(format!(
            "system task '{}' cannot run: {reason}",
            declared.declaration.id
        )));
    }
    let store = app
        .stores
        .get(declared.declaration.jobstore)
        .ok_or_else(|| {
            SchedulerError::Runtime(format!(
                "jobstore '{}' is not served",
                declared.declaration.jobstore.as_str()
            ))
        })?;
    // Arguments given with the call replace the declared ones.
    let target = jobstore::Target::SystemTask(scheduler_api::SystemTaskTarget {
        task: task.as_str().to_string(),
        kwargs: kwargs.unwrap_or_else(|| declared.declaration.kwargs.clone()),
    });
    run_now(app, store, &declared.declaration.id, target).await
}

/// `execute_<task>` of one of AutoGPT's tasks a backend declares ([`scheduler_api::DECLARED_TASKS`]):
/// the declared schedule whose id is the task's name, run now.
pub(super) async fn execute_declared(app: &App, task: &str) -> Result<Value, SchedulerError> {
    for store in app.stores.all() {
        let found = store.get(task).await.map_err(storage_error)?;
        if let Some(schedule) = found.filter(|s| s.owner == OWNER) {
            return run_now(app, store, &schedule.id, schedule.target).await;
        }
    }
    Err(SchedulerError::Runtime(format!(
        "task '{task}' is not declared: add a [[schedules]] entry with id = \"{task}\" \
         (deploy/examples/autogpt.toml declares AutoGPT's tasks)"
    )))
}

/// Runs `target` now as an occurrence of the system schedule `id` in `store`'s ledger, and
/// answers with its result.
async fn run_now(
    app: &App,
    store: &Arc<dyn JobStore>,
    id: &str,
    target: jobstore::Target,
) -> Result<Value, SchedulerError> {
    let now = Utc::now().trunc_subsecs(3);
    let mut run = RunRecord {
        schedule_id: id.to_string(),
        scheduled_time: now,
        jobstore: store.jobstore(),
        owner: OWNER.to_string(),
        target,
        policy: jobstore::Policy::default(),
        status: RunStatus::Pending,
        detail: None,
        attempts: 0,
        claimed_at: now,
        lease_until: Some(now + app.lease),
        finished_at: None,
    };
    let mut recorded = false;
    for offset in 0..INSTANT_ATTEMPTS {
        run.scheduled_time = now + TimeDelta::milliseconds(offset);
        if store.insert_run(&run).await.map_err(storage_error)? {
            recorded = true;
            break;
        }
    }
    if !recorded {
        return Err(SchedulerError::Runtime(format!(
            "system task '{id}' is being started too often; try again"
        )));
    }
    tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, "system task started by hand");
    let (outcome, result) = dispatch_run(&app.dispatcher, &run).await;
    let result = match result {
        Some(result) => Ok(result),
        None => Err(SchedulerError::Runtime(format!(
            "system task '{id}' failed: {}",
            outcome.detail.as_deref().unwrap_or("no detail")
        ))),
    };
    store
        .finish_runs(std::slice::from_ref(&outcome))
        .await
        .map_err(storage_error)?;
    result
}

/// The declaration `execute_<task>` runs: the one whose id is the task's name, else the first of
/// that task.
fn declared(app: &App, task: SystemTask) -> Result<&DeclaredTask, SchedulerError> {
    let of_task = |d: &&DeclaredTask| d.declaration.task == task;
    app.tasks
        .iter()
        .filter(of_task)
        .find(|d| d.declaration.id == task.as_str())
        .or_else(|| app.tasks.iter().find(of_task))
        .ok_or_else(|| {
            SchedulerError::Runtime(format!(
                "system task '{}' is not declared in system_tasks.tasks",
                task.as_str()
            ))
        })
}
