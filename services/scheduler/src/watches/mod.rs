//! Watches at work: the checks their attempts make (a module's JSON-RPC tool, a URL, a delay),
//! and the sender that delivers their completions, once each, as a Redis notification or a
//! `resume_conversation` call to the agent's core with the notification as fallback.
//!
//! An attempt is an occurrence of the watch's schedule: the engine claims it and this module
//! checks; the engine then records it, counted with its ledger row, in one transaction per
//! batch of outcomes. A completion is
//! persisted before it is sent ([`jobstore::WatchStore::record_attempt`]) and sent by
//! [`deliver`] until it is delivered.

mod checks;
mod config;
mod delivery;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use scheduler_api::{Check, OnComplete};
use tokio::sync::Notify;

use crate::endpoint::Endpoint;

pub(crate) use checks::{found, judged, ledger_outcome};
pub use config::{ModuleConfig, WatchesConfig};
pub(crate) use delivery::deliver;

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
                .with_token(module.token.clone())
                .with_batch(module.batch);
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

#[cfg(test)]
mod tests {
    use super::*;

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
