//! `execute_<task>`: run a system task now.
//!
//! The tasks' targets (notification manager, database manager, storage service, alert webhook)
//! are not wired up in this build, so each call answers with a clear `RuntimeError` naming the
//! task instead of pretending to have run it.

use scheduler_api::{SYSTEM_TASKS, SchedulerError};
use serde_json::Value;

pub fn execute(task: &str, _kwargs: Option<Value>) -> Result<Value, SchedulerError> {
    debug_assert!(SYSTEM_TASKS.contains(&task));
    tracing::warn!(
        task,
        "system task requested but no target service is configured"
    );
    Err(SchedulerError::Runtime(format!(
        "system task '{task}' cannot run: its target service is not configured on this scheduler"
    )))
}
