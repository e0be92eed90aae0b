//! A typed client for the scheduler, for other services.
//!
//! Like AutoGPT's service client it finds the scheduler at `SCHEDULER_HOST` (default
//! `localhost`) on the configured port (default 8003), gives each call 300 seconds, and retries
//! with exponential backoff when the scheduler cannot be reached, never when it answered with
//! an application error.
//!
//! ```no_run
//! # async fn demo() -> Result<(), scheduler_client::Error> {
//! let client = scheduler_client::SchedulerClient::from_env()?;
//! let query = scheduler_client::ExecutionScheduleQuery {
//!     user_id: Some("user-1".into()),
//!     ..Default::default()
//! };
//! let schedules = client.get_graph_execution_schedules(&query).await?;
//! # Ok(()) }
//! ```

mod alerts;
mod blocking;
mod changes;
mod fleet;
mod general;
mod preview;
mod watches;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use jsonrpsee::core::ClientError;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
pub use scheduler_api::{
    Backfill, ExecutionScheduleQuery, GraphExecutionJobInfo, JobstoreStatus, Overlap, Placement,
    Registry, RegistryEntry, RunPage, RunStatus, Schedule, SchedulePage, SchedulePolicy,
    ScheduleRun, SchedulerApiClient, SchedulerError, SchedulerStatus, SystemTaskEntry, Target,
    TriggerKind, TriggerSpec,
};
pub use scheduler_api::{
    Check, CheckResult, Delivery, DeliveryState, OnComplete, Watch, WatchPage, WatchStatus,
};
pub use scheduler_api::{
    DeviceJobTarget, DeviceSelector, GraphExecutionTarget, HttpTarget, RedisPublishTarget,
    RpcTarget, SystemTaskTarget, WatchTarget,
};
use serde_json::Value;

pub use alerts::{Alert, AlertKind, AlertPolicy, AlertQuery, AlertState};
pub use blocking::BlockingSchedulerClient;
pub use changes::{ChangePage, ChangeQuery, ScheduleChange};
pub use scheduler_api::CalendarView;

/// What `next_fire_times` is asked beyond the expression; each field left out takes the
/// server's default (UTC, now, 5, no `H` key, no calendar).
#[derive(Debug, Clone, Default)]
pub struct FireTimesQuery {
    /// The IANA zone the expression is evaluated in.
    pub timezone: Option<String>,
    /// Fire times strictly after this RFC 3339 instant.
    pub after: Option<String>,
    /// How many, 1 to 1000.
    pub count: Option<u32>,
    /// The schedule id an `H` field is chosen by.
    pub hash_key: Option<String>,
    /// Calendars whose dates are left out.
    pub exclude: Option<Vec<String>>,
}
pub use fleet::{Fleet, FleetPhone, FleetQuery, FleetRunner, PhoneState, RunningJob};
pub use general::{NewSchedule, RunQuery, ScheduleQuery, ScheduleUpdate};
pub use preview::{FirePreview, MinuteCount, PreviewFire, PreviewQuery};
pub use scheduler_api::{NewGraphSchedule, NewWatch, WatchQuery};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scheduler answered with an application error (never retried).
    #[error("{kind} from scheduler: {0}", kind = .0.exception_type())]
    Scheduler(SchedulerError),
    /// The scheduler could not be reached, after all retries.
    #[error("scheduler unreachable after {attempts} attempt(s): {message}")]
    Unreachable { attempts: usize, message: String },
    /// The call took longer than the per-call timeout.
    #[error("scheduler call timed out")]
    Timeout,
    /// Any other JSON-RPC failure (invalid params, unknown method, bad response).
    #[error("scheduler call failed: {0}")]
    Rpc(String),
    #[error("invalid client configuration: {0}")]
    Config(String),
}

