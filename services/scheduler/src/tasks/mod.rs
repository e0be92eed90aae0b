//! System tasks: the scheduler's own recurring work, declared in the configuration
//! (`[system_tasks]`) and stored as schedules whose target is `system_task`, so they are claimed,
//! recorded in the run ledger and recovered like any other schedule.
//!
//! [`register`] makes the stores match the declarations at start: it adds what is missing,
//! replaces what changed and removes system schedules no longer declared. Running it again
//! changes nothing, so restarts and replicas never duplicate a task. [`run`] holds what each task
//! does.

mod declare;
mod run;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use jobstore::{JobStore, ListFilter, Policy, Schedule, StoreError, Target};
use serde::{Deserialize, Serialize};
use triggers::{TriggerKind, TriggerSpec};

use crate::stores::Stores;

pub use declare::{SystemTasksConfig, TaskDeclaration};
pub use run::TaskRunner;

/// The owner recorded on system task schedules and their runs.
pub const OWNER: &str = "system";

/// The tasks this scheduler knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemTask {
    /// The notification manager's `queue_weekly_summary`.
    ProcessWeeklySummary,
    /// QUEUED executions older than the threshold, from the database manager; alerts on any.
    ReportLateExecutions,
    /// Blocks failing too often in the last 24 hours, from the database manager; alerts on any.
    ReportBlockErrorRates,
    /// The storage service's `cleanup_expired_files`.
    CleanupExpiredFiles,
    /// The notification manager's `process_existing_batches`.
    ProcessExistingBatches,
}

impl SystemTask {
    pub const ALL: [SystemTask; 5] = [
        SystemTask::ProcessWeeklySummary,
        SystemTask::ReportLateExecutions,
        SystemTask::ReportBlockErrorRates,
        SystemTask::CleanupExpiredFiles,
        SystemTask::ProcessExistingBatches,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SystemTask::ProcessWeeklySummary => "process_weekly_summary",
            SystemTask::ReportLateExecutions => "report_late_executions",
            SystemTask::ReportBlockErrorRates => "report_block_error_rates",
            SystemTask::CleanupExpiredFiles => "cleanup_expired_files",
            SystemTask::ProcessExistingBatches => "process_existing_batches",
        }
    }

    pub fn parse(name: &str) -> Option<SystemTask> {
        SystemTask::ALL
            .into_iter()
            .find(|task| task.as_str() == name)
    }

    /// Checks a task's keyword arguments, naming what is wrong. Only
    /// `process_existing_batches` takes any: `{"notification_types": [...]}`.
    pub fn check_kwargs(self, kwargs: &serde_json::Value) -> Result<(), String> {
        if self != SystemTask::ProcessExistingBatches {
            return Ok(());
        }
        match kwargs.get("notification_types") {
            Some(types) if types.is_array() => Ok(()),
            _ => Err(format!(
                "process_existing_batches needs kwargs {{\"notification_types\": [...]}}, a \
                 list of notification types; got {}",
                describe(kwargs)
            )),
        }
    }
}

/// What was given instead of `{"notification_types": [...]}`.
fn describe(kwargs: &serde_json::Value) -> &'static str {
    match kwargs.as_object() {
        Some(fields) if fields.contains_key("notification_types") => {
            "an object whose notification_types is not a list"
        }
        Some(_) => "an object without notification_types",
        None => crate::json::kind(kwargs),
    }
}

/// A declared task and whether this process can run it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredTask {
    pub declaration: TaskDeclaration,
    /// The trigger it was registered with; `None` for a task run only by hand.
    pub trigger: Option<TriggerSpec>,
    /// Why it cannot run (its service is not configured, or its id is taken).
    pub disabled: Option<String>,
}

impl DeclaredTask {
    pub fn target(&self) -> Target {
        Target::SystemTask {
            task: self.declaration.task.as_str().to_string(),
            kwargs: self.declaration.kwargs.clone(),
        }
    }
}

