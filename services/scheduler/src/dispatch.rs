//! Dispatching a run to its target: JSON-RPC `add_graph_execution` on the execution service for
//! a graph execution, the task's own calls for a system task ([`crate::tasks`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{SecondsFormat, Utc};
use jobstore::{RunRecord, Target};
use serde_json::{Value, json};

use crate::config::{ExecutorConfig, SystemTasksConfig};
use crate::tasks::{SystemTask, TaskRunner};

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchError {
    /// The target could not be reached or failed on its side (timeout, 5xx): worth retrying.
    Unreachable(String),
    /// The target answered and refused (JSON-RPC error, 4xx), or the run cannot be sent:
    /// retrying would not help.
    Rejected(String),
}

impl DispatchError {
    /// The failure reason as a metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            DispatchError::Unreachable(_) => "unreachable",
            DispatchError::Rejected(_) => "rejected",
        }
    }
}

impl std::fmt::Display for DispatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DispatchError::Unreachable(message) | DispatchError::Rejected(message) => {
                f.write_str(message)
            }
        }
    }
}

/// How a dispatch ended after all attempts.
pub struct Dispatched {
    /// The target's answer, or the last attempt's error.
    pub result: Result<Value, DispatchError>,
    pub attempts: u32,
}

/// Every target a run can have, with the retry policy they share.
pub struct Targets {
    executor: Endpoint,
    tasks: TaskRunner,
    retries: u32,
    retry_delay: Duration,
}

impl Targets {
    pub fn new(executor: &ExecutorConfig, tasks: &SystemTasksConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(executor.timeout)
            .pool_max_idle_per_host(512)
            .build()?;
        Ok(Targets {
            executor: Endpoint::new(http.clone(), "execution service", &executor.url),
            tasks: TaskRunner::new(tasks, http),
            retries: executor.retries,
            retry_delay: executor.retry_delay,
        })
    }

    /// Sends the run, retrying with exponential backoff while the target is unreachable.
    pub async fn dispatch(&self, run: &RunRecord) -> Dispatched {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry_delay)
            .with_max_times(self.retries as usize)
            .with_jitter();
        let mut attempts = 0;
        let result = (|| {
            attempts += 1;
            self.send_once(run)
        })
        .retry(backoff)
        .when(|error| matches!(error, DispatchError::Unreachable(_)))
        .notify(|error, delay| {
            tracing::warn!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, %error, ?delay, "dispatch failed, retrying");
        })
        .await;
        Dispatched { result, attempts }
    }

    async fn send_once(&self, run: &RunRecord) -> Result<Value, DispatchError> {
        match &run.target {
            Target::GraphExecution { .. } => {
                let params = graph_execution_params(run);
                self.executor.call("add_graph_execution", params).await
            }
            Target::SystemTask { task, kwargs } => {
                let Some(task) = SystemTask::parse(task) else {
                    return Err(DispatchError::Rejected(format!(
                        "unknown system task '{task}'"
                    )));
                };
                self.tasks.run(task, kwargs, Utc::now()).await
            }
        }
    }
}

/// The parameters of `add_graph_execution` for a run. The ledger key goes along as the
/// idempotency key, so the execution service can drop a repeat after a crash between dispatch
/// and recording.
pub fn graph_execution_params(run: &RunRecord) -> Value {
    let Target::GraphExecution {
        graph_id,
        graph_version,
        input_data,
        input_credentials,
    } = &run.target
    else {
        return Value::Null;
    };
    json!({
        "user_id": run.owner,
        "graph_id": graph_id,
        "graph_version": graph_version,
        "inputs": input_data,
        "graph_credentials_inputs": input_credentials,
        "schedule_id": run.schedule_id,
        "scheduled_time": run.scheduled_time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "idempotency_key": run.idempotency_key(),
    })
}

/// A JSON-RPC 2.0 service over HTTP POST, one attempt per call.
pub struct Endpoint {
    http: reqwest::Client,
    /// The service's name in error messages ("execution service").
    service: &'static str,
    url: String,
    next_id: AtomicU64,
}

impl Endpoint {
    pub fn new(http: reqwest::Client, service: &'static str, url: &str) -> Self {
        Endpoint {
            http,
            service,
            url: url.to_string(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Calls `method` with named `params` and returns its result.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, DispatchError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let unreachable = |message: String| {
            DispatchError::Unreachable(format!("{} unreachable: {message}", self.service))
        };
        let refused = |message: String| {
            DispatchError::Rejected(format!("{} refused {method}: {message}", self.service))
        };
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        if is_retryable(status) {
            return Err(unreachable(format!("HTTP {status}: {}", excerpt(&text))));
        }
        if !status.is_success() {
            return Err(refused(format!("HTTP {status}: {}", excerpt(&text))));
        }
        let mut reply: Value = serde_json::from_str(&text)
            .map_err(|e| unreachable(format!("response is not JSON ({e}): {}", excerpt(&text))))?;
        if let Some(error) = reply.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            let code = error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            return Err(refused(format!("{message} (code {code})")));
        }
        match reply.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(unreachable(format!(
                "response has no result: {}",
                excerpt(&text)
            ))),
        }
    }
}

pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most the first 200 characters of a text, for error messages.
pub fn excerpt(text: &str) -> &str {
    let end = text.char_indices().nth(200).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// At most `max` characters, the last one an ellipsis when the text was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Whether an HTTP answer means "try again later" (a server error or 429) rather than a refusal.
pub fn is_retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 2000;

    #[test]
    fn texts_are_cut_to_the_limit_with_an_ellipsis() {
        let long = "é".repeat(2500);
        let cut = truncate(&long, LIMIT);
        assert_eq!(cut.chars().count(), LIMIT);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", LIMIT), "short");
    }
}
