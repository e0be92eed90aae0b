//! The `device_job` target: a job queued on a device (or in a pool) of a configured device
//! runner, whose run lasts until the job has ended there.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Origin, TargetData};

pub(super) const TAG: &str = "device_job";

/// A job queued on a device (or in a pool) of a device runner named in the configuration
/// (`[device_runners.<runner>]`) with `enqueue_job`, the ledger key as its idempotency key.
/// Its run lasts until the job has ended on the runner.
///
/// Instead of `runner` and `device`, `select` has each occurrence placed on a phone of the
/// fleet that carries its tags. The occurrence's own copy of the target (its ledger row) then
/// records where it was placed: `runner` and `device` set beside `select`, and `moves`, how
/// often it was taken back from a quarantined phone and placed again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceJobTarget {
    /// The runner (`[device_runners.<runner>]`); empty with `select`, until placed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runner: String,
    /// The phone's serial; or `pool`, for a job type that runs on a pool; or `select`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// A phone chosen for each occurrence by what it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<DeviceSelector>,
    /// How often an occurrence placed by `select` was moved to another phone (in the
    /// occurrence's copy only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moves: u32,
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

fn is_zero(moves: &u32) -> bool {
    *moves == 0
}

/// Which phones an occurrence may go to: one that carries every tag (and is online, inside
/// its health gates and not quarantined), on any runner or on the one named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSelector {
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
}

impl DeviceSelector {
    /// The most tags a selector names.
    pub const MAX_TAGS: usize = 32;

    fn validate(&self) -> Result<(), String> {
        if self.tags.is_empty() {
            return Err("target.select.tags must name at least one tag".into());
        }
        if self.tags.len() > Self::MAX_TAGS {
            return Err(format!(
                "target.select.tags names {} tags; at most {}",
                self.tags.len(),
                Self::MAX_TAGS
            ));
        }
        for tag in &self.tags {
            let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
            if tag.is_empty() || tag.len() > 64 || !tag.bytes().all(allowed) {
                return Err(format!(
                    "target.select.tags: '{tag}' must be 1 to 64 letters, digits, '.', '_' or '-'"
                ));
            }
        }
        if self.runner.as_ref().is_some_and(|r| r.trim().is_empty()) {
            return Err(
                "target.select.runner must not be empty (leave it out for any runner)".into(),
            );
        }
        Ok(())
    }
}

impl DeviceJobTarget {
    /// Where an occurrence placed by `select` went: its runner and phone.
    pub fn placed(&self) -> Option<(&str, &str)> {
        match (&self.select, &self.device) {
            (Some(_), Some(device)) if !self.runner.is_empty() => {
                Some((self.runner.as_str(), device.as_str()))
            }
            _ => None,
        }
    }

    /// The idempotency key of its job on the runner: the occurrence's key, and after a move
    /// the number of the move, so that the job a phone was given back is not the one found.
    pub fn job_key(&self, occurrence_key: &str) -> String {
        match self.moves {
            0 => occurrence_key.to_string(),
            moves => format!("{occurrence_key}~move{moves}"),
        }
    }
}

impl TargetData for DeviceJobTarget {
    fn tag(&self) -> &'static str {
        TAG
    }

    fn lasts(&self) -> bool {
        true
    }

    fn validate(&self, _: Origin) -> Result<(), String> {
        if self.moves != 0 {
            return Err(
                "target.moves is the scheduler's record of an occurrence; leave it out".into(),
            );
        }
        let place = match (&self.device, &self.pool, &self.select) {
            (Some(device), None, None) => ("device", device),
            (None, Some(pool), None) => ("pool", pool),
            (None, None, Some(select)) => {
                select.validate()?;
                if !self.runner.is_empty() {
                    return Err("target.runner goes inside target.select with a selector \
                         (select = {tags, runner})"
                        .into());
                }
                ("job_type", &self.job_type)
            }
            (None, None, None) => {
                return Err(
                    "target.device (a phone's serial), target.pool or target.select is required"
                        .into(),
                );
            }
            _ => {
                return Err(
                    "target.device, target.pool and target.select are exclusive: give one".into(),
                );
            }
        };
        let runner = ("runner", &self.runner);
        let fields = if self.select.is_some() {
            vec![place]
        } else {
            vec![runner, place, ("job_type", &self.job_type)]
        };
        for (field, value) in fields {
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
