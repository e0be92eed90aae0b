//! What callers see: the schedule, its runs and AutoGPT's job info, each made from what is
//! stored in one place, for every surface (the JSON-RPC API, AutoGPT's routes, the farm's
//! routes, the console).

use chrono::{DateTime, Utc};
use jobstore::{GraphExecutionTarget, RunRecord, Schedule, StoreName, Target};
use scheduler_api::{
    GraphExecutionJobInfo, Placement, SYSTEM_OWNER, SchedulePolicy, ScheduleRun, SchedulerError,
    TriggerKind,
};

/// The name AutoGPT's scheduler gives a graph schedule added without one (its job function's).
pub(crate) const DEFAULT_GRAPH_NAME: &str = "execute_graph";

/// How many fire times a schedule shows.
const UPCOMING: usize = 5;

/// A schedule as the API shows it, in its zone, with its next fire times.
pub(crate) fn schedule(
    schedule: &Schedule,
    jobstore: StoreName,
    last_run: Option<scheduler_api::ScheduleRun>,
) -> scheduler_api::Schedule {
    let zone_name = schedule.trigger.timezone_name().to_string();
    let zone = triggers::parse_timezone(&zone_name).unwrap_or(chrono_tz::Tz::UTC);
    let mut upcoming = Vec::new();
    if let (false, Some(first), Ok(trigger)) = (
        schedule.paused,
        schedule.next_run_at,
        schedule.trigger.compile_for(&schedule.id),
    ) {
        // What will run: an occurrence on a date a calendar excludes is left out.
        let mut at = match trigger.excluded_by(first) {
            None => Some(first),
            Some(_) => trigger.next_included_after(first),
        };
        while let Some(next) = at.filter(|_| upcoming.len() < UPCOMING) {
            upcoming.push(next.with_timezone(&zone).fixed_offset());
            at = trigger.next_included_after(next);
        }
    }
    let policy = &schedule.policy;
    scheduler_api::Schedule {
        id: schedule.id.clone(),
        name: schedule.name.clone(),
        owner: schedule.owner.clone(),
        jobstore: jobstore.as_str().to_string(),
        trigger: schedule.trigger.clone(),
        target: schedule.target.clone(),
        policy: SchedulePolicy {
            coalesce: Some(policy.coalesce),
            misfire_grace_secs: policy.misfire_grace_secs,
            overlap: Some(policy.overlap),
            jitter_secs: Some(policy.jitter_secs),
            attempts: policy.attempts,
            backoff_ms: policy.backoff_ms,
            placement_timeout_secs: policy.placement_timeout_secs,
            alerts: (!policy.alerts.is_empty()).then_some(policy.alerts),
        },
        tags: schedule.tags.clone(),
        paused: schedule.paused,
        paused_reason: schedule.paused_reason.clone(),
        timezone: zone_name,
        next_run_time: schedule
            .next_run_at
            .filter(|_| !schedule.paused)
            .map(|at| at.with_timezone(&zone).fixed_offset()),
        next_fire_times: upcoming,
        created_at: schedule.created_at,
        declared: schedule.owner == SYSTEM_OWNER,
        last_run,
    }
}

/// A ledger row as the API shows it.
pub(crate) fn run(run: &RunRecord) -> ScheduleRun {
    ScheduleRun {
        schedule_id: run.schedule_id.clone(),
        scheduled_time: run.scheduled_time,
        status: run.status,
        detail: run.detail.clone(),
        attempts: run.attempts,
        claimed_at: run.claimed_at,
        finished_at: run.finished_at,
        idempotency_key: run.idempotency_key(),
        placement: match &run.target {
            Target::DeviceJob(job) => job.placed().map(|(runner, device)| Placement {
                runner: runner.to_string(),
                device: device.to_string(),
                moves: job.moves,
            }),
            _ => None,
        },
    }
}

/// A schedule as AutoGPT's `GraphExecutionJobInfo`.
pub(crate) fn job_info(schedule: &Schedule) -> Result<GraphExecutionJobInfo, SchedulerError> {
    let Target::GraphExecution(GraphExecutionTarget {
        graph_id,
        graph_version,
        input_data,
        input_credentials,
        organization_id,
        team_id,
        expert_id,
    }) = &schedule.target
    else {
        return Err(SchedulerError::NotFound(format!(
            "Job #{} is not a graph execution schedule.",
            schedule.id
        )));
    };
    let (cron, zone_name) = match &schedule.trigger.kind {
        TriggerKind::Cron {
            expression,
            timezone,
        } => (expression.clone(), timezone.clone()),
        other => (String::new(), other.timezone_name().to_string()),
    };
    let zone = triggers::parse_timezone(&zone_name).unwrap_or(chrono_tz::Tz::UTC);
    Ok(GraphExecutionJobInfo {
        kind: scheduler_api::GRAPH_KIND.to_string(),
        id: schedule.id.clone(),
        schedule_id: Some(schedule.id.clone()),
        name: schedule.name.clone(),
        // A schedule added without a name bears AutoGPT's job function's name.
        agent_name: Some(schedule.name.clone()).filter(|n| n != DEFAULT_GRAPH_NAME),
        user_id: schedule.owner.clone(),
        graph_id: graph_id.clone(),
        graph_version: *graph_version,
        cron,
        input_data: input_data.clone(),
        input_credentials: input_credentials.clone(),
        next_run_time: schedule
            .next_run_at
            .map(|at: DateTime<Utc>| at.with_timezone(&zone).fixed_offset()),
        timezone: zone_name,
        organization_id: organization_id.clone().unwrap_or_default(),
        team_id: team_id.clone(),
        expert_id: expert_id.clone(),
        paused_reason: schedule.paused_reason.clone(),
    })
}

/// A change of the audit log as callers see it.
pub(crate) fn change(change: &jobstore::Change) -> scheduler_api::ScheduleChange {
    scheduler_api::ScheduleChange {
        seq: change.seq,
        at: change.at,
        jobstore: change.jobstore.as_str().to_string(),
        schedule_id: change.schedule_id.clone(),
        owner: change.owner.clone(),
        actor: change.actor.clone(),
        route: change.route.clone(),
        action: change.action.clone(),
        changes: change.changes.clone(),
    }
}
