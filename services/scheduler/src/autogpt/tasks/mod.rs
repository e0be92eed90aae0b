//! System tasks: the scheduler's own recurring work, declared in the configuration
//! (`[system_tasks]`) and stored as schedules whose target is `system_task`, so they are claimed,
//! recorded in the run ledger and recovered like any other schedule.
//!
//! [`crate::declared::register`] makes the stores match the declarations at start, with the
//! `[[schedules]]` of the configuration. [`run`] holds what each task does.

mod declare;
mod run;

use jobstore::Target;
use scheduler_api::SystemTaskTarget;
use serde::{Deserialize, Serialize};
use triggers::TriggerSpec;

pub use declare::{SystemTasksConfig, TaskDeclaration};
pub(crate) use run::TaskRunner;

/// The owner recorded on system task schedules and their runs.
pub(crate) const OWNER: &str = scheduler_api::SYSTEM_OWNER;

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
        None => scheduler_api::json_kind(kwargs),
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
        Target::SystemTask(SystemTaskTarget {
            task: self.declaration.task.as_str().to_string(),
            kwargs: self.declaration.kwargs.clone(),
        })
    }
}