/// Connection settings. `Default` reads nothing from the environment; see [`ClientConfig::from_env`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub host: String,
    pub port: u16,
    /// Per-call timeout (AutoGPT's default: 300 s).
    pub timeout: Duration,
    /// How many times a call is retried after a connection error.
    pub retries: usize,
    /// The first backoff delay; it doubles on each retry.
    pub retry_delay: Duration,
    /// Sent as `Authorization: Bearer <token>` when the scheduler requires one; the admin
    /// token for `get_registry` and `execute_*`.
    pub token: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            host: "localhost".into(),
            port: scheduler_api::DEFAULT_PORT,
            timeout: Duration::from_secs(300),
            retries: 5,
            retry_delay: Duration::from_millis(500),
            token: None,
        }
    }
}

impl ClientConfig {
    /// Defaults with the host from `SCHEDULER_HOST`, the port from `SCHEDULER_PORT` and the
    /// token from `SCHEDULER_TOKEN`.
    pub fn from_env() -> Result<Self, Error> {
        let mut config = ClientConfig {
            token: std::env::var("SCHEDULER_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            ..ClientConfig::default()
        };
        if let Ok(host) = std::env::var("SCHEDULER_HOST") {
            config.host = host;
        }
        if let Ok(port) = std::env::var("SCHEDULER_PORT") {
            config.port = port.parse().map_err(|_| {
                Error::Config(format!("SCHEDULER_PORT '{port}' is not a port number"))
            })?;
        }
        Ok(config)
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

/// The async client.
#[derive(Clone, Debug)]
pub struct SchedulerClient {
    rpc: HttpClient,
    config: ClientConfig,
}

impl SchedulerClient {
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &config.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Error::Config("the token is not a valid header value".into()))?;
            headers.insert("authorization", value);
        }
        let rpc = HttpClientBuilder::default()
            .request_timeout(config.timeout)
            .set_headers(headers)
            .build(config.url())
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(SchedulerClient { rpc, config })
    }

    /// A client configured from `SCHEDULER_HOST` and `SCHEDULER_PORT`.
    pub fn from_env() -> Result<Self, Error> {
        SchedulerClient::new(ClientConfig::from_env()?)
    }

    /// The generated JSON-RPC client, for calls without the retry policy.
    pub fn rpc(&self) -> &HttpClient {
        &self.rpc
    }

