//! Watches at work: the checks their attempts make (a module's JSON-RPC tool, a URL, a delay),
//! and the sender that delivers their completions, once each, as a Redis notification or a
//! `resume_conversation` call to the agent's core with the notification as fallback.
//!
//! An attempt is an occurrence of the watch's schedule: the engine claims it and this module
//! checks; the engine then records it, counted with its ledger row, in one transaction per
//! batch of outcomes. A completion is
//! persisted before it is sent ([`jobstore::WatchStore::record_attempt`]) and sent by
//! [`deliver`] until it is delivered.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, TimeDelta, Utc};
use jobstore::{RunOutcome, RunRecord, RunStatus, Sent, WatchStore};
use scheduler_api::{Check, CheckResult, OnComplete, Watch};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use service_kit::config::duration;
use tokio::sync::Notify;

use crate::endpoint::{Endpoint, error_chain, truncate};
use crate::outbound::Outbound;

/// What a PUBLISH may take at most while Redis is down (three connection attempts of 3 s, a
/// response timeout of 5 s), with a margin: part of a sender's lease.
const PUBLISH_BOUND: Duration = Duration::from_secs(20);
/// Completions taken per claim.
const DELIVERY_BATCH: usize = 100;
/// The longest the sender sleeps without looking for completions left by a process that died.
const DELIVERY_MAX_SLEEP: Duration = Duration::from_secs(30);

/// A module a watch's `poll_module` check calls, named in `[modules.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    /// Its JSON-RPC URL.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Per-check timeout.
    #[serde(default = "default_check_timeout", with = "duration")]
    pub timeout: Duration,
}

impl ModuleConfig {
    /// Checks `[modules.<name>]`.
    pub(crate) fn validate(&self, name: &str) -> anyhow::Result<()> {
        service_kit::config::check_http_url(&format!("modules.{name}.url"), &self.url)?;
        if self.timeout.is_zero() {
            anyhow::bail!("modules.{name}.timeout must be more than 0s");
        }
        Ok(())
    }
}

impl WatchesConfig {
    /// Checks `[watches]`.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        use service_kit::config::check_http_url;
        for prefix in &self.url_allow {
            check_http_url("watches.url_allow", prefix)?;
        }
        if let Some(url) = &self.core_url {
            check_http_url("watches.core_url", url)?;
        }
        if self.url_timeout.is_zero() || self.core_timeout.is_zero() {
            anyhow::bail!("watches.url_timeout and watches.core_timeout must be more than 0s");
        }
        if !(1..=10).contains(&self.core_attempts) {
            anyhow::bail!("watches.core_attempts must be 1 to 10");
        }
        if self.max_retry_delay < Duration::from_secs(1) {
            anyhow::bail!("watches.max_retry_delay must be at least 1s");
        }
        Ok(())
    }
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[watches]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchesConfig {
    /// When set, a `poll_url` URL must start with one of these prefixes. Link-local
    /// addresses (169.254.0.0/16, fe80::/10) are refused in any case.
    pub url_allow: Vec<String>,
    /// The timeout of a `poll_url` check.
    #[serde(with = "duration")]
    pub url_timeout: Duration,
    /// The agent's core: `resume_conversation` POSTs to `{core_url}/continue`. Without it,
    /// watches with `on_complete = "resume_conversation"` are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_url: Option<String>,
    /// Sent to the core as `Authorization: Bearer <token>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_token: Option<String>,
    /// The timeout of one `/continue` call.
    #[serde(with = "duration")]
    pub core_timeout: Duration,
    /// `/continue` calls per completion before it falls back to the notification.
    pub core_attempts: u32,
    /// The longest wait between two sends of a completion that could not be delivered.
    #[serde(with = "duration")]
    pub max_retry_delay: Duration,
}

impl Default for WatchesConfig {
    fn default() -> Self {
        WatchesConfig {
            url_allow: Vec::new(),
            url_timeout: default_check_timeout(),
            core_url: None,
            core_token: None,
            core_timeout: default_check_timeout(),
            core_attempts: 3,
            max_retry_delay: Duration::from_secs(60),
        }
    }
}

