//! What a fire does and how overlapping runs are treated: the target kinds and the overlap
//! policy, one JSON shape for the wire and for storage (a `type` tag per kind, so new targets
//! add variants, not columns).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a fire does. Stored as JSON with a `type` tag so new targets add variants, not columns.
///
/// The targets that call out name an endpoint of the configuration (`endpoint`); a raw `url`
/// is accepted only in schedules declared in the configuration, never through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// JSON-RPC `add_graph_execution` on the execution service, for the schedule's owner.
    GraphExecution {
        graph_id: String,
        graph_version: i64,
        input_data: Value,
        /// `{}` when not given, as in AutoGPT's own `add_graph_execution_schedule`.
        #[serde(default = "empty_object")]
        input_credentials: Value,
    },
    /// One of the scheduler's own system tasks, named by `task`, with its keyword arguments.
    SystemTask {
        task: String,
        #[serde(default)]
        kwargs: Value,
    },
    /// A JSON-RPC 2.0 call of `method` with `params`, to which `idempotency_key` and
    /// `scheduled_time` are added.
    Rpc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        method: String,
        #[serde(default)]
        params: Map<String, Value>,
    },
    /// An HTTP request to `path` on the endpoint, carrying the `Idempotency-Key` and
    /// `X-Scheduled-Time` headers; an answer outside `expected_status` is a failure.
    Http {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default = "default_http_method")]
        method: String,
        #[serde(default)]
        path: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        body: Value,
        #[serde(default = "default_expected_status")]
        expected_status: String,
    },
    /// A PUBLISH on `channel` of `{schedule_id, scheduled_time, idempotency_key, message}`.
    RedisPublish {
        channel: String,
        #[serde(default)]
        message: Value,
    },
    /// A job queued on a device (or in a pool) of a device runner named in the configuration
    /// (`[device_runners.<runner>]`) with `enqueue_job`, the ledger key as its idempotency key.
    /// Its run lasts until the job has ended on the runner.
    DeviceJob {
        runner: String,
        /// The phone's serial; or `pool`, for a job type that runs on a pool.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pool: Option<String>,
        job_type: String,
        #[serde(default)]
        params: Map<String, Value>,
        /// 1 (highest) to 5.
        #[serde(default = "default_priority")]
        priority: u8,
        /// Seconds or a duration such as `15m`, `1h`, `7d` (default: the job type's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_duration: Option<String>,
    },
    /// One attempt of a watch's check (the schedule's id is the watch's); made by `add_watch`,
    /// never through the schedule API. Its run lasts until the check has answered.
    Watch { check: crate::watch::Check },
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn default_priority() -> u8 {
    5
}

fn default_http_method() -> String {
    "POST".to_string()
}

fn default_expected_status() -> String {
    "2xx".to_string()
}

impl Target {
    /// The graph this target runs, for filtering listings.
    pub fn graph_id(&self) -> Option<&str> {
        match self {
            Target::GraphExecution { graph_id, .. } => Some(graph_id),
            _ => None,
        }
    }

    /// Whether this is a system task rather than a user's schedule.
    pub fn is_system_task(&self) -> bool {
        matches!(self, Target::SystemTask { .. })
    }