    /// Runs one API call under the retry policy: connection failures are retried with
    /// exponential backoff, everything else is returned at once.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: Fn(HttpClient) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.retry_delay)
            .with_max_times(self.config.retries)
            .with_jitter();
        let mut attempts = 0;
        let result = (|| {
            attempts += 1;
            call(self.rpc.clone())
        })
        .retry(backoff)
        .when(is_connection_error)
        .await;
        result.map_err(|error| classify(error, attempts))
    }

    pub async fn add_graph_execution_schedule(
        &self,
        schedule: NewGraphSchedule,
    ) -> Result<GraphExecutionJobInfo, Error> {
        self.call(|rpc| {
            let s = schedule.clone();
            async move {
                rpc.add_graph_execution_schedule(
                    s.user_id,
                    s.graph_id,
                    s.graph_version,
                    s.cron,
                    s.input_data,
                    s.input_credentials,
                    s.name,
                    s.user_timezone,
                    s.policy,
                    s.organization_id,
                    s.team_id,
                    s.expert_id,
                )
                .await
            }
        })
        .await
    }

    pub async fn delete_graph_execution_schedule(
        &self,
        schedule_id: &str,
        user_id: &str,
    ) -> Result<GraphExecutionJobInfo, Error> {
        let (schedule_id, user_id) = (schedule_id.to_string(), user_id.to_string());
        self.call(|rpc| {
            let (schedule_id, user_id) = (schedule_id.clone(), user_id.clone());
            async move {
                rpc.delete_graph_execution_schedule(schedule_id, user_id)
                    .await
            }
        })
        .await
    }

    /// Graph schedules as `query` asks (its `kind` and `session_id` are
    /// [`SchedulerClient::get_execution_schedules`]'s and are not sent).
    pub async fn get_graph_execution_schedules(
        &self,
        query: &ExecutionScheduleQuery,
    ) -> Result<Vec<GraphExecutionJobInfo>, Error> {
        self.call(|rpc| {
            let q = query.clone();
            async move {
                rpc.get_graph_execution_schedules(
                    q.graph_id,
                    q.user_id,
                    q.organization_id,
                    q.team_ids,
                    Some(q.include_paused),
                )
                .await
            }
        })
        .await
    }

    /// AutoGPT's listing of every kind of schedule, as `query` asks.
    pub async fn get_execution_schedules(
        &self,
        query: &ExecutionScheduleQuery,
    ) -> Result<Vec<GraphExecutionJobInfo>, Error> {
        self.call(|rpc| {
            let q = query.clone();
            async move {
                rpc.get_execution_schedules(
                    q.graph_id,
                    q.user_id,
                    q.session_id,
                    q.kind,
                    q.organization_id,
                    q.team_ids,
                    Some(q.include_paused),
                )
                .await
            }
        })
        .await
    }

    /// The schedules the engine parked, per jobstore, at most `limit` each (admin token).
    pub async fn get_parked_jobs(
        &self,
        limit: Option<u32>,
    ) -> Result<BTreeMap<String, Vec<String>>, Error> {
        self.call(|rpc| async move { rpc.get_parked_jobs(limit).await })
            .await
    }

    /// Resumes the parked schedules that can be planned again; their ids per jobstore (admin
    /// token).
    pub async fn reconcile_parked_jobs(&self) -> Result<BTreeMap<String, Vec<String>>, Error> {
        self.call(|rpc| async move { rpc.reconcile_parked_jobs().await })
            .await
    }

    pub async fn pause_execution_schedule(
        &self,
        schedule_id: &str,
        user_id: &str,
    ) -> Result<bool, Error> {
        let (schedule_id, user_id) = (schedule_id.to_string(), user_id.to_string());
        self.call(|rpc| {
            let (schedule_id, user_id) = (schedule_id.clone(), user_id.clone());
            async move { rpc.pause_execution_schedule(schedule_id, user_id).await }
        })
        .await
    }

    pub async fn resume_execution_schedule(
        &self,
        schedule_id: &str,
        user_id: &str,
    ) -> Result<bool, Error> {
        let (schedule_id, user_id) = (schedule_id.to_string(), user_id.to_string());
        self.call(|rpc| {
            let (schedule_id, user_id) = (schedule_id.clone(), user_id.clone());
            async move { rpc.resume_execution_schedule(schedule_id, user_id).await }
        })
        .await
    }

    pub async fn get_schedule_runs(
        &self,
        schedule_id: &str,
        user_id: &str,
        limit: Option<u32>,
    ) -> Result<Vec<ScheduleRun>, Error> {
        let (schedule_id, user_id) = (schedule_id.to_string(), user_id.to_string());
        self.call(|rpc| {
            let (schedule_id, user_id) = (schedule_id.clone(), user_id.clone());
            async move { rpc.get_schedule_runs(schedule_id, user_id, limit).await }
        })
        .await
    }

    /// The next fire times of a cron expression, as `query` asks.
    pub async fn next_fire_times(
        &self,
        cron: &str,
        query: FireTimesQuery,
    ) -> Result<Vec<String>, Error> {
        let cron = cron.to_string();
        self.call(|rpc| {
            let (cron, q) = (cron.clone(), query.clone());
            async move {
                rpc.next_fire_times(cron, q.timezone, q.after, q.count, q.hash_key, q.exclude)
                    .await
            }
        })
        .await
    }

    /// The exclusion calendars of the configuration.
    pub async fn list_calendars(&self) -> Result<Vec<CalendarView>, Error> {
        self.call(|rpc| async move { rpc.list_calendars().await })
            .await
    }

    /// The replica's state: uptime, leadership, jobstores with counts and next runs.
    pub async fn get_scheduler_status(&self) -> Result<SchedulerStatus, Error> {
        self.call(|rpc| async move { rpc.get_scheduler_status().await })
            .await
    }

    /// Every schedule and declared system task (admin token).
    pub async fn get_registry(&self) -> Result<Registry, Error> {
        self.call(|rpc| async move { rpc.get_registry().await })
            .await
    }

    pub async fn health_check(&self) -> Result<String, Error> {
        self.call(|rpc| async move { rpc.health_check().await })
            .await
    }

    /// Runs a system task now by name (see `scheduler_api::SYSTEM_TASKS` and
    /// `scheduler_api::DECLARED_TASKS`).
    pub async fn execute_system_task(
        &self,
        task: &str,
        kwargs: Option<Value>,
    ) -> Result<Value, Error> {
        let task = task.to_string();
        self.call(|rpc| {
            let (task, kwargs) = (task.clone(), kwargs.clone());
            async move {
                match task.as_str() {
                    "process_existing_batches" => {
                        rpc.execute_process_existing_batches(kwargs.unwrap_or_default())
                            .await
                    }
                    "process_weekly_summary" => rpc.execute_process_weekly_summary().await,
                    "report_late_executions" => rpc.execute_report_late_executions().await,
                    "report_block_error_rates" => rpc.execute_report_block_error_rates().await,
                    "cleanup_expired_files" => rpc.execute_cleanup_expired_files().await,
                    "flush_matured_alerts" => rpc.execute_flush_matured_alerts().await,
                    "send_due_briefings" => rpc.execute_send_due_briefings().await,
                    "cleanup_oauth_tokens" => rpc.execute_cleanup_oauth_tokens().await,
                    "report_execution_accuracy_alerts" => {
                        rpc.execute_report_execution_accuracy_alerts().await
                    }
                    "ensure_embeddings_coverage" => rpc.execute_ensure_embeddings_coverage().await,
                    "reconcile_schedule_index" => rpc.execute_reconcile_schedule_index().await,
                    "optimize_block_descriptions" => {
                        rpc.execute_optimize_block_descriptions().await
                    }
                    other => Err(ClientError::Custom(format!(
                        "unknown system task '{other}'"
                    ))),
                }
            }
        })
        .await
    }
}

