//! Graph execution schedules: add, delete, list, pause, resume.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use jobstore::{JobStore, ListFilter, Policy, Schedule, Target, Tenancy};
use scheduler_api::{
    ExecutionScheduleQuery, GraphExecutionJobInfo, GraphExecutionTarget, NewGraphSchedule,
    SchedulerError, Valid,
};

use jsonrpsee::Extensions;

use crate::api::access::{self, Access, Who};
use crate::api::views;
use crate::app::{App, storage_error};
use crate::audit::{self, Actor};

/// `add_graph_execution_schedule`: stores the schedule, its first run the next fire after now.
pub(super) async fn add(
    app: &App,
    extensions: &Extensions,
    request: Valid<NewGraphSchedule>,
) -> Result<GraphExecutionJobInfo, SchedulerError> {
    let trigger = request.trigger();
    let request = request.into_inner();
    let caller = access::caller_of(extensions);
    access::acting_for(&request.user_id, caller)
        .map_err(|_| access::Denied::out_of_scope(&request.user_id, caller))?;
    let compiled = trigger
        .compile()
        .map_err(|e| SchedulerError::Value(e.to_string()))?;
    let now = Utc::now().trunc_subsecs(0);
    let requested = request.policy.unwrap_or_default();
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
            .unwrap_or_else(|| views::DEFAULT_GRAPH_NAME.to_string()),
        owner: request.user_id,
        trigger: trigger.into(),
        target: Target::GraphExecution(GraphExecutionTarget {
            graph_id: request.graph_id,
            graph_version: request.graph_version,
            input_data: request.input_data,
            input_credentials: request.input_credentials.unwrap_or_default(),
            organization_id: request.organization_id,
            team_id: request.team_id,
            expert_id: request.expert_id,
        }),
        policy,
        paused: false,
        tags: Vec::new(),
        paused_reason: None,
        next_run_at: compiled.next_after(now),
        created_at: now,
    };
    let store = app.execution()?;
    let actor = Actor::of(extensions);
    audit::insert_created(&app.stores, store.as_ref(), &actor, &schedule)
        .await
        .map_err(storage_error)?;
    app.wake.notify_one();
    tracing::info!(schedule_id = %schedule.id, user_id = %schedule.owner, next_run_at = ?schedule.next_run_at, "schedule added");
    views::job_info(&schedule)
}

pub(super) async fn delete(
    app: &App,
    extensions: &Extensions,
    schedule_id: &str,
    user_id: &str,
) -> Result<GraphExecutionJobInfo, SchedulerError> {
    let store = app.execution()?;
    let schedule = owned_schedule(store, schedule_id, Who::owner(user_id, extensions)).await?;
    let deleted = store.delete(schedule_id).await.map_err(storage_error)?;
    let deleted = deleted.unwrap_or(schedule);
    app.wake.notify_one();
    let (actor, jobstore) = (Actor::of(extensions), store.jobstore());
    audit::schedule(
        &app.stores,
        &actor,
        "delete",
        jobstore,
        Some(&deleted),
        None,
    )
    .await;
    tracing::info!(%schedule_id, %user_id, "schedule deleted");
    views::job_info(&deleted)
}

/// `get_execution_schedules` and `get_graph_execution_schedules`: AutoGPT's listing with its
/// organisation visibility ([`jobstore::Tenancy`]), within a scoped client's owners.
pub(super) async fn list(
    app: &App,
    extensions: &Extensions,
    query: ExecutionScheduleQuery,
) -> Result<Vec<GraphExecutionJobInfo>, SchedulerError> {
    if !query.lists_graphs()? {
        return Ok(Vec::new());
    }
    let owners = access::listing_scope_naming(query.user_id.as_deref(), extensions)?;
    let tenancy = query
        .organization_id
        .filter(|o| !o.trim().is_empty())
        .map(|organization_id| Tenancy {
            organization_id,
            team_ids: query.team_ids.unwrap_or_default(),
        });
    let filter = ListFilter {
        owner: query.user_id,
        tenancy,
        owners,
        graph_id: query.graph_id,
        include_inactive: query.include_paused,
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
    extensions: &Extensions,
    schedule_id: &str,
    user_id: &str,
    paused: bool,
) -> Result<bool, SchedulerError> {
    let store = app.execution()?;
    let schedule = owned_schedule(store, schedule_id, Who::owner(user_id, extensions)).await?;
    // As AutoGPT answers: false when there was nothing to change.
    if schedule.paused == paused {
        return Ok(false);
    }
    let next_run_at = if paused {
        None
    } else {
        let trigger = schedule
            .trigger
            .compile_for(&schedule.id)
            .map_err(|e| SchedulerError::Value(e.to_string()))?;
        trigger.next_after(Utc::now())
    };
    let stored = store
        .set_paused(schedule_id, paused, None, next_run_at)
        .await
        .map_err(storage_error)?;
    app.wake.notify_one();
    let action = if paused { "pause" } else { "resume" };
    let (actor, jobstore) = (Actor::of(extensions), store.jobstore());
    let after = stored.as_ref();
    audit::schedule(
        &app.stores,
        &actor,
        action,
        jobstore,
        Some(&schedule),
        after,
    )
    .await;
    tracing::info!(%schedule_id, %user_id, paused, "schedule paused state changed");
    Ok(true)
}

/// The schedule, after checking that it exists and belongs to the user `who` acts for.
pub(super) async fn owned_schedule(
    store: &Arc<dyn JobStore>,
    schedule_id: &str,
    who: Who<'_>,
) -> Result<Schedule, SchedulerError> {
    let schedule = store
        .get(schedule_id)
        .await
        .map_err(storage_error)?
        .filter(|s| s.target.graph_id().is_some() && s.owner != scheduler_api::SYSTEM_OWNER)
        .ok_or_else(|| SchedulerError::NotFound(format!("Job #{schedule_id} not found.")))?;
    access::schedule(&schedule, who, Access::Change).map_err(|denied| match denied {
        access::Denied::OutOfScope => access::Denied::out_of_scope(who.owner, who.caller),
        _ => SchedulerError::NotAuthorized("User ID does not match the job's user ID".into()),
    })?;
    Ok(schedule)
}