/// The checks and the completion sends of watches.
pub struct Watches {
    modules: HashMap<String, Endpoint>,
    /// For `poll_url`: no redirects (a redirect could lead where the check may not go).
    http: reqwest::Client,
    url_allow: Vec<String>,
    core: Option<Core>,
    core_attempts: u32,
    core_timeout: Duration,
    max_retry_delay: Duration,
    /// Wakes the sender: a watch has ended here.
    pub ended: Notify,
}

struct Core {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Watches {
    pub fn new(
        modules: &BTreeMap<String, ModuleConfig>,
        config: &WatchesConfig,
    ) -> anyhow::Result<Self> {
        let mut named = HashMap::new();
        for (name, module) in modules {
            let http = reqwest::Client::builder().timeout(module.timeout).build()?;
            let endpoint = Endpoint::new(http, format!("module '{name}'"), &module.url)
                .with_token(module.token.clone());
            named.insert(name.clone(), endpoint);
        }
        let http = reqwest::Client::builder()
            .timeout(config.url_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let core = match &config.core_url {
            Some(url) => Some(Core {
                url: format!("{}/continue", url.trim_end_matches('/')),
                token: config.core_token.clone(),
                http: reqwest::Client::builder()
                    .timeout(config.core_timeout)
                    .build()?,
            }),
            None => None,
        };
        Ok(Watches {
            modules: named,
            http,
            url_allow: config.url_allow.clone(),
            core,
            core_attempts: config.core_attempts.max(1),
            core_timeout: config.core_timeout,
            max_retry_delay: config.max_retry_delay,
            ended: Notify::new(),
        })
    }

    /// Whether this process can make the check and deliver the completion: the module is
    /// configured, the URL may be polled, `resume_conversation` has a core to call.
    pub fn admit(&self, check: &Check, on_complete: OnComplete) -> Result<(), String> {
        match check {
            Check::PollModule { module, .. } if !self.modules.contains_key(module) => {
                let known: Vec<_> = self.modules.keys().map(String::as_str).collect();
                return Err(format!(
                    "check_config.module '{module}' is not configured (modules.{module}); \
                     configured: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            Check::PollUrl { url, .. } => self.allowed(url)?,
            _ => {}
        }
        if on_complete == OnComplete::ResumeConversation && self.core.is_none() {
            return Err(
                "on_complete 'resume_conversation' needs watches.core_url in the \
                 scheduler's configuration"
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether `url` may be polled: http or https, within `watches.url_allow` when that is
    /// set, and not a link-local address.
    fn allowed(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|error| format!("check_config.url '{url}' is not a URL: {error}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "check_config.url must be http or https, got '{}'",
                parsed.scheme()
            ));
        }
        if !self.url_allow.is_empty() && !self.url_allow.iter().any(|p| url.starts_with(p)) {
            return Err(format!(
                "check_config.url '{url}' is not allowed: it must start with one of {} \
                 (watches.url_allow)",
                self.url_allow.join(", ")
            ));
        }
        let literal = parsed.host_str().and_then(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        });
        if literal.is_some_and(link_local) {
            return Err(format!(
                "check_config.url '{url}' is a link-local address, which is never polled"
            ));
        }
        Ok(())
    }

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

    async fn poll_module(
        &self,
        module: &str,
        tool: &str,
        args: &serde_json::Map<String, Value>,
        success_field: &str,
        success_values: &[Value],
    ) -> Result<(bool, Value), String> {
        let endpoint = self
            .modules
            .get(module)
            .ok_or_else(|| format!("module '{module}' is no longer configured"))?;
        let result = endpoint
            .call(tool, Value::Object(args.clone()))
            .await
            .map_err(|error| error.to_string())?;
        let value = field(&result, success_field)
            .cloned()
            .unwrap_or(Value::Null);
        Ok((success_values.contains(&value), value))
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

    /// Sends a watch's completion once: the notification, or `resume_conversation` with the
    /// notification as fallback. Says how it went, with when to try again if it did not.
    pub async fn send(&self, outbound: &Outbound, watch: &Watch) -> Sent {
        let now = Utc::now();
        let attempts = watch.delivery.as_ref().map_or(0, |d| d.attempts);
        let retry_at = now + self.retry_delay(attempts);
        let mut fallback = None;
        if watch.on_complete == OnComplete::ResumeConversation {
            match self.resume(watch).await {
                Ok(()) => {
                    return Sent::Delivered {
                        via: OnComplete::ResumeConversation,
                        detail: None,
                        at: Utc::now(),
                    };
                }
                Err(error) => {
                    tracing::warn!(watch_id = %watch.id, %error, "resume_conversation failed; falling back to the notification");
                    fallback = Some(error);
                }
            }
        }
        let channel = watch.channel();
        match outbound
            .publish_text(&channel, &notification(watch).to_string())
            .await
        {
            Ok(receivers) => Sent::Delivered {
                via: OnComplete::Notify,
                detail: Some(match fallback {
                    Some(error) => format!(
                        "resume_conversation failed ({error}); notified on {channel} instead \
                         ({receivers} receivers)"
                    ),
                    None => format!("notified on {channel} ({receivers} receivers)"),
                }),
                at: Utc::now(),
            },
            Err(error) => Sent::Failed {
                error: match fallback {
                    Some(resume) => format!(
                        "resume_conversation failed ({resume}), and so did the notification: \
                         {error}"
                    ),
                    None => format!("notification on {channel} failed: {error}"),
                },
                retry_at,
            },
        }
    }

    /// POSTs the completion to the core's `/continue`, as often as `watches.core_attempts`
    /// says while it fails.
    async fn resume(&self, watch: &Watch) -> Result<(), String> {
        let core = self
            .core
            .as_ref()
            .ok_or("watches.core_url is not configured")?;
        let body = json!({
            "conversation_id": watch.conversation_id,
            "user_id": watch.user_id,
            "message": watch.message,
            "watch_id": watch.id,
            "workflow_id": watch.workflow_id,
            "status": watch.status,
        });
        let mut last = String::new();
        for attempt in 0..self.core_attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt - 1)).await;
            }
            let mut request = core.http.post(&core.url).json(&body);
            if let Some(token) = &core.token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    last = format!("{} answered {status}: {}", core.url, truncate(&text, 200));
                }
                Err(error) => last = format!("{}: {}", core.url, error_chain(&error)),
            }
        }
        Err(last)
    }

