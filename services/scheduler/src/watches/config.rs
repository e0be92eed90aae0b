//! `[modules.<name>]` and `[watches]`: the modules a watch's checks call, and how checks and
//! completion sends run.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::config::duration;

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
    /// Checks due together are sent as JSON-RPC batch requests of up to this many calls (1:
    /// one request per check). A module that answers a batch request as a service without
    /// batches does is sent one call per request from then on.
    #[serde(default = "default_module_batch")]
    pub batch: u32,
}

impl ModuleConfig {
    /// Checks `[modules.<name>]`.
    pub(crate) fn validate(&self, name: &str) -> anyhow::Result<()> {
        service_kit::config::check_http_url(&format!("modules.{name}.url"), &self.url)?;
        if self.timeout.is_zero() {
            anyhow::bail!("modules.{name}.timeout must be more than 0s");
        }
        crate::endpoint::check_batch(&format!("modules.{name}.batch"), self.batch)?;
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

fn default_module_batch() -> u32 {
    100
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_batches_by_default_and_its_batch_is_checked() {
        let module: ModuleConfig = toml::from_str("url = \"http://deployer:8010/\"").unwrap();
        assert_eq!(module.batch, 100);
        module.validate("deployer").unwrap();
        let alone: ModuleConfig =
            toml::from_str("url = \"http://deployer:8010/\"\nbatch = 1").unwrap();
        alone.validate("deployer").unwrap();
        let none = ModuleConfig { batch: 0, ..module };
        let error = none.validate("deployer").unwrap_err().to_string();
        assert_eq!(error, "modules.deployer.batch must be 1 to 1000, got 0");
    }
}
