//! The `rpc` target: a JSON-RPC 2.0 call on a configured endpoint.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Origin, TargetData, check_address};

pub(super) const TAG: &str = "rpc";

/// A JSON-RPC 2.0 call of `method` with `params`, to which `idempotency_key` and
/// `scheduled_time` are added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub method: String,
    #[serde(default)]
    pub params: Map<String, Value>,
}

impl TargetData for RpcTarget {
    fn tag(&self) -> &'static str {
        TAG
    }

    fn lasts(&self) -> bool {
        true
    }

    fn validate(&self, origin: Origin) -> Result<(), String> {
        check_address(TAG, self.endpoint.as_deref(), self.url.as_deref(), origin)?;
        if self.method.trim().is_empty() {
            return Err("target.method must not be empty".into());
        }
        Ok(())
    }
}