    /// How long a sender holds a completion it is sending before another may take it over:
    /// longer than a send can take (every `/continue` attempt timing out, then the PUBLISH),
    /// so two replicas never send one completion at once.
    pub fn delivery_lease(&self) -> TimeDelta {
        let resume = self.core.as_ref().map_or(Duration::ZERO, |_| {
            let backoff = Duration::from_millis(200) * 2u32.pow(self.core_attempts);
            self.core_timeout * self.core_attempts + backoff
        });
        TimeDelta::from_std(resume + PUBLISH_BOUND).unwrap_or(TimeDelta::minutes(5))
    }

    /// The wait before the next send of a completion already tried `attempts` times: one
    /// second, doubling, at most `watches.max_retry_delay`.
    fn retry_delay(&self, attempts: u32) -> TimeDelta {
        let delay = Duration::from_secs(1)
            .saturating_mul(2u32.saturating_pow(attempts.min(20)))
            .min(self.max_retry_delay);
        TimeDelta::from_std(delay).unwrap_or(TimeDelta::seconds(60))
    }
}

/// The notification of a completed or failed watch, as the bot reads it.
fn notification(watch: &Watch) -> Value {
    json!({
        "user_id": watch.user_id,
        "platform": watch.platform,
        "platform_channel_id": watch.platform_channel_id,
        "platform_thread_id": watch.platform_thread_id,
        "conversation_id": watch.conversation_id,
        "watch_id": watch.id,
        "workflow_id": watch.workflow_id,
        "status": watch.status,
        "message": watch.message,
    })
}

