//! The `system_task` target: one of the scheduler's own maintenance tasks, declared in the
//! configuration.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Origin, TargetData};

pub(super) const TAG: &str = "system_task";

/// One of the scheduler's own system tasks, named by `task`, with its keyword arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemTaskTarget {
    pub task: String,
    #[serde(default)]
    pub kwargs: Value,
}

impl TargetData for SystemTaskTarget {
    fn tag(&self) -> &'static str {
        TAG
    }

    fn validate(&self, origin: Origin) -> Result<(), String> {
        if origin == Origin::Api {
            return Err(
                "system_task targets are declared in the configuration, not created \
                        through the API"
                    .into(),
            );
        }
        if !crate::SYSTEM_TASKS.contains(&self.task.as_str()) {
            return Err(format!("target.task '{}' is not a system task", self.task));
        }
        Ok(())
    }
}
