//! `get_registry`: every schedule and every declared system task, for an operator checking that
//! a deploy dropped nothing.

use jobstore::{ListFilter, Schedule};
use scheduler_api::{Registry, RegistryEntry, SchedulerError, SystemTaskEntry};
use serde_json::Value;

use crate::app::{App, storage_error};

pub(super) async fn registry(app: &App) -> Result<Registry, SchedulerError> {
    let everything = ListFilter {
        owner: None,
        graph_id: None,
        include_inactive: true,
        ..ListFilter::default()
    };
    let mut schedules = Vec::new();
    for store in app.stores.all() {
        let jobstore = store.jobstore().as_str();
        for schedule in store.list(&everything).await.map_err(storage_error)? {
            schedules.push(entry(jobstore, schedule));
        }
    }
    let system_tasks = app
        .tasks
        .iter()
        .map(|task| {
            let declaration = &task.declaration;
            let next_run_time = schedules
                .iter()
                .find(|s| s.id == declaration.id && s.jobstore == declaration.jobstore.as_str())
                .and_then(|s| s.next_run_time);
            SystemTaskEntry {
                id: declaration.id.clone(),
                task: declaration.task.as_str().to_string(),
                jobstore: declaration.jobstore.as_str().to_string(),
                trigger: task.trigger.as_ref().map(to_json),
                enabled: task.disabled.is_none(),
                disabled_reason: task.disabled.clone(),
                next_run_time,
            }
        })
        .collect();
    Ok(Registry {
        leader: app.is_leader(),
        schedules,
        system_tasks,
    })
}

fn entry(jobstore: &str, schedule: Schedule) -> RegistryEntry {
    RegistryEntry {
        id: schedule.id,
        jobstore: jobstore.to_string(),
        name: schedule.name,
        owner: schedule.owner,
        trigger: to_json(&schedule.trigger),
        target: to_json(&schedule.target),
        paused: schedule.paused,
        paused_reason: schedule.paused_reason,
        next_run_time: schedule.next_run_at,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