/// The value at a dotted path (`data.state`, `items.0.status`) of a JSON value.
fn field<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |node, key| match node {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// 169.254.0.0/16 and fe80::/10: where cloud metadata services answer.
fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
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

/// Sends the completions of watches until `stopped`: those this process ends (it is woken),
/// and those another process left unsent (found when their lease or retry time comes).
pub(crate) async fn deliver(
    store: Arc<dyn WatchStore>,
    watches: Arc<Watches>,
    outbound: Arc<Outbound>,
    mut stopped: service_kit::shutdown::Shutdown,
) {
    while !stopped.is_requested() {
        let now = Utc::now();
        let claimed = match store
            .claim_deliveries(now, DELIVERY_BATCH, watches.delivery_lease())
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(%error, "claiming watch completions failed; retrying");
                Vec::new()
            }
        };
        let full = claimed.len() == DELIVERY_BATCH;
        let sends = claimed.into_iter().map(|watch| {
            let store = store.clone();
            let watches = watches.clone();
            let outbound = outbound.clone();
            async move {
                let sent = watches.send(&outbound, &watch).await;
                match &sent {
                    Sent::Delivered { via, detail, .. } => {
                        tracing::info!(watch_id = %watch.id, via = via.as_str(), detail = detail.as_deref().unwrap_or(""), "watch completion delivered")
                    }
                    Sent::Failed { error, retry_at } => {
                        tracing::warn!(watch_id = %watch.id, %error, %retry_at, "watch completion not delivered; it is sent again later")
                    }
                }
                // Unrecorded, the send is repeated when its lease runs out: the completion is
                // never dropped, at the price of a rare second notification.
                if let Err(error) = store.record_delivery(&watch.id, &sent).await {
                    tracing::error!(%error, watch_id = %watch.id, "recording a watch completion's send failed");
                }
            }
        });
        futures::future::join_all(sends).await;
        if full {
            continue;
        }
        let sleep = match store.next_delivery().await {
            Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default(),
            Ok(None) => DELIVERY_MAX_SLEEP,
            Err(error) => {
                tracing::error!(%error, "reading the next watch completion failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep.min(DELIVERY_MAX_SLEEP)) => {}
            _ = watches.ended.notified() => {}
            _ = stopped.requested() => return,
        }
    }
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

    #[test]
    fn link_local_addresses_are_recognised() {
        for ip in ["169.254.169.254", "fe80::1", "::ffff:169.254.1.1"] {
            assert!(link_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "::1", "2001:db8::1"] {
            assert!(!link_local(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_refused_by_scheme_allow_list_and_link_local_address() {
        let mut config = WatchesConfig::default();
        let open = Watches::new(&BTreeMap::new(), &config).unwrap();
        let check = |watches: &Watches, url: &str| {
            let check = Check::PollUrl {
                url: url.into(),
                method: "GET".into(),
                expected_status: 200,
            };
            watches.admit(&check, OnComplete::Notify)
        };
        assert!(check(&open, "https://ci.example/status").is_ok());
        let refused = check(&open, "ftp://ci.example/x").unwrap_err();
        assert!(refused.contains("http or https"), "{refused}");
        let refused = check(&open, "http://169.254.169.254/latest/meta-data").unwrap_err();
        assert!(refused.contains("link-local"), "{refused}");
        let refused = check(&open, "http://[fe80::1]:80/").unwrap_err();
        assert!(refused.contains("link-local"), "{refused}");
        config.url_allow = vec!["https://ci.example/".into()];
        let limited = Watches::new(&BTreeMap::new(), &config).unwrap();
        assert!(check(&limited, "https://ci.example/status").is_ok());
        let refused = check(&limited, "https://other.example/").unwrap_err();
        assert!(refused.contains("watches.url_allow"), "{refused}");
        let resume = limited.admit(
            &Check::Delay { delay_seconds: 1 },
            OnComplete::ResumeConversation,
        );
        assert!(resume.unwrap_err().contains("watches.core_url"));
    }
}
