//! Watches: an agent's monitoring jobs. A watch repeats a check every `interval_seconds` until
//! it succeeds or `max_attempts` checks have not, then completes once: a notification on Redis
//! (`notifications:{platform}`) or a `resume_conversation` call to the agent's core.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The most attempts a watch may have.
pub const MAX_WATCH_ATTEMPTS: u32 = 100_000;
/// The longest interval between attempts: one day.
pub const MAX_WATCH_INTERVAL_SECS: u64 = 86_400;
/// The longest `delay`: thirty days.
pub const MAX_DELAY_SECS: u64 = 30 * 86_400;

/// What a watch checks, from its `job_type` and `check_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job_type", rename_all = "snake_case")]
pub enum Check {
    /// A JSON-RPC call of `tool` with `args` on the module named in the configuration
    /// (`[modules.<module>]`); it succeeds when the result's `success_field` (a dotted path)
    /// equals one of `success_values`.
    PollModule {
        module: String,
        tool: String,
        #[serde(default)]
        args: Map<String, Value>,
        success_field: String,
        success_values: Vec<Value>,
    },
    /// A request to `url`; it succeeds when the answer has `expected_status`.
    PollUrl {
        url: String,
        #[serde(default = "default_method")]
        method: String,
        #[serde(default = "default_expected_status")]
        expected_status: u16,
    },
    /// One attempt after `delay_seconds`, which succeeds.
    Delay { delay_seconds: u64 },
}

fn default_method() -> String {
    "GET".to_string()
}

fn default_expected_status() -> u16 {
    200
}

impl Check {
    /// The job types there are, as the seed spells them.
    pub const KINDS: [&'static str; 3] = ["poll_module", "poll_url", "delay"];

    /// The check a `job_type` and its `check_config` describe, or what is wrong with them.
    pub fn parse(job_type: &str, check_config: &Value) -> Result<Check, String> {
        if !Self::KINDS.contains(&job_type) {
            return Err(format!(
                "job_type must be one of {}, got '{job_type}'",
                Self::KINDS.join(", ")
            ));
        }
        let Value::Object(config) = check_config else {
            return Err(format!(
                "check_config must be an object for job_type '{job_type}'"
            ));
        };
        let mut tagged = config.clone();
        tagged.insert("job_type".into(), Value::String(job_type.into()));
        let check: Check = serde_json::from_value(Value::Object(tagged))
            .map_err(|error| format!("check_config for job_type '{job_type}': {error}"))?;
        check.validate()?;
        Ok(check)
    }

    /// The `check_config` this check is parsed from: its fields without the `job_type`.
    pub fn config(&self) -> Value {
        let mut config = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut config {
            map.remove("job_type");
        }
        config
    }

    /// Checks the fields serde cannot: names not empty, a method and a status HTTP has, a
    /// delay within [`MAX_DELAY_SECS`].
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            Check::PollModule {
                module,
                tool,
                success_field,
                success_values,
                ..
            } => {
                for (name, value) in [
                    ("module", module),
                    ("tool", tool),
                    ("success_field", success_field),
                ] {
                    if value.trim().is_empty() {
                        return Err(format!("check_config.{name} must not be empty"));
                    }
                }
                if success_values.is_empty() {
                    return Err("check_config.success_values must name at least one value".into());
                }
            }
            Check::PollUrl {
                method,
                expected_status,
                ..
            } => {
                if crate::http_method(method).is_err() {
                    return Err(format!(
                        "check_config.method '{method}' is not one of GET, POST, PUT, PATCH, \
                         DELETE, HEAD, OPTIONS"
                    ));
                }
                if !(100..=599).contains(expected_status) {
                    return Err(format!(
                        "check_config.expected_status must be an HTTP status (100-599), got \
                         {expected_status}"
                    ));
                }
            }
            Check::Delay { delay_seconds } => {
                if *delay_seconds == 0 || *delay_seconds > MAX_DELAY_SECS {
                    return Err(format!(
                        "check_config.delay_seconds must be 1 to {MAX_DELAY_SECS} (30 days), \
                         got {delay_seconds}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The `job_type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::PollModule { .. } => "poll_module",
            Check::PollUrl { .. } => "poll_url",
            Check::Delay { .. } => "delay",
        }
    }

    /// The check in a few words, for logs and a default failure message.
    pub fn describe(&self) -> String {
        match self {
            Check::PollModule {
                module,
                tool,
                success_field,
                ..
            } => format!("poll_module {module}.{tool} for {success_field}"),
            Check::PollUrl {
                url,
                method,
                expected_status,
            } => format!("poll_url {method} {url} for status {expected_status}"),
            Check::Delay { delay_seconds } => format!("delay of {delay_seconds}s"),
        }
    }
}

/// What a watch does once it has ended: notify, or resume the conversation (falling back to
/// the notification when the core cannot be reached).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnComplete {
    #[default]
    Notify,
    ResumeConversation,
}

impl OnComplete {
    pub fn as_str(self) -> &'static str {
        match self {
            OnComplete::Notify => "notify",
            OnComplete::ResumeConversation => "resume_conversation",
        }
    }

    /// The mode `on_complete` names, or what is wrong with it.
    pub fn parse(text: &str) -> Result<OnComplete, String> {
        match text {
            "notify" => Ok(OnComplete::Notify),
            "resume_conversation" => Ok(OnComplete::ResumeConversation),
            other => Err(format!(
                "on_complete must be 'notify' or 'resume_conversation', got '{other}'"
            )),
        }
    }
}

/// A watch's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchStatus {
    Active,
    Completed,
    Failed,
    Cancelled,
}

