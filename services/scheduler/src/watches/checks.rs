//! The checks a watch's attempts make: a module's JSON-RPC tool, a URL, a delay; and the
//! ledger's record of an attempt.

use chrono::{SubsecRound, Utc};
use jobstore::{RunOutcome, RunRecord, RunStatus};
use scheduler_api::{Check, CheckResult};
use serde_json::{Value, json};

use crate::endpoint::{Endpoint, error_chain, truncate};

use super::{Watches, link_local};

impl Watches {
    /// Makes one attempt's check. A check that cannot be made (a timeout, a refused
    /// connection, a JSON-RPC error) is an attempt that did not succeed, with its error.
    pub async fn check(&self, run: &RunRecord, check: &Check) -> CheckResult {
        let made = match check {
            Check::PollModule {
                module,
                tool,
                args,
                success_field,
                success_values,
            } => {
                self.poll_module(module, tool, args, success_field, success_values)
                    .await
            }
            Check::PollUrl {
                url,
                method,
                expected_status,
            } => self.poll_url(url, method, *expected_status).await,
            Check::Delay { delay_seconds } => Ok((true, json!(delay_seconds))),
        };
        found(run, made)
    }

    async fn poll_module(
        &self,
        module: &str,
        tool: &str,
        args: &serde_json::Map<String, Value>,
        success_field: &str,
        success_values: &[Value],
    ) -> Result<(bool, Value), String> {
        let result = self
            .module(module)?
            .call(tool, Value::Object(args.clone()))
            .await
            .map_err(|error| error.to_string())?;
        Ok(judged(&result, success_field, success_values))
    }

    /// The JSON-RPC service of `module`; an error when it is no longer configured (the
    /// watch was added under another configuration).
    pub(crate) fn module(&self, module: &str) -> Result<&Endpoint, String> {
        self.modules
            .get(module)
            .ok_or_else(|| format!("module '{module}' is no longer configured"))
    }

    async fn poll_url(
        &self,
        url: &str,
        method: &str,
        expected: u16,
    ) -> Result<(bool, Value), String> {
        self.allowed(url)?;
        let parsed = reqwest::Url::parse(url).map_err(|error| error.to_string())?;
        // A name that resolves to a link-local address is refused like the address itself.
        if let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(addresses) = tokio::net::lookup_host((host, port)).await
                && addresses.into_iter().any(|a| link_local(a.ip()))
            {
                return Err(format!(
                    "{url} resolves to a link-local address; not polled"
                ));
            }
        }
        let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|error| error.to_string())?;
        let response = self
            .http
            .request(method, parsed)
            .send()
            .await
            .map_err(|error| format!("{url}: {}", error_chain(&error)))?;
        let status = response.status().as_u16();
        Ok((status == expected, json!(status)))
    }
}

/// What a check found, or why it could not be made, as its attempt's result.
pub(crate) fn found(run: &RunRecord, made: Result<(bool, Value), String>) -> CheckResult {
    let (success, value, error) = match made {
        Ok((success, value)) => (success, Some(value), None),
        Err(error) => (false, None, Some(error)),
    };
    CheckResult {
        attempt: 0,
        scheduled_time: run.scheduled_time,
        checked_at: Utc::now().trunc_subsecs(3),
        success,
        value,
        error,
    }
}

/// Whether a module tool's `result` succeeded: the value at `success_field` is one of
/// `success_values`. The value found goes along.
pub(crate) fn judged(
    result: &Value,
    success_field: &str,
    success_values: &[Value],
) -> (bool, Value) {
    let value = field(result, success_field).cloned().unwrap_or(Value::Null);
    (success_values.contains(&value), value)
}

/// The value at a dotted path (`data.state`, `items.0.status`) of a JSON value.
fn field<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |node, key| match node {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// The ledger's record of an attempt: `failed` with the error when the check could not be
/// made, `dispatched` otherwise, with what the check found.
pub(crate) fn ledger_outcome(run: &RunRecord, result: &CheckResult) -> RunOutcome {
    let (status, detail) = match (&result.error, result.success) {
        (Some(error), _) => (RunStatus::Failed, format!("check failed: {error}")),
        (None, true) => (
            RunStatus::Dispatched,
            format!("succeeded: {}", shown(&result.value)),
        ),
        (None, false) => (
            RunStatus::Dispatched,
            format!("not yet: {}", shown(&result.value)),
        ),
    };
    RunOutcome::of(run, status, Some(detail), 1, Utc::now())
}

fn shown(value: &Option<Value>) -> String {
    value
        .as_ref()
        .map_or_else(|| "null".to_string(), |v| truncate(&v.to_string(), 300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_reach_into_objects_and_arrays() {
        let value = json!({"data": {"state": "done", "items": [{"s": 1}]}});
        assert_eq!(field(&value, "data.state"), Some(&json!("done")));
        assert_eq!(field(&value, "data.items.0.s"), Some(&json!(1)));
        assert_eq!(field(&value, "data.missing"), None);
        assert_eq!(field(&value, "data.state.deeper"), None);
    }
}
