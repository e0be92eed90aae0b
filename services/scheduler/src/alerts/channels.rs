//! Where incidents are sent (`[alerts.channels.<name>]`): a Slack- or Discord-compatible
//! incoming webhook (a line of text), a generic JSON webhook (the incident), or a Redis channel
//! (the same JSON, published on `[redis]`).

use std::collections::BTreeMap;
use std::time::Duration;

use jobstore::{Alert, Delivery, Phase};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use service_kit::config::{REDACTED, check_http_url, duration};

use crate::outbound::Outbound;

/// How a channel takes its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A Slack incoming webhook: `{"text": …}`.
    Slack,
    /// A Discord webhook: `{"content": …}`.
    Discord,
    /// Any HTTP endpoint: `{"event": "alert.opened" | "alert.resolved", "alert": {…}}`.
    Webhook,
    /// A Redis channel (`[redis] url`), with the webhook's JSON.
    Redis,
}

/// One `[alerts.channels.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub kind: ChannelKind,
    /// Where `slack`, `discord` and `webhook` channels post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Sent by a `webhook` channel as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The Redis channel a `redis` channel publishes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Per-attempt timeout of a post.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl ChannelConfig {
    /// Checks `[alerts.channels.<name>]`; `redis` is whether `[redis] url` is set.
    pub(crate) fn validate(&self, name: &str, redis: bool) -> anyhow::Result<()> {
        let key = format!("alerts.channels.{name}");
        match self.kind {
            ChannelKind::Redis => {
                if self.channel.as_deref().is_none_or(str::is_empty) {
                    anyhow::bail!("{key}.channel must name the Redis channel to publish on");
                }
                if !redis {
                    anyhow::bail!("{key} publishes on Redis: set redis.url");
                }
            }
            _ => match &self.url {
                Some(url) => check_http_url(&format!("{key}.url"), url)?,
                None => anyhow::bail!("{key}.url must be set for a {:?} channel", self.kind),
            },
        }
        if self.timeout.is_zero() {
            anyhow::bail!("{key}.timeout must be more than 0s");
        }
        Ok(())
    }

    /// Hides the secrets: a webhook's token, and the path of a Slack or Discord webhook URL
    /// (which is its secret).
    pub(crate) fn redact(&mut self) {
        if self.token.is_some() {
            self.token = Some(REDACTED.into());
        }
        if matches!(self.kind, ChannelKind::Slack | ChannelKind::Discord)
            && let Some(url) = &mut self.url
            && let Some((scheme, rest)) = url.split_once("://")
        {
            let host = rest.split('/').next().unwrap_or_default();
            *url = format!("{scheme}://{host}/{REDACTED}");
        }
    }
}

/// The configured channels, ready to send.
pub(crate) struct Channels {
    by_name: BTreeMap<String, (ChannelConfig, reqwest::Client)>,
}

impl Channels {
    pub(crate) fn new(configs: &BTreeMap<String, ChannelConfig>) -> anyhow::Result<Self> {
        let mut by_name = BTreeMap::new();
        for (name, config) in configs {
            let http = reqwest::Client::builder().timeout(config.timeout).build()?;
            by_name.insert(name.clone(), (config.clone(), http));
        }
        Ok(Channels { by_name })
    }

