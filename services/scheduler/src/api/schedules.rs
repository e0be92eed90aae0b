//! Graph execution schedules: add, delete, list, pause, resume.

use crate::api::access::{self, Access, Who};
use crate::api::views;
use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use jobstore::{JobStore, ListFilter, Policy, Schedule, Target};
use scheduler_api::{
    GraphExecutionJobInfo, GraphExecutionTarget, SchedulePolicy, SchedulerError, check_id,
};
use serde_json::Value;
use triggers::TriggerKind;

use crate::app::{App, storage_error};

/// The name AutoGPT's scheduler gives a schedule added without one (its job function's name).
const DEFAULT_NAME: &str = "execute_graph";
pub(super) struct AddRequest {
    pub user_id: String,
    pub graph_id: String,
    pub graph_version: i64,
    pub cron: String,
    pub input_data: Value,
    pub input_credentials: Option<Value>,
    pub name: Option<String>,
    pub user_timezone: Option<String>,
    pub policy: Option<SchedulePolicy>,
}

/// AutoGPT's method takes only the policy fields APScheduler has (`coalesce`,
/// `misfire_grace_secs`); the general policy's other fields belong to `create_schedule`, and
/// are refused here rather than dropped.
fn refuse_general_policy(policy: &SchedulePolicy) -> Result<(), SchedulerError> {
    let given = [
        ("overlap", policy.overlap.is_some()),
        ("jitter_secs", policy.jitter_secs.is_some()),
        ("attempts", policy.attempts.is_some()),
        ("backoff_ms", policy.backoff_ms.is_some()),
    ];
    match given.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(SchedulerError::Value(format!(
            "policy.{field} is not taken by add_graph_execution_schedule, whose policy holds \
             only coalesce and misfire_grace_secs; use create_schedule for the general policy"
        ))),
        None => Ok(()),
    }
}

pub(super) async fn add(
    app: &App,
    request: AddRequest,
) -> Result<GraphExecutionJobInfo, SchedulerError> {
    check_id("user_id", &request.user_id)?;
    check_id("graph_id", &request.graph_id)?;
    let input_data = object_or_error("input_data", request.input_data)?;
    let input_credentials = object_or_error(
        "input_credentials",
        request
            .input_credentials
            .unwrap_or_else(|| Value::Object(Default::default())),
    )?;
    let timezone = match request.user_timezone.as_deref().map(str::trim) {
        None | Some("") => "UTC".to_string(),
        Some(zone) => zone.to_string(),
    };
    let trigger = TriggerKind::Cron {
        expression: request.cron.trim().to_string(),
        timezone,
    };
    let compiled = trigger
        .compile()
        .map_err(|e| SchedulerError::Value(e.to_string()))?;
    let now = Utc::now().trunc_subsecs(0);
    let requested = request.policy.unwrap_or_default();
    refuse_general_policy(&requested)?;
    let policy = Policy {
        coalesce: requested.coalesce.unwrap_or(true),
        misfire_grace_secs: requested.misfire_grace_secs,
        ..Policy::default()
    };
    policy.validate().map_err(SchedulerError::Value)?;
    let schedule = Schedule {
        id: uuid::Uuid::new_v4().to_string(),
        name: request
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAME.to_string()),
        owner: request.user_id,
        trigger: trigger.into(),
        target: Target::GraphExecution(GraphExecutionTarget {
            graph_id: request.graph_id,
            graph_version: request.graph_version,
            input_data,
            input_credentials,
        }),
        policy,
        paused: false,
        tags: Vec::new(),
        paused_reason: None,
        next_run_at: compiled.next_after(now),
        created_at: now,
    };
    let store = app.execution()?;
    store.insert(&schedule).await.map_err(storage_error)?;
    app.wake.notify_one();
    tracing::info!(schedule_id = %schedule.id, user_id = %schedule.owner, next_run_at = ?schedule.next_run_at, "schedule added");
    views::job_info(&schedule)
}

pub(super) async fn delete(
    app: &App,
    schedule_id: &str,
    user_id: &str,
) -> Result<GraphExecutionJobInfo, SchedulerError> {
    let store = app.execution()?;
    let schedule = owned_schedule(store, schedule_id, user_id).await?;
    let deleted = store.delete(schedule_id).await.map_err(storage_error)?;
    let deleted = deleted.unwrap_or(schedule);
    app.wake.notify_one();
    tracing::info!(%schedule_id, %user_id, "schedule deleted");
    views::job_info(&deleted)
}

pub(super) async fn list(
    app: &App,
    graph_id: Option<String>,
    user_id: Option<String>,
    include_paused: bool,
) -> Result<Vec<GraphExecutionJobInfo>, SchedulerError> {
    let filter = ListFilter {
        owner: user_id,
        graph_id,
        include_inactive: include_paused,
        ..ListFilter::default()
    };
    let schedules = app
        .execution()?
        .list(&filter)
        .await
        .map_err(storage_error)?;
    schedules
        .iter()
        .filter(|s| s.target.graph_id().is_some())
        .map(views::job_info)
        .collect()
}

pub(super) async fn set_paused(
    app: &App,
    schedule_id: &str,
    user_id: &str,
    paused: bool,
) -> Result<bool, SchedulerError> {
    let store = app.execution()?;
    let schedule = owned_schedule(store, schedule_id, user_id).await?;
    if schedule.paused == paused {
        return Ok(true);
    }
    let next_run_at = if paused {
        None
    } else {
        let trigger = schedule
            .trigger
            .compile()
            .map_err(|e| SchedulerError::Value(e.to_string()))?;
        trigger.next_after(Utc::now())
    };
    store
        .set_paused(schedule_id, paused, None, next_run_at)
        .await
        .map_err(storage_error)?;
    app.wake.notify_one();
    tracing::info!(%schedule_id, %user_id, paused, "schedule paused state changed");
    Ok(true)
}

/// The schedule, after checking that it exists and belongs to `user_id`.
pub(super) async fn owned_schedule(
    store: &Arc<dyn JobStore>,
    schedule_id: &str,
    user_id: &str,
) -> Result<Schedule, SchedulerError> {
    let schedule = store
        .get(schedule_id)
        .await
        .map_err(storage_error)?
        .filter(|s| s.target.graph_id().is_some() && s.owner != scheduler_api::SYSTEM_OWNER)
        .ok_or_else(|| SchedulerError::NotFound(format!("Job #{schedule_id} not found.")))?;
    access::schedule(&schedule, Who::owner(user_id), Access::Change).map_err(|_| {
        SchedulerError::NotAuthorized("User ID does not match the job's user ID".into())
    })?;
    Ok(schedule)
}

fn object_or_error(field: &str, value: Value) -> Result<Value, SchedulerError> {
    scheduler_api::check_object(field, &value).map_err(SchedulerError::Value)?;
    Ok(value)
}