/// Makes the stores hold exactly the declared, runnable, triggered tasks. Returns every
/// declaration with its state, for `get_registry` and `execute_<task>`.
pub async fn register(
    stores: &Stores,
    config: &SystemTasksConfig,
    now: DateTime<Utc>,
) -> Result<Vec<DeclaredTask>, StoreError> {
    let mut declared = Vec::new();
    let mut scheduled: HashSet<String> = HashSet::new();
    for declaration in config.declarations() {
        // The configuration was validated at load, so the trigger compiles.
        let trigger = declaration.trigger(now).ok().flatten();
        let mut task = DeclaredTask {
            declaration,
            trigger,
            disabled: None,
        };
        let id = task.declaration.id.clone();
        let store = stores.get(task.declaration.jobstore);
        task.disabled = match (config.service_url(task.declaration.task), store) {
            (Err(key), _) => {
                tracing::warn!(task = %id, "system task not registered: {key} is not set");
                Some(format!("{key} is not set"))
            }
            (Ok(_), None) => Some(format!(
                "jobstore '{}' is not served",
                task.declaration.jobstore.as_str()
            )),
            (Ok(_), Some(store)) => match &task.trigger {
                None => None,
                Some(trigger) => ensure_scheduled(store, &task, trigger, now).await?,
            },
        };
        if task.disabled.is_none() && task.trigger.is_some() {
            scheduled.insert(id);
        }
        declared.push(task);
    }
    remove_undeclared(stores, &scheduled).await?;
    Ok(declared)
}

/// Adds or replaces the task's schedule. Returns why it cannot be registered (its id belongs to
/// a user's schedule), or `None` once it is.
async fn ensure_scheduled(
    store: &std::sync::Arc<dyn JobStore>,
    task: &DeclaredTask,
    trigger: &TriggerSpec,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let id = &task.declaration.id;
    let target = task.target();
    if let Some(existing) = store.get(id).await? {
        if !existing.target.is_system_task() {
            let reason = format!("the id '{id}' is taken by a user's schedule");
            tracing::error!(task = %id, "system task not registered: {reason}");
            return Ok(Some(reason));
        }
        // A recurring task without a next run was parked (an unreadable row, say): renew it.
        if existing.target == target
            && same_trigger(&existing.trigger, trigger)
            && existing.next_run_at.is_some()
        {
            tracing::debug!(task = %id, next_run_at = ?existing.next_run_at, "system task already registered");
            return Ok(None);
        }
        store.delete(id).await?;
        tracing::info!(task = %id, "system task declaration changed; replacing its schedule");
    }
    let next_run_at = trigger.compile().ok().and_then(|t| t.next_after(now));
    let schedule = Schedule {
        id: id.clone(),
        name: id.clone(),
        owner: OWNER.to_string(),
        trigger: trigger.clone(),
        target,
        policy: Policy::default(),
        paused: false,
        tags: Vec::new(),
        paused_reason: None,
        next_run_at,
        created_at: now,
    };
    match store.insert(&schedule).await {
        Ok(()) => {
            tracing::info!(task = %id, jobstore = store.jobstore().as_str(), ?next_run_at, "system task registered");
            Ok(None)
        }
        // Another replica registered it at the same moment.
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Two triggers fire alike: intervals compare by period only, since each registration anchors
/// its interval at its own start.
fn same_trigger(stored: &TriggerSpec, declared: &TriggerSpec) -> bool {
    match (&stored.kind, &declared.kind) {
        (
            TriggerKind::Interval { every_secs: a, .. },
            TriggerKind::Interval { every_secs: b, .. },
        ) => a == b && stored.start_at == declared.start_at && stored.end_at == declared.end_at,
        _ => stored == declared,
    }
}

async fn remove_undeclared(stores: &Stores, keep: &HashSet<String>) -> Result<(), StoreError> {
    let filter = ListFilter {
        owner: Some(OWNER.to_string()),
        graph_id: None,
        include_inactive: true,
        ..ListFilter::default()
    };
    for store in stores.all() {
        for schedule in store.list(&filter).await? {
            if schedule.target.is_system_task() && !keep.contains(&schedule.id) {
                store.delete(&schedule.id).await?;
                tracing::info!(task = %schedule.id, jobstore = store.jobstore().as_str(), "system task no longer declared (or disabled); its schedule is removed");
            }
        }
    }
    Ok(())
}
