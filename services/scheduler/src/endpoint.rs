//! A JSON-RPC 2.0 service over HTTP POST, as the targets and the system tasks call them, and
//! how a failed attempt is told apart: worth retrying, or refused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::{Value, json};

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

/// The most calls one JSON-RPC batch request may carry, as configured.
const MAX_BATCH: u32 = 1000;

/// Checks a configured batch size (`key` names the setting): 1 (one request per call) to
/// [`MAX_BATCH`].
pub(crate) fn check_batch(key: &str, size: u32) -> anyhow::Result<()> {
    if !(1..=MAX_BATCH).contains(&size) {
        anyhow::bail!("{key} must be 1 to {MAX_BATCH}, got {size}");
    }
    Ok(())
}

/// A JSON-RPC 2.0 service over HTTP POST, one attempt per call.
pub struct Endpoint {
    http: reqwest::Client,
    /// The service's name in error messages ("execution service", "endpoint 'backend'").
    service: String,
    url: String,
    /// Sent as a bearer token, when set.
    token: Option<String>,
    next_id: AtomicU64,
    /// Calls per JSON-RPC batch request (1: one request per call).
    batch: usize,
    /// Cleared when the service answers a batch request with something other than a batch
    /// answer: it does not take batches, and its calls go one per request from then on.
    takes_batches: AtomicBool,
}

impl Endpoint {
    pub fn new(http: reqwest::Client, service: impl Into<String>, url: &str) -> Self {
        Endpoint {
            http,
            service: service.into(),
            url: url.to_string(),
            token: None,
            next_id: AtomicU64::new(1),
            batch: 1,
            takes_batches: AtomicBool::new(true),
        }
    }

    /// The same service, called with `Authorization: Bearer <token>`.
    pub fn with_token(self, token: Option<String>) -> Self {
        Endpoint { token, ..self }
    }

    /// The same service, sent calls due together as JSON-RPC batch requests of up to `size`
    /// calls (1: one request per call).
    pub fn with_batch(self, size: u32) -> Self {
        Endpoint {
            batch: size.max(1) as usize,
            ..self
        }
    }

    /// How many calls one batch request carries: `None` when calls go one per request, as
    /// configured or because the service answered a batch as a service without batches does.
    pub fn batch(&self) -> Option<usize> {
        (self.batch > 1 && self.takes_batches.load(Ordering::Relaxed)).then_some(self.batch)
    }

    /// Calls `method` with named `params` and returns its result.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, DispatchError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (status, text) = self.post(&body).await?;
        if is_retryable(status) {
            return Err(self.unreachable(format!("HTTP {status}: {}", excerpt(&text))));
        }
        if !status.is_success() {
            return Err(self.refused(method, format!("HTTP {status}: {}", excerpt(&text))));
        }
        let reply: Value = serde_json::from_str(&text).map_err(|e| {
            self.unreachable(format!("response is not JSON ({e}): {}", excerpt(&text)))
        })?;
        self.answer(method, reply)
    }

    /// Sends `calls` as one JSON-RPC 2.0 batch request; returns each call's result or error
    /// in the order given. An error for the whole request (unreachable, not a batch answer)
    /// is the `Err`; a call the answer leaves out is an `Unreachable` error of its own.
    pub async fn call_batch(
        &self,
        calls: &[(&str, Value)],
    ) -> Result<Vec<Result<Value, DispatchError>>, DispatchError> {
        let first = self
            .next_id
            .fetch_add(calls.len() as u64, Ordering::Relaxed);
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (method, params))| {
                json!({"jsonrpc": "2.0", "id": first + i as u64, "method": method, "params": params})
            })
            .collect();
        let (status, text) = self.post(&Value::Array(body)).await?;
        if is_retryable(status) {
            return Err(self.unreachable(format!("HTTP {status}: {}", excerpt(&text))));
        }
        let answers = match serde_json::from_str::<Vec<Value>>(&text) {
            Ok(answers) if status.is_success() => answers,
            _ => return Err(self.without_batches(status, &text)),
        };
        let mut by_id: std::collections::HashMap<u64, Value> = answers
            .into_iter()
            .filter_map(|answer| Some((answer.get("id")?.as_u64()?, answer)))
            .collect();
        Ok(calls
            .iter()
            .enumerate()
            .map(|(i, (method, _))| match by_id.remove(&(first + i as u64)) {
                Some(answer) => self.answer(method, answer),
                None => Err(self.unreachable("the batch answer left this call out".into())),
            })
            .collect())
    }

    /// Notes that the service does not take batch requests (it refused one, or answered it
    /// with something other than an array, as a JSON-RPC service without batches answers
    /// `Invalid Request`): its calls go one per request from now on. The error is the batch's,
    /// so that each of its calls is sent again alone.
    fn without_batches(&self, status: reqwest::StatusCode, text: &str) -> DispatchError {
        let answer = excerpt(text);
        if self.takes_batches.swap(false, Ordering::Relaxed) {
            tracing::warn!(service = %self.service, %status, answer, "a JSON-RPC batch request was not answered as a batch; calls to this service go one per request from now on");
        }
        self.unreachable(format!(
            "a batch request was answered HTTP {status}: {answer}"
        ))
    }

    /// POSTs `body` with the token; the status and the body of the answer.
    async fn post(&self, body: &Value) -> Result<(reqwest::StatusCode, String), DispatchError> {
        let mut request = self.http.post(&self.url).json(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        // A call made in an occurrence's attempt carries its trace (none in a batch request).
        if let Some(traceparent) = service_kit::traces::traceparent() {
            request = request.header(service_kit::traces::TRACEPARENT, traceparent);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        Ok((status, text))
    }

    /// The result of one JSON-RPC answer, or its error as a refusal.
    fn answer(&self, method: &str, mut answer: Value) -> Result<Value, DispatchError> {
        if let Some(error) = answer.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            let code = error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            return Err(self.refused(method, format!("{message} (code {code})")));
        }
        match answer.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(self.unreachable(format!(
                "response has no result: {}",
                excerpt(&answer.to_string())
            ))),
        }
    }

    fn unreachable(&self, message: String) -> DispatchError {
        DispatchError::Unreachable(format!("{} unreachable: {message}", self.service))
    }

    fn refused(&self, method: &str, message: String) -> DispatchError {
        DispatchError::Rejected(format!("{} refused {method}: {message}", self.service))
    }
}

pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
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
pub(crate) fn excerpt(text: &str) -> &str {
    let end = text.char_indices().nth(200).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// At most `max` characters, the last one an ellipsis when the text was cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Whether an HTTP answer means "try again later" (a server error or 429) rather than a refusal.
pub(crate) fn is_retryable(status: reqwest::StatusCode) -> bool {
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