    /// The channels' names, which each incident gets a message to.
    pub(crate) fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Sends one message; the error says why it did not arrive.
    pub(crate) async fn send(
        &self,
        outbound: &Outbound,
        delivery: &Delivery,
    ) -> Result<(), String> {
        let Some((config, http)) = self.by_name.get(&delivery.channel) else {
            return Err(format!(
                "channel '{}' is no longer configured (alerts.channels.{0})",
                delivery.channel
            ));
        };
        let body = body(config.kind, delivery);
        if config.kind == ChannelKind::Redis {
            let channel = config.channel.as_deref().unwrap_or_default();
            return outbound
                .publish_text(channel, &body.to_string())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        let url = config.url.as_deref().unwrap_or_default();
        let mut request = http
            .post(url)
            // Receivers that see a message twice (a sender died before recording it) can
            // tell by this key.
            .header(
                "idempotency-key",
                format!("{}:{}", delivery.alert.id, delivery.phase.as_str()),
            )
            .json(&body);
        if let Some(token) = &config.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("POST failed: {e}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let answer = response.text().await.unwrap_or_default();
        Err(format!("HTTP {status}: {}", clip(&answer, 200)))
    }
}

/// What a channel of `kind` receives: a line of text in the form Slack or Discord takes, or
/// the incident as JSON (a webhook, Redis).
fn body(kind: ChannelKind, delivery: &Delivery) -> Value {
    match kind {
        ChannelKind::Slack => json!({"text": text(delivery)}),
        // Discord refuses a message over 2,000 characters.
        ChannelKind::Discord => json!({"content": clip(&text(delivery), 2000)}),
        ChannelKind::Webhook | ChannelKind::Redis => json!({
            "event": format!("alert.{}", delivery.phase.as_str()),
            "alert": delivery.alert,
        }),
    }
}

/// The line a Slack or Discord channel shows.
pub(crate) fn text(delivery: &Delivery) -> String {
    let Alert {
        kind,
        schedule_id,
        schedule_name,
        owner,
        summary,
        last_error,
        resolution,
        opened_at,
        ..
    } = &delivery.alert;
    let schedule = format!("schedule '{schedule_name}' ({schedule_id}, owner {owner})");
    match delivery.phase {
        Phase::Opened => {
            let error = last_error
                .as_deref()
                .map(|e| format!(" Last error: {e}"))
                .unwrap_or_default();
            format!(
                "[scheduler] {} alert opened for {schedule}: {summary}.{error}",
                kind.as_str()
            )
        }
        Phase::Resolved => format!(
            "[scheduler] {} alert resolved for {schedule}: {} (open since {}).",
            kind.as_str(),
            resolution.as_deref().unwrap_or("resolved"),
            opened_at.to_rfc3339()
        ),
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use jobstore::{AlertKind, AlertState};

    use super::*;

    fn delivery(phase: Phase) -> Delivery {
        Delivery {
            alert: Alert {
                id: "a1".into(),
                kind: AlertKind::Failing,
                state: AlertState::Open,
                jobstore: "execution".into(),
                schedule_id: "s1".into(),
                schedule_name: "nightly report".into(),
                owner: "agnt".into(),
                opened_at: "2026-01-01T00:00:00Z".parse().unwrap(),
                resolved_at: None,
                summary: "3 runs in a row failed (the check allows 3)".into(),
                last_error: Some("HTTP 500".into()),
                resolution: Some("a run succeeded".into()),
            },
            phase,
            channel: "ops".into(),
            attempts: 0,
        }
    }

    #[test]
    fn a_line_names_the_schedule_its_owner_what_happened_and_the_error() {
        let opened = text(&delivery(Phase::Opened));
        for part in [
            "failing",
            "nightly report",
            "s1",
            "owner agnt",
            "3 runs",
            "HTTP 500",
        ] {
            assert!(opened.contains(part), "{part} in {opened}");
        }
        let resolved = text(&delivery(Phase::Resolved));
        assert!(resolved.contains("resolved") && resolved.contains("a run succeeded"));
    }

    #[test]
    fn each_kind_gets_the_body_it_takes() {
        let opened = delivery(Phase::Opened);
        assert_eq!(body(ChannelKind::Slack, &opened)["text"], text(&opened));
        let mut long = delivery(Phase::Opened);
        long.alert.last_error = Some("x".repeat(5000));
        let discord = body(ChannelKind::Discord, &long);
        let content = discord["content"].as_str().unwrap();
        assert_eq!(content.chars().count(), 2000);
        assert!(content.ends_with('…'));
        for kind in [ChannelKind::Webhook, ChannelKind::Redis] {
            let event = body(kind, &delivery(Phase::Resolved));
            assert_eq!(event["event"], "alert.resolved");
            assert_eq!(event["alert"]["schedule_id"], "s1");
            assert_eq!(event["alert"]["last_error"], "HTTP 500");
        }
    }

    #[test]
    fn a_channel_needs_where_it_sends() {
        let mut config = ChannelConfig {
            kind: ChannelKind::Slack,
            url: None,
            token: None,
            channel: None,
            timeout: default_timeout(),
        };
        let error = config.validate("ops", false).unwrap_err().to_string();
        assert!(error.contains("alerts.channels.ops.url"), "{error}");
        config.kind = ChannelKind::Redis;
        config.channel = Some("alerts".into());
        let error = config.validate("ops", false).unwrap_err().to_string();
        assert!(error.contains("redis.url"), "{error}");
        assert!(config.validate("ops", true).is_ok());
    }

    #[test]
    fn a_slack_url_is_redacted_to_its_host() {
        let mut config = ChannelConfig {
            kind: ChannelKind::Slack,
            url: Some("https://hooks.slack.com/services/T0/B0/secret".into()),
            token: None,
            channel: None,
            timeout: default_timeout(),
        };
        config.redact();
        assert_eq!(
            config.url.as_deref(),
            Some(format!("https://hooks.slack.com/{REDACTED}").as_str())
        );
    }
}
