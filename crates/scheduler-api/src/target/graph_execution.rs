//! The `graph_execution` target: AutoGPT's `add_graph_execution` on the execution service.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Origin, TargetData};
use crate::requests::check_id;
use crate::values::check_object;

pub(super) const TAG: &str = "graph_execution";

/// JSON-RPC `add_graph_execution` on the execution service, for the schedule's owner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphExecutionTarget {
    pub graph_id: String,
    pub graph_version: i64,
    pub input_data: Value,
    /// `{}` when not given, as in AutoGPT's own `add_graph_execution_schedule`.
    #[serde(default = "empty_object")]
    pub input_credentials: Value,
    /// The organisation the schedule belongs to (AutoGPT's tenancy); absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    /// The team within the organisation; absent for the organisation's home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The hired expert the schedule belongs to; such a schedule is seen by its owner only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert_id: Option<String>,
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
        check_object("target.input_credentials", &self.input_credentials)?;
        for (field, id) in [
            ("target.organization_id", &self.organization_id),
            ("target.team_id", &self.team_id),
            ("target.expert_id", &self.expert_id),
        ] {
            if let Some(id) = id {
                check_id(field, id).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}
