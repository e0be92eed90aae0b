//! What the targets that call out reach: the configured endpoints (`[endpoints.<name>]`, each a
//! JSON-RPC service and an HTTP base), a client for the raw URLs of declared schedules, and the
//! configured Redis (`[redis]`), which watches' completions publish on too.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use service_kit::config::duration;
use tokio::sync::OnceCell;

use crate::endpoint::{DispatchError, Endpoint};
use crate::signing::SigningKey;

/// A service targets call, named in `[endpoints.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The base URL: the JSON-RPC URL of an `rpc` target, the prefix of an `http` target's
    /// `path`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` with every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Per-attempt timeout.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// `rpc` targets due together are sent as JSON-RPC batch requests of up to this many
    /// calls (1: one request per call).
    #[serde(default = "one")]
    pub batch: u32,
    /// `whsec_…`: every `http` request to it is signed as Standard Webhooks says
    /// ([`crate::signing`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

impl EndpointConfig {
    /// Checks `[endpoints.<name>]`.
    pub(crate) fn validate(&self, name: &str) -> anyhow::Result<()> {
        service_kit::config::check_http_url(&format!("endpoints.{name}.url"), &self.url)?;
        if self.timeout.is_zero() {
            anyhow::bail!("endpoints.{name}.timeout must be more than 0s");
        }
        crate::endpoint::check_batch(&format!("endpoints.{name}.batch"), self.batch)?;
        self.signing_key(name)?;
        Ok(())
    }

    /// The key of `signing_secret`, when it has one.
    fn signing_key(&self, name: &str) -> anyhow::Result<Option<SigningKey>> {
        self.signing_secret
            .as_deref()
            .map(|secret| SigningKey::parse(&format!("endpoints.{name}.signing_secret"), secret))
            .transpose()
    }
}

impl RedisConfig {
    /// Checks `[redis]`.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            anyhow::bail!("redis.url must start with redis:// or rediss://");
        }
        Ok(())
    }
}

fn one() -> u32 {
    1
}

/// The per-call timeout of a configured service that does not set its own.
pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The Redis that `redis_publish` targets publish on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:6379/0`; without it `redis_publish` targets are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One configured endpoint: its URL and token, as JSON-RPC service and as HTTP base.
struct Named {
    url: String,
    token: Option<String>,
    signing: Option<SigningKey>,
    http: reqwest::Client,
    rpc: Endpoint,
}

/// Where the outbound targets go.
pub struct Outbound {
    endpoints: HashMap<String, Named>,
    /// For raw URLs of declared schedules.
    raw: reqwest::Client,
    redis: Option<Redis>,
}

struct Redis {
    client: redis::Client,
    /// Connected on first use, so that a Redis that is down at start delays only its targets.
    connection: OnceCell<ConnectionManager>,
}

/// Where a call goes: the service's name for messages, its URL, its token and client.
pub struct Address<'a> {
    pub service: String,
    pub url: &'a str,
    pub token: Option<&'a str>,
    /// How its `http` requests are signed, when they are.
    pub signing: Option<&'a SigningKey>,
    pub http: &'a reqwest::Client,
}

impl Outbound {
    pub fn new(
        endpoints: &BTreeMap<String, EndpointConfig>,
        redis: &RedisConfig,
        default_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut named = HashMap::new();
        for (name, config) in endpoints {
            let http = reqwest::Client::builder()
                .timeout(config.timeout)
                .pool_max_idle_per_host(512)
                .build()?;
            let rpc = Endpoint::new(http.clone(), format!("endpoint '{name}'"), &config.url)
                .with_token(config.token.clone())
                .with_batch(config.batch);
            named.insert(
                name.clone(),
                Named {
                    url: config.url.trim_end_matches('/').to_string(),
                    token: config.token.clone(),
                    signing: config.signing_key(name)?,
                    http,
                    rpc,
                },
            );
        }
        let redis = match &redis.url {
            Some(url) => Some(Redis {
                client: redis::Client::open(url.as_str())
                    .map_err(|e| anyhow::anyhow!("redis.url: {e}"))?,
                connection: OnceCell::new(),
            }),
            None => None,
        };
        Ok(Outbound {
            endpoints: named,
            raw: reqwest::Client::builder()
                .timeout(default_timeout)
                .build()?,
            redis,
        })
    }

    /// The JSON-RPC service of endpoint `name`.
    pub fn rpc_service(&self, name: &str) -> Result<&Endpoint, DispatchError> {
        self.endpoints
            .get(name)
            .map(|named| &named.rpc)
            .ok_or_else(|| not_configured(name))
    }

    /// Where a target naming configured endpoint `endpoint`, or raw `url`, goes.
    pub fn address<'a>(
        &'a self,
        endpoint: Option<&'a str>,
        url: Option<&'a str>,
    ) -> Result<Address<'a>, DispatchError> {
        match (endpoint, url) {
            (Some(name), _) => {
                let named = self
                    .endpoints
                    .get(name)
                    .ok_or_else(|| not_configured(name))?;
                Ok(Address {
                    service: format!("endpoint '{name}'"),
                    url: &named.url,
                    token: named.token.as_deref(),
                    signing: named.signing.as_ref(),
                    http: &named.http,
                })
            }
            (None, Some(url)) => Ok(Address {
                service: url.to_string(),
                url,
                token: None,
                signing: None,
                http: &self.raw,
            }),
            (None, None) => Err(DispatchError::Rejected(
                "the target names neither an endpoint nor a url".into(),
            )),
        }
    }

    /// PUBLISHes `payload` on `channel` of the configured Redis; returns the number of
    /// receivers.
    pub async fn publish_text(&self, channel: &str, payload: &str) -> Result<i64, DispatchError> {
        let redis = self.redis.as_ref().ok_or_else(|| {
            DispatchError::Rejected("publishing needs redis.url in the configuration".into())
        })?;
        let unreachable =
            |e: redis::RedisError| DispatchError::Unreachable(format!("redis unreachable: {e}"));
        let connection = redis
            .connection
            .get_or_try_init(|| {
                // Fail fast while Redis is down: the callers retry on their own schedule.
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_number_of_retries(2)
                    .set_connection_timeout(Some(Duration::from_secs(3)))
                    .set_response_timeout(Some(Duration::from_secs(5)));
                ConnectionManager::new_with_config(redis.client.clone(), config)
            })
            .await
            .map_err(unreachable)?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut connection.clone())
            .await
            .map_err(unreachable)
    }
}

fn not_configured(name: &str) -> DispatchError {
    DispatchError::Rejected(format!(
        "endpoint '{name}' is not configured (endpoints.{name})"
    ))
}