/// Whether a failed call may succeed when sent again: the connection failed, not the request.
/// A request the server turned away with a 4xx status (a missing or wrong token, a body too
/// large) fails the same way every time.
fn is_connection_error(error: &ClientError) -> bool {
    match error {
        ClientError::Transport(_) => {
            !rejected_status(error).is_some_and(|s| (400..500).contains(&s))
        }
        ClientError::RestartNeeded(_) => true,
        _ => false,
    }
}

/// The HTTP status of a request the server rejected before JSON-RPC saw it.
fn rejected_status(error: &ClientError) -> Option<u16> {
    use jsonrpsee::http_client::transport::Error as Transport;
    let ClientError::Transport(inner) = error else {
        return None;
    };
    match inner.downcast_ref::<Transport>()? {
        Transport::Rejected { status_code } => Some(*status_code),
        _ => None,
    }
}

fn classify(error: ClientError, attempts: usize) -> Error {
    match error {
        ClientError::Call(object) => match SchedulerError::from_error_object(&object) {
            Some(app) => Error::Scheduler(app),
            None => Error::Rpc(format!("{} (code {})", object.message(), object.code())),
        },
        ClientError::RequestTimeout => Error::Timeout,
        error if rejected_status(&error) == Some(401) => {
            Error::Scheduler(SchedulerError::Unauthorized(
                "the scheduler refused the request: its token is missing or wrong (HTTP 401)"
                    .into(),
            ))
        }
        error if is_connection_error(&error) => Error::Unreachable {
            attempts,
            message: error.to_string(),
        },
        other => Error::Rpc(other.to_string()),
    }
}
