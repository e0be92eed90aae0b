//! The `device_job` target: a job queued on a device (or in a pool) of a configured device
//! runner, whose run lasts until the job has ended there.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Origin, TargetData};

pub(super) const TAG: &str = "device_job";

/// A job queued on a device (or in a pool) of a device runner named in the configuration
/// (`[device_runners.<runner>]`) with `enqueue_job`, the ledger key as its idempotency key.
/// Its run lasts until the job has ended on the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceJobTarget {
    pub runner: String,
    /// The phone's serial; or `pool`, for a job type that runs on a pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    pub job_type: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    /// 1 (highest) to 5.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Seconds or a duration such as `15m`, `1h`, `7d` (default: the job type's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
}

fn default_priority() -> u8 {
    5
}

impl TargetData for DeviceJobTarget {
    fn tag(&self) -> &'static str {
        TAG
    }

    fn lasts(&self) -> bool {
        true
    }

    fn validate(&self, _: Origin) -> Result<(), String> {
        let place = match (&self.device, &self.pool) {
            (Some(device), None) => ("device", device),
            (None, Some(pool)) => ("pool", pool),
            (Some(_), Some(_)) => {
                return Err("target.device and target.pool are exclusive: name one".into());
            }
            (None, None) => {
                return Err("target.device (a phone's serial) or target.pool is required".into());
            }
        };
        for (field, value) in [
            ("runner", &self.runner),
            place,
            ("job_type", &self.job_type),
        ] {
            if value.trim().is_empty() {
                return Err(format!("target.{field} must not be empty"));
            }
        }
        if !(1..=5).contains(&self.priority) {
            return Err(format!(
                "target.priority must be from 1 (highest) to 5, got {}",
                self.priority
            ));
        }
        match &self.max_duration {
            Some(text) if !is_duration(text) => Err(format!(
                "target.max_duration must be seconds or a duration such as 15m, 1h, 7d; got \
                 '{text}'"
            )),
            _ => Ok(()),
        }
    }
}

/// Whether `text` is whole seconds or a duration such as `15m`, `1h`, `7d`, as the device
/// runner reads `max_duration`.
fn is_duration(text: &str) -> bool {
    let text = text.trim();
    text.parse::<u64>().is_ok_and(|secs| secs > 0)
        || humantime::parse_duration(text).is_ok_and(|d| !d.is_zero())
}
