//! The targets that call out: `rpc` and `http` on a configured endpoint (or, in a declared
//! schedule, a raw URL), and `redis_publish` on the configured Redis. Each call carries the run's
//! ledger key as its idempotency key, so a redelivery after a crash is recognisable.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::SecondsFormat;
use jobstore::{ExpectedStatus, RunRecord, http_method};
use redis::aio::ConnectionManager;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use crate::config::{EndpointConfig, RedisConfig};
use crate::endpoint::{DispatchError, Endpoint, error_chain, excerpt, is_retryable};

/// One configured endpoint: its URL and token, as JSON-RPC service and as HTTP base.
struct Named {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
    rpc: Endpoint,
    /// Calls per JSON-RPC batch request (1: no batching).
    batch: usize,
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
struct Address<'a> {
    service: String,
    url: &'a str,
    token: Option<&'a str>,
    http: &'a reqwest::Client,
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
                .with_token(config.token.clone());
            named.insert(
                name.clone(),
                Named {
                    url: config.url.trim_end_matches('/').to_string(),
                    token: config.token.clone(),
                    http,
                    rpc,
                    batch: config.batch.max(1) as usize,
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

    /// Whether `name` is a configured endpoint.
    pub fn has_endpoint(&self, name: &str) -> bool {
        self.endpoints.contains_key(name)
    }

    /// The configured endpoints' names, for error messages.
    pub fn endpoint_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.endpoints.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// How many calls a JSON-RPC batch request to endpoint `name` carries.
    pub fn batch(&self, name: &str) -> Option<usize> {
        self.endpoints.get(name).map(|named| named.batch)
    }

    /// The JSON-RPC service of endpoint `name`.
    pub fn rpc_service(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.get(name).map(|named| &named.rpc)
    }

    /// The error of a target naming an endpoint that is not configured.
    pub fn unknown(&self, name: &str) -> Result<Value, DispatchError> {
        Err(not_configured(name))
    }

    /// An `rpc` target's params with the run's `idempotency_key` and `scheduled_time`.
    pub fn rpc_params(run: &RunRecord, params: &Map<String, Value>) -> Value {
        let mut params = params.clone();
        params.insert("idempotency_key".into(), run.idempotency_key().into());
        params.insert("scheduled_time".into(), scheduled_time(run).into());
        Value::Object(params)
    }

    /// Whether `redis.url` is configured.
    pub fn has_redis(&self) -> bool {
        self.redis.is_some()
    }

    fn address<'a>(
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
                    http: &named.http,
                })
            }
            (None, Some(url)) => Ok(Address {
                service: url.to_string(),
                url,
                token: None,
                http: &self.raw,
            }),
            (None, None) => Err(DispatchError::Rejected(
                "the target names neither an endpoint nor a url".into(),
            )),
        }
    }

    /// A JSON-RPC 2.0 call of `method` with `params` plus `idempotency_key` and
    /// `scheduled_time`.
    pub async fn rpc(
        &self,
        run: &RunRecord,
        endpoint: Option<&str>,
        url: Option<&str>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, DispatchError> {
        let params = Self::rpc_params(run, params);
        let address = self.address(endpoint, url)?;
        match endpoint.and_then(|name| self.endpoints.get(name)) {
            Some(named) => named.rpc.call(method, params).await,
            None => {
                let raw = Endpoint::new(address.http.clone(), address.service, address.url);
                raw.call(method, params).await
            }
        }
    }

    /// An HTTP request with the `Idempotency-Key` and `X-Scheduled-Time` headers. Returns the
    /// status and the start of the body; a status outside `expected` is an error with both
    /// (worth retrying when it is a server error or 429).
    #[allow(clippy::too_many_arguments)]
    pub async fn http(
        &self,
        run: &RunRecord,
        endpoint: Option<&str>,
        url: Option<&str>,
        method: &str,
        path: &str,
        headers: &BTreeMap<String, String>,
        body: &Value,
        expected: &str,
    ) -> Result<Value, DispatchError> {
        let address = self.address(endpoint, url)?;
        let method = http_method(method).map_err(DispatchError::Rejected)?;
        let expected = ExpectedStatus::parse(expected).map_err(DispatchError::Rejected)?;
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| DispatchError::Rejected(e.to_string()))?;
        let target = format!("{}{path}", address.url.trim_end_matches('/'));
        let mut request = address
            .http
            .request(method, &target)
            .header("Idempotency-Key", run.idempotency_key())
            .header("X-Scheduled-Time", scheduled_time(run));
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(token) = address.token {
            request = request.bearer_auth(token);
        }
        if !body.is_null() {
            request = request.json(body);
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
            "{service} answered {path} with HTTP {}, expected {}: {start}",
            status.as_u16(),
            expected_text(expected)
        );
        if is_retryable(status) {
            Err(DispatchError::Unreachable(message))
        } else {
            Err(DispatchError::Rejected(message))
        }
    }

    /// A PUBLISH of `{schedule_id, scheduled_time, idempotency_key, message}` on `channel`;
    /// returns how many subscribers received it.
    pub async fn publish(
        &self,
        run: &RunRecord,
        channel: &str,
        message: &Value,
    ) -> Result<Value, DispatchError> {
        let payload = json!({
            "schedule_id": run.schedule_id,
            "scheduled_time": scheduled_time(run),
            "idempotency_key": run.idempotency_key(),
            "message": message,
        });
        let receivers = self.publish_text(channel, &payload.to_string()).await?;
        Ok(json!({"receivers": receivers}))
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

fn scheduled_time(run: &RunRecord) -> String {
    run.scheduled_time
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn expected_text(expected: ExpectedStatus) -> String {
    match expected {
        ExpectedStatus::Class(class) => format!("{class}xx"),
        ExpectedStatus::Exactly(code) => code.to_string(),
    }
}
