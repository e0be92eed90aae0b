//! A typed client for the device runner.
//!
//! Calls go over HTTP through [`DeviceRunnerApiClient`] (every method of the API, typed);
//! [`DeviceRunnerClient::follow_logs`] opens a WebSocket for the live log subscription.
//! Requests are not retried. A caller that retries `enqueue_job` passes an `idempotency_key`:
//! the retry then returns the job the first call created instead of queueing a second one.
//!
//! ```no_run
//! # async fn demo() -> Result<(), device_runner_client::Error> {
//! use device_runner_client::{DeviceRunnerClient, Enqueue, EnqueueJob};
//! let client = DeviceRunnerClient::new("http://127.0.0.1:8004")?;
//! let job = client
//!     .rpc()
//!     .enqueue(EnqueueJob {
//!         device: Some("L9AIB7603188953".into()),
//!         job_type: "crawl".into(),
//!         priority: Some(2),
//!         ..Default::default()
//!     })
//!     .await?;
//! let mut log = client.follow_logs(&job.id, 0).await?;
//! while let Some(Ok(chunk)) = log.next().await {
//!     print!("{}", chunk.data);
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

pub use device_runner_api::*;
use jsonrpsee::core::client::{Subscription, SubscriptionClientT};
use jsonrpsee::http_client::{HeaderMap, HeaderValue};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runner answered with an application error (bad input, unknown job, ...).
    #[error("{kind}: {0}", kind = .0.type_name())]
    Runner(RunnerError),
    /// The runner could not be reached or answered something that is not the API.
    #[error(transparent)]
    Transport(jsonrpsee::core::ClientError),
}

impl From<jsonrpsee::core::ClientError> for Error {
    fn from(error: jsonrpsee::core::ClientError) -> Self {
        if let jsonrpsee::core::ClientError::Call(object) = &error
            && let Some(runner) = RunnerError::from_error_object(object)
        {
            return Error::Runner(runner);
        }
        Error::Transport(error)
    }
}

/// A followed log: chunks until the job ends.
pub struct LogFollower {
    subscription: Subscription<LogChunk>,
    // The WebSocket connection lives as long as the subscription.
    _client: jsonrpsee::ws_client::WsClient,
}

impl LogFollower {
    /// The next chunk; `None` once the runner closed the subscription (after the `eof` chunk).
    pub async fn next(&mut self) -> Option<Result<LogChunk, Error>> {
        self.subscription.next().await.map(|item| {
            item.map_err(|e| Error::Transport(jsonrpsee::core::ClientError::ParseError(e)))
        })
    }
}

/// The device runner at one address.
#[derive(Clone, Debug)]
pub struct DeviceRunnerClient {
    http: HttpClient,
    ws_url: String,
    headers: HeaderMap,
}

impl DeviceRunnerClient {
    /// A client for `url` (`http://host:port`) with a 60 s timeout per call.
    pub fn new(url: &str) -> Result<Self, Error> {
        Self::with_timeout(url, Duration::from_secs(60))
    }

    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self, Error> {
        Self::with_options(url, timeout, None)
    }

    /// A client that presents `token` (the runner's `auth.token`, or its `auth.admin_token`
    /// for `kill_job` and `restart_run`) as `Authorization: Bearer`, on every call and on the
    /// log WebSocket.
    pub fn with_options(url: &str, timeout: Duration, token: Option<&str>) -> Result<Self, Error> {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::Transport(jsonrpsee::core::ClientError::Custom(
                    "the token cannot be sent in an HTTP header".into(),
                ))
            })?;
            headers.insert("authorization", value);
        }
        let http = HttpClientBuilder::default()
            .request_timeout(timeout)
            .set_headers(headers.clone())
            .build(url)?;
        let ws_url = url
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        Ok(DeviceRunnerClient {
            http,
            ws_url,
            headers,
        })
    }

    /// The typed API: every method of [`DeviceRunnerApiClient`].
    pub fn rpc(&self) -> &HttpClient {
        &self.http
    }

    /// Follows a job's log from byte `offset` over a WebSocket.
    pub async fn follow_logs(&self, job_id: &str, offset: u64) -> Result<LogFollower, Error> {
        let client = WsClientBuilder::default()
            .set_headers(self.headers.clone())
            .build(&self.ws_url)
            .await?;
        let subscription = client
            .subscribe(
                "subscribe_logs",
                rpc_params![job_id, offset],
                "unsubscribe_logs",
            )
            .await?;
        Ok(LogFollower {
            subscription,
            _client: client,
        })
    }
}
