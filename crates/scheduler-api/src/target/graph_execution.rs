//! The `graph_execution` target: AutoGPT's `add_graph_execution` on the execution service.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Origin, TargetData};
use crate::values::check_object;

pub(super) const TAG: &str = "graph_execution";

/// JSON-RPC `add_graph_execution` on the execution service, for the schedule's owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphExecutionTarget {
    pub graph_id: String,
    pub graph_version: i64,
    pub input_data: Value,
    /// `{}` when not given, as in AutoGPT's own `add_graph_execution_schedule`.
    #[serde(default = "empty_object")]
    pub input_credentials: Value,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl TargetData for GraphExecutionTarget {
    fn tag(&self) -> &'static str {
        TAG
    }

    fn validate(&self, _: Origin) -> Result<(), String> {
        check_object("target.input_data", &self.input_data)?;
        check_object("target.input_credentials", &self.input_credentials)
    }
}
