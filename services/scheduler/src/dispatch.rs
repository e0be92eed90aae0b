//! Dispatching a run to its target: JSON-RPC `add_graph_execution` on the execution service.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::SecondsFormat;
use jobstore::{RunRecord, Target};
use serde_json::{Value, json};

use crate::config::ExecutorConfig;

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchError {
    /// The target could not be reached or failed on its side (timeout, 5xx): worth retrying.
    Unreachable(String),
    /// The target answered and refused (JSON-RPC error, 4xx): retrying would not help.
    Rejected(String),
}

impl std::fmt::Display for DispatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DispatchError::Unreachable(message) => {
                write!(f, "execution service unreachable: {message}")
            }
            DispatchError::Rejected(message) => {
                write!(f, "execution service refused the run: {message}")
            }
        }
    }
}

/// The client of the execution service.
pub struct Executor {
    http: reqwest::Client,
    url: String,
    retries: u32,
    retry_delay: Duration,
    next_id: AtomicU64,
}

/// How a dispatch ended after all attempts.
pub struct Dispatched {
    pub result: Result<(), DispatchError>,
    pub attempts: u32,
}

impl Executor {
    pub fn new(config: &ExecutorConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .pool_max_idle_per_host(512)
            .build()?;
        Ok(Executor {
            http,
            url: config.url.clone(),
            retries: config.retries,
            retry_delay: config.retry_delay,
            next_id: AtomicU64::new(1),
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

    async fn send_once(&self, run: &RunRecord) -> Result<(), DispatchError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = request_body(run, id);
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| DispatchError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| DispatchError::Unreachable(error_chain(&e)))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(DispatchError::Unreachable(format!(
                "HTTP {status}: {}",
                excerpt(&text)
            )));
        }
        if !status.is_success() {
            return Err(DispatchError::Rejected(format!(
                "HTTP {status}: {}",
                excerpt(&text)
            )));
        }
        let reply: Value = serde_json::from_str(&text).map_err(|e| {
            DispatchError::Unreachable(format!("response is not JSON ({e}): {}", excerpt(&text)))
        })?;
        if let Some(error) = reply.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            let code = error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            return Err(DispatchError::Rejected(format!("{message} (code {code})")));
        }
        if reply.get("result").is_none() {
            return Err(DispatchError::Unreachable(format!(
                "response has no result: {}",
                excerpt(&text)
            )));
        }
        Ok(())
    }
}

/// The JSON-RPC request for a run. The ledger key goes along as the idempotency key, so the
/// execution service can drop a repeat after a crash between dispatch and recording.
pub fn request_body(run: &RunRecord, id: u64) -> Value {
    let Target::GraphExecution {
        graph_id,
        graph_version,
        input_data,
        input_credentials,
    } = &run.target;
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "add_graph_execution",
        "params": {
            "user_id": run.owner,
            "graph_id": graph_id,
            "graph_version": graph_version,
            "inputs": input_data,
            "graph_credentials_inputs": input_credentials,
            "schedule_id": run.schedule_id,
            "scheduled_time": run.scheduled_time.to_rfc3339_opts(SecondsFormat::Secs, true),
            "idempotency_key": run.idempotency_key(),
        }
    })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn excerpt(text: &str) -> &str {
    let end = text.char_indices().nth(200).map_or(text.len(), |(i, _)| i);
    &text[..end]
}
