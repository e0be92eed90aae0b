//! The `redis_publish` target: a PUBLISH on the configured Redis of
//! `{schedule_id, scheduled_time, idempotency_key, message}`.

use async_trait::async_trait;
use jobstore::RunRecord;
use scheduler_api::RedisPublishTarget;
use serde_json::{Value, json};

use super::{Configured, Kind, Targets, scheduled_time};
use crate::endpoint::DispatchError;

#[async_trait]
impl Kind for RedisPublishTarget {
    fn check(&self, configured: &Configured) -> Result<(), String> {
        if configured.redis {
            return Ok(());
        }
        Err("redis_publish targets need redis.url in the scheduler's configuration".into())
    }

    /// Answers how many subscribers received the message.
    async fn send(&self, run: &RunRecord, targets: &Targets) -> Result<Value, DispatchError> {
        let mut payload = json!({
            "schedule_id": run.schedule_id,
            "scheduled_time": scheduled_time(run),
            "idempotency_key": run.idempotency_key(),
            "message": self.message,
        });
        // The attempt's trace, for the subscriber to continue.
        if let Some(traceparent) = service_kit::traces::traceparent() {
            payload[service_kit::traces::TRACEPARENT] = traceparent.into();
        }
        let receivers = targets
            .outbound
            .publish_text(&self.channel, &payload.to_string())
            .await?;
        Ok(json!({"receivers": receivers}))
    }
}
