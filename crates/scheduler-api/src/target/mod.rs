//! What a fire does and how overlapping runs are treated: the target kinds and the overlap
//! policy, one JSON shape for the wire and for storage (a `type` tag per kind, so new targets
//! add variants, not columns).
//!
//! Each kind's data is a struct of its own in a file of its own, with what the data alone can
//! say of itself ([`TargetData`]): its tag, whether its runs last, and the check of its fields.
//! What a kind does when it fires lives beside the scheduler's other code for that kind
//! (`services/scheduler/src/targets/`). Adding a kind means a file here, a line in [`Target`]
//! and one in [`Target::data`].

mod device_job;
mod graph_execution;
mod http;
mod redis_publish;
mod rpc;
mod system_task;
mod watch;

pub use device_job::{DeviceJobTarget, DeviceSelector};
pub use graph_execution::GraphExecutionTarget;
pub use http::{ExpectedStatus, HttpTarget, http_method};
pub use redis_publish::RedisPublishTarget;
pub use rpc::RpcTarget;
pub use system_task::SystemTaskTarget;
pub use watch::WatchTarget;

use serde::{Deserialize, Serialize};

/// What a fire does. Stored as JSON with a `type` tag so new targets add variants, not columns.
///
/// The targets that call out name an endpoint of the configuration (`endpoint`); a raw `url`
/// is accepted only in schedules declared in the configuration, never through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    /// JSON-RPC `add_graph_execution` on the execution service, for the schedule's owner.
    GraphExecution(GraphExecutionTarget),
    /// One of the scheduler's own system tasks, named by `task`, with its keyword arguments.
    SystemTask(SystemTaskTarget),
    /// A JSON-RPC 2.0 call of a method on a configured endpoint.
    Rpc(RpcTarget),
    /// An HTTP request to a path on a configured endpoint.
    Http(HttpTarget),
    /// A PUBLISH on a channel of the configured Redis.
    RedisPublish(RedisPublishTarget),
    /// A job queued on a device (or in a pool) of a configured device runner.
    DeviceJob(DeviceJobTarget),
    /// One attempt of a watch's check; made by `add_watch`, never through the schedule API.
    Watch(WatchTarget),
}

/// Where a target comes from, which decides what it may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A caller of the API: endpoints by name only.
    Api,
    /// A schedule declared in the configuration: a raw `url` may stand for an endpoint.
    Configuration,
}

/// What a target kind's data says of itself.
pub trait TargetData {
    /// The kind, as its `type` tag spells it.
    fn tag(&self) -> &'static str;

    /// Whether a run lasts until the target has answered (for a device job, until the job has
    /// ended), so that the overlap policy applies to it.
    fn lasts(&self) -> bool {
        false
    }

    /// Checks the fields a caller gave, naming the one at fault.
    fn validate(&self, origin: Origin) -> Result<(), String>;
}

impl Target {
    /// The kinds there are, as their tags spell them.
    pub const KINDS: [&'static str; 7] = [
        graph_execution::TAG,
        system_task::TAG,
        rpc::TAG,
        http::TAG,
        redis_publish::TAG,
        device_job::TAG,
        watch::TAG,
    ];

    /// The data of whichever kind this is.
    pub fn data(&self) -> &dyn TargetData {
        match self {
            Target::GraphExecution(data) => data,
            Target::SystemTask(data) => data,
            Target::Rpc(data) => data,
            Target::Http(data) => data,
            Target::RedisPublish(data) => data,
            Target::DeviceJob(data) => data,
            Target::Watch(data) => data,
        }
    }

    /// The kind, as its `type` tag spells it.
    pub fn kind(&self) -> &'static str {
        self.data().tag()
    }

    /// Whether a run of this target lasts until the target answers (for a device job, until
    /// the job has ended), so that the overlap policy applies: graph executions and system
    /// tasks are handed over at once, as AutoGPT does, and never skipped for overlapping.
    pub fn has_duration(&self) -> bool {
        self.data().lasts()
    }

    /// Checks the fields a caller gave, naming the one at fault.
    pub fn validate(&self, origin: Origin) -> Result<(), String> {
        self.data().validate(origin)
    }

    /// The graph this target runs, for filtering listings.
    /// Where an occurrence placed by tags went, as the ledger keys it (`runner/serial#moves`);
    /// `None` for every other target.
    pub fn placement(&self) -> Option<String> {
        match self {
            Target::DeviceJob(job) => job
                .placed()
                .map(|(runner, device)| format!("{runner}/{device}#{}", job.moves)),
            _ => None,
        }
    }

    pub fn graph_id(&self) -> Option<&str> {
        self.graph().map(|graph| graph.graph_id.as_str())
    }

    /// The graph execution a `graph_execution` target runs (with AutoGPT's tenancy); `None`
    /// for the other kinds.
    pub fn graph(&self) -> Option<&GraphExecutionTarget> {
        match self {
            Target::GraphExecution(graph) => Some(graph),
            _ => None,
        }
    }
}

/// Checks the configured endpoint or raw URL a calling target names (`rpc`, `http`).
pub(crate) fn check_address(
    tag: &str,
    endpoint: Option<&str>,
    url: Option<&str>,
    origin: Origin,
) -> Result<(), String> {
    match (endpoint, url) {
        (Some(_), Some(_)) => Err(format!(
            "target.endpoint and target.url are exclusive: name one ({tag})"
        )),
        (None, None) => Err(format!(
            "target.endpoint is required: the name of an endpoint in the scheduler's \
             configuration ({tag})"
        )),
        (None, Some(_)) if origin == Origin::Api => Err(format!(
            "target.url is accepted only in schedules declared in the configuration; name a \
             configured endpoint in target.endpoint ({tag})"
        )),
        (None, Some(url)) => check_url(url),
        (Some(name), None) if name.trim().is_empty() => {
            Err("target.endpoint must not be empty".into())
        }
        (Some(_), None) => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_is_listed_under_the_tag_it_is_written_with() {
        let targets = [
            json!({"type": "graph_execution", "graph_id": "g", "graph_version": 1, "input_data": {}}),
            json!({"type": "system_task", "task": "t"}),
            json!({"type": "rpc", "endpoint": "e", "method": "m"}),
            json!({"type": "http", "endpoint": "e"}),
            json!({"type": "redis_publish", "channel": "c"}),
            json!({"type": "device_job", "runner": "r", "device": "d", "job_type": "j"}),
            json!({"type": "watch", "check": {"job_type": "delay", "delay_seconds": 1}}),
        ];
        let mut tags = Vec::new();
        for value in targets {
            let target: Target = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(target.kind(), value["type"]);
            assert_eq!(
                serde_json::to_value(&target).unwrap()["type"],
                value["type"]
            );
            tags.push(target.kind());
        }
        assert_eq!(tags, Target::KINDS);
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let error = serde_json::from_value::<Target>(
            json!({"type": "http", "endpoint": "e", "expected": "2xx"}),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("unknown field `expected`"),
            "{error}"
        );
    }
}
