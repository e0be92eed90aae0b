//! System tasks: the scheduler's own recurring work, declared in the configuration
//! (`[system_tasks]`) and stored as schedules whose target is `system_task`, so they are claimed,
//! recorded in the run ledger and recovered like any other schedule.
//!
//! [`register`] makes the stores match the declarations at start through the one mechanism of
//! declared schedules ([`crate::declared`]). [`run`] holds what each task does.

mod declare;
mod run;

use chrono::{DateTime, Utc};
use jobstore::{Policy, Schedule, StoreError, Target};
use serde::{Deserialize, Serialize};
use triggers::TriggerSpec;

use crate::declared::{self, ScheduleDeclaration};
use crate::stores::Stores;

pub use declare::{SystemTasksConfig, TaskDeclaration};
pub use run::TaskRunner;

/// The owner recorded on system task schedules and their runs.
pub const OWNER: &str = scheduler_api::SYSTEM_OWNER;

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

/// Makes the stores hold exactly the declared schedules: the runnable, triggered system tasks
/// and the `[[schedules]]` of the configuration, through one mechanism ([`declared::sync`]).
/// Returns every task declaration with its state, for `get_registry` and `execute_<task>`.
pub async fn register(
    stores: &Stores,
    config: &SystemTasksConfig,
    schedules: &[ScheduleDeclaration],
    now: DateTime<Utc>,
) -> Result<Vec<DeclaredTask>, StoreError> {
    let mut tasks = Vec::new();
    let mut wanted = Vec::new();
    for declaration in config.declarations() {
        // The configuration was validated at load, so the trigger compiles.
        let trigger = declaration.trigger(now).ok().flatten();
        let mut task = DeclaredTask {
            declaration,
            trigger,
            disabled: None,
        };
        let id = task.declaration.id.clone();
        if let Err(key) = config.service_url(task.declaration.task) {
            tracing::warn!(task = %id, "system task not registered: {key} is not set");
            task.disabled = Some(format!("{key} is not set"));
        } else if stores.get(task.declaration.jobstore).is_none() {
            task.disabled = Some(format!(
                "jobstore '{}' is not served",
                task.declaration.jobstore.as_str()
            ));
        } else if let Some(trigger) = &task.trigger {
            let schedule = Schedule {
                id: id.clone(),
                name: id.clone(),
                owner: OWNER.to_string(),
                trigger: trigger.clone(),
                target: task.target(),
                policy: Policy::default(),
                tags: Vec::new(),
                paused: false,
                paused_reason: None,
                next_run_at: None,
                created_at: now,
            };
            wanted.push(declared::declared(task.declaration.jobstore, schedule, now));
        }
        tasks.push(task);
    }
    wanted.extend(
        schedules
            .iter()
            .map(|declaration| declaration.schedule(now)),
    );
    let refused = declared::sync(stores, &wanted).await?;
    for task in &mut tasks {
        if let Some(reason) = refused.get(&task.declaration.id) {
            task.disabled = Some(reason.clone());
        }
    }
    Ok(tasks)
}
