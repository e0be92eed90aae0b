//! The `redis_publish` target: a message on a channel of the configured Redis.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Origin, TargetData};

pub(super) const TAG: &str = "redis_publish";

/// A PUBLISH on `channel` of `{schedule_id, scheduled_time, idempotency_key, message}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisPublishTarget {
    pub channel: String,
    #[serde(default)]
    pub message: Value,
}

impl TargetData for RedisPublishTarget {
    fn tag(&self) -> &'static str {
        TAG
    }

    fn validate(&self, _: Origin) -> Result<(), String> {
        if self.channel.is_empty() {
            return Err("target.channel must not be empty".into());
        }
        Ok(())
    }
}