    /// The kind, as its `type` tag spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::GraphExecution { .. } => "graph_execution",
            Target::SystemTask { .. } => "system_task",
            Target::Rpc { .. } => "rpc",
            Target::Http { .. } => "http",
            Target::RedisPublish { .. } => "redis_publish",
            Target::DeviceJob { .. } => "device_job",
            Target::Watch { .. } => "watch",
        }
    }

    /// The kinds there are, as their tags spell them.
    pub const KINDS: [&'static str; 7] = [
        "graph_execution",
        "system_task",
        "rpc",
        "http",
        "redis_publish",
        "device_job",
        "watch",
    ];

    /// The configured endpoint and the raw URL a calling target names.
    pub fn address(&self) -> Option<(Option<&str>, Option<&str>)> {
        match self {
            Target::Rpc { endpoint, url, .. } | Target::Http { endpoint, url, .. } => {
                Some((endpoint.as_deref(), url.as_deref()))
            }
            _ => None,
        }
    }

    /// Whether a run of this target lasts until the target answers (for a device job, until
    /// the job has ended), so that the overlap policy applies: graph executions and system
    /// tasks are handed over at once, as AutoGPT does, and never skipped for overlapping.
    pub fn has_duration(&self) -> bool {
        matches!(
            self,
            Target::Rpc { .. }
                | Target::Http { .. }
                | Target::DeviceJob { .. }
                | Target::Watch { .. }
        )
    }

    /// Checks the fields a caller gave, naming the one at fault. `raw_urls` says whether a
    /// raw `url` may stand for an endpoint (declared schedules only).
    pub fn validate(&self, raw_urls: bool) -> Result<(), String> {
        if let Some((endpoint, url)) = self.address() {
            let kind = self.kind();
            match (endpoint, url) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "target.endpoint and target.url are exclusive: name one ({kind})"
                    ));
                }
                (None, None) => {
                    return Err(format!(
                        "target.endpoint is required: the name of an endpoint in the \
                         scheduler's configuration ({kind})"
                    ));
                }
                (None, Some(_)) if !raw_urls => {
                    return Err(format!(
                        "target.url is accepted only in schedules declared in the \
                         configuration; name a configured endpoint in target.endpoint ({kind})"
                    ));
                }
                (None, Some(url)) => check_url(url)?,
                (Some(name), None) if name.trim().is_empty() => {
                    return Err("target.endpoint must not be empty".into());
                }
                _ => {}
            }
        }
        match self {
            Target::Watch { .. } => {
                Err("target.type 'watch' is made by add_watch; a schedule cannot be one".into())
            }
            Target::Rpc { method, .. } if method.trim().is_empty() => {
                Err("target.method must not be empty".into())
            }
            Target::Http {
                method,
                path,
                headers,
                expected_status,
                ..
            } => {
                http_method(method)?;
                if !path.is_empty() && !path.starts_with('/') {
                    return Err(format!("target.path must start with '/', got '{path}'"));
                }
                for (name, value) in headers {
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                    {
                        return Err(format!("target.headers: '{name}' is not a header name"));
                    }
                    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
                        return Err(format!("target.headers.{name} holds a line break"));
                    }
                }
                ExpectedStatus::parse(expected_status).map(drop)
            }
            Target::RedisPublish { channel, .. } if channel.is_empty() => {
                Err("target.channel must not be empty".into())
            }
            Target::DeviceJob {
                runner,
                device,
                pool,
                job_type,
                priority,
                max_duration,
                ..
            } => {
                let place = match (device, pool) {
                    (Some(device), None) => ("device", device),
                    (None, Some(pool)) => ("pool", pool),
                    (Some(_), Some(_)) => {
                        return Err("target.device and target.pool are exclusive: name one".into());
                    }
                    (None, None) => {
                        return Err(
                            "target.device (a phone's serial) or target.pool is required".into(),
                        );
                    }
                };
                for (field, value) in [("runner", runner), place, ("job_type", job_type)] {
                    if value.trim().is_empty() {
                        return Err(format!("target.{field} must not be empty"));
                    }
                }
                if !(1..=5).contains(priority) {
                    return Err(format!(
                        "target.priority must be from 1 (highest) to 5, got {priority}"
                    ));
                }
                match max_duration {
                    Some(text) if !is_duration(text) => Err(format!(
                        "target.max_duration must be seconds or a duration such as 15m, 1h, \
                         7d; got '{text}'"
                    )),
                    _ => Ok(()),
                }
            }
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

/// The HTTP methods an `http` target may use.
pub fn http_method(method: &str) -> Result<&'static str, String> {
    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    METHODS
        .into_iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .ok_or_else(|| {
            format!(
                "target.method '{method}' is not one of {}",
                METHODS.join(", ")
            )
        })
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(format!(
            "target.url must be an http:// or https:// URL with a host, got '{url}'"
        )),
    }
}

/// Which answers of an `http` target count as success: a class (`"2xx"`) or one status
/// (`"204"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedStatus {
    Class(u16),
    Exactly(u16),
}

impl ExpectedStatus {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "target.expected_status must be a status class such as \"2xx\" or one status \
                 such as \"204\", got '{text}'"
            )
        };
        let text = text.trim();
        if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
            return match class.as_bytes() {
                [digit @ b'1'..=b'5'] => Ok(ExpectedStatus::Class(u16::from(digit - b'0'))),
                _ => Err(bad()),
            };
        }
        match text.parse::<u16>() {
            Ok(code @ 100..=599) => Ok(ExpectedStatus::Exactly(code)),
            _ => Err(bad()),
        }
    }

    pub fn accepts(self, status: u16) -> bool {
        match self {
            ExpectedStatus::Class(class) => status / 100 == class,
            ExpectedStatus::Exactly(code) => status == code,
        }
    }
}

/// What happens to an occurrence that falls due while a run of the same schedule is in
/// progress (targets whose runs last, see [`Target::has_duration`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skipped: a `skipped` row with the reason `overlap`.
    #[default]
    Skip,
    /// At most one waits, and starts when the running one ends; further ones are skipped.
    BufferOne,
    /// Started anyway.
    AllowAll,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
            Overlap::AllowAll => "allow_all",
        }
    }
}
