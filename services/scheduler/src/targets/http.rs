//! The `http` target: a request to a path on a configured endpoint (or, in a declared
//! schedule, a raw URL) with the `Idempotency-Key` and `X-Scheduled-Time` headers, signed when
//! its endpoint has a `signing_secret` ([`crate::signing`]); an answer outside
//! `expected_status` is a failure, worth retrying when it is a server error or 429.

use async_trait::async_trait;
use jobstore::{ExpectedStatus, RunRecord, http_method};
use scheduler_api::HttpTarget;
use serde_json::{Value, json};
use service_kit::traces;

use super::{Configured, Kind, Targets, scheduled_time};
use crate::endpoint::{DispatchError, error_chain, excerpt, is_retryable};

#[async_trait]
impl Kind for HttpTarget {
    fn check(&self, configured: &Configured) -> Result<(), String> {
        match &self.endpoint {
            Some(name) => {
                Configured::lookup("target.endpoint", name, "endpoints", &configured.endpoints)
            }
            None => Ok(()),
        }
    }

    /// Answers the status and the start of the body.
    async fn send(&self, run: &RunRecord, targets: &Targets) -> Result<Value, DispatchError> {
        let address = targets
            .outbound
            .address(self.endpoint.as_deref(), self.url.as_deref())?;
        let method = http_method(&self.method).map_err(DispatchError::Rejected)?;
        let expected =
            ExpectedStatus::parse(&self.expected_status).map_err(DispatchError::Rejected)?;
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| DispatchError::Rejected(e.to_string()))?;
        let path = &self.path;
        let url = format!("{}{path}", address.url.trim_end_matches('/'));
        let mut request = address
            .http
            .request(method, &url)
            .header("Idempotency-Key", run.idempotency_key())
            .header("X-Scheduled-Time", scheduled_time(run));
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        // The attempt's trace, unless the schedule sets the header itself.
        let set = |name: &str| self.headers.keys().any(|h| h.eq_ignore_ascii_case(name));
        if let Some(traceparent) = traces::traceparent().filter(|_| !set(traces::TRACEPARENT)) {
            request = request.header(traces::TRACEPARENT, traceparent);
        }
        if let Some(token) = address.token {
            request = request.bearer_auth(token);
        }
        // The body is sent as the bytes signed.
        let body = match &self.body {
            Value::Null => Vec::new(),
            body => {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
                serde_json::to_vec(body).map_err(|e| DispatchError::Rejected(e.to_string()))?
            }
        };
        if let Some(key) = address.signing {
            let now = chrono::Utc::now().timestamp();
            for (name, value) in key.headers(&run.idempotency_key(), now, &body) {
                request = request.header(name, value);
            }
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let service = &address.service;
        let response = request.send().await.map_err(|e| {
            DispatchError::Unreachable(format!("{service} unreachable: {}", error_chain(&e)))
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let start = excerpt(&text);
        if expected.accepts(status.as_u16()) {
            return Ok(json!({"status": status.as_u16(), "body": start}));
        }
        let message = format!(
            "{service} answered {path} with HTTP {}, expected {expected}: {start}",
            status.as_u16(),
        );
        if is_retryable(status) {
            Err(DispatchError::Unreachable(message))
        } else {
            Err(DispatchError::Rejected(message))
        }
    }
}
