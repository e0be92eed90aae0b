//! The `system_task` target: one of AutoGPT's maintenance tasks, run by the scheduler's own
//! task code ([`crate::tasks`]).

use async_trait::async_trait;
use chrono::Utc;
use jobstore::RunRecord;
use scheduler_api::SystemTaskTarget;
use serde_json::Value;

use super::{Kind, Targets};
use crate::autogpt::tasks::SystemTask;
use crate::endpoint::DispatchError;

#[async_trait]
impl Kind for SystemTaskTarget {
    async fn send(&self, _run: &RunRecord, targets: &Targets) -> Result<Value, DispatchError> {
        let Some(task) = SystemTask::parse(&self.task) else {
            return Err(DispatchError::Rejected(format!(
                "unknown system task '{}'",
                self.task
            )));
        };
        targets.tasks.run(task, &self.kwargs, Utc::now()).await
    }
}