impl WatchStatus {
    pub const ALL: [WatchStatus; 4] = [
        WatchStatus::Active,
        WatchStatus::Completed,
        WatchStatus::Failed,
        WatchStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WatchStatus::Active => "active",
            WatchStatus::Completed => "completed",
            WatchStatus::Failed => "failed",
            WatchStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<WatchStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// The last check of a watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Which attempt this was, from 1.
    pub attempt: u32,
    /// The occurrence it was, as the ledger keys it.
    pub scheduled_time: DateTime<Utc>,
    pub checked_at: DateTime<Utc>,
    pub success: bool,
    /// What `{result}` stands for: the field's value, the status code, the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Why the check could not be made (a timeout, a refused connection, a JSON-RPC error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a watch's completion has reached its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Persisted, not yet delivered: it is sent, and retried, until it is.
    Pending,
    Delivered,
}

/// The completion's way to its user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub state: DeliveryState,
    /// Sends tried so far.
    pub attempts: u32,
    /// When the next send is due, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
    /// How it was delivered (`notify` or `resume_conversation`), once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<OnComplete>,
    /// What happened: the last error while pending; the fallback taken, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A watch, with the fields of the agent's `ScheduledJob`, its `workflow_id`, its last check
/// and its completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    pub id: String,
    pub user_id: String,
    pub conversation_id: Option<String>,
    pub platform: Option<String>,
    pub platform_channel_id: Option<String>,
    pub platform_thread_id: Option<String>,
    pub workflow_id: Option<String>,
    pub job_type: String,
    pub check_config: Value,
    pub interval_seconds: u64,
    pub max_attempts: u32,
    pub attempts: u32,
    pub on_success_message: String,
    pub on_failure_message: Option<String>,
    pub on_complete: OnComplete,
    pub status: WatchStatus,
    /// The next check; null once the watch has ended.
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub last_result: Option<CheckResult>,
    /// The message the completion carries, `{result}` replaced; null while active and for a
    /// cancelled watch (cancelling sends nothing).
    pub message: Option<String>,
    /// The completion's delivery, once there is one to deliver.
    pub delivery: Option<Delivery>,
}

impl Watch {
    /// The check the watch makes (its fields were checked when it was added).
    pub fn check(&self) -> Result<Check, String> {
        Check::parse(&self.job_type, &self.check_config)
    }

    /// The Redis channel its notification goes on: `notifications:{platform}`.
    pub fn channel(&self) -> String {
        format!(
            "notifications:{}",
            self.platform.as_deref().unwrap_or("default")
        )
    }
}

/// One page of `list_watches`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchPage {
    pub watches: Vec<Watch>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}
