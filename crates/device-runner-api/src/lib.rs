//! The device runner's JSON-RPC API, shared by the service (which implements
//! [`DeviceRunnerApiServer`]) and its callers (the `device-runner-client` crate).
//! Parameters may be passed by name or by position.

// enqueue_job takes its options one by one, as the wire protocol names them.
#![allow(clippy::too_many_arguments)]

mod error;
mod types;

pub use error::{RunnerError, codes};
pub use types::{
    DeviceEvent, DeviceHealth, DeviceInfo, DeviceStatus, DeviceTimeline, Job, JobStatus,
    JobTypeInfo, LogChunk, PoolStatus, Progress, Quarantine, RunnerStatus, TimelineEntry,
};

use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::proc_macros::rpc;
use serde_json::Value;

/// The default port of the device runner.
pub const DEFAULT_PORT: u16 = 8004;

#[rpc(server, client)]
pub trait DeviceRunnerApi {
    /// Queues a job for a device, or, for a job type that runs on a pool, in its pool (`pool`
    /// may be left out then). `priority` is 1 (highest) to 5 (default); `max_duration` is
    /// seconds or a duration such as `15m`, `1h`, `24h`, `7d` (default: the job type's);
    /// `checkpoint` is handed to the job as `JOB_CHECKPOINT` so it resumes from there. With
    /// `idempotency_key` (1-256 characters), a key already used returns the job it created,
    /// whatever its state, and creates nothing.
    #[method(name = "enqueue_job", param_kind = map)]
    async fn enqueue_job(
        &self,
        device: Option<String>,
        job_type: String,
        params: Option<Value>,
        priority: Option<i64>,
        max_duration: Option<Value>,
        source: Option<String>,
        checkpoint: Option<Value>,
        idempotency_key: Option<String>,
        pool: Option<String>,
        traceparent: Option<String>,
    ) -> RpcResult<Job>;

    /// Checks a job as `enqueue_job` checks it (job type, device or pool, priority, params,
    /// maximum duration) and queues nothing: the queue it would go to, a device's serial or
    /// `pool:<name>`, or the `ValueError` that `enqueue_job` would answer, naming the values
    /// this runner knows.
    #[method(name = "check_job", param_kind = map)]
    async fn check_job(
        &self,
        device: Option<String>,
        job_type: String,
        params: Option<Value>,
        priority: Option<i64>,
        max_duration: Option<Value>,
        pool: Option<String>,
    ) -> RpcResult<String>;

    /// The pending jobs, per device in the order they will start (priority, then first in).
    #[method(name = "list_queue", param_kind = map)]
    async fn list_queue(&self, device: Option<String>) -> RpcResult<Vec<Job>>;

    /// Stops a running job (`killed`: SIGTERM to its process group, then SIGKILL after the
    /// grace) or cancels a pending one (`cancelled`). Returns the job as it ended.
    #[method(name = "kill_job", param_kind = map)]
    async fn kill_job(&self, id: String) -> RpcResult<Job>;

    /// Cancels a job only while it is pending (`cancelled`), atomically: a job that has
    /// started or ended is left as it is and the call fails with a conflict. What a scheduler
    /// uses to take back a job it placed, to place it elsewhere.
    #[method(name = "cancel_job", param_kind = map)]
    async fn cancel_job(&self, id: String) -> RpcResult<Job>;

    /// Queues a finished run again with the same device, type, parameters and priority.
    #[method(name = "restart_run", param_kind = map)]
    async fn restart_run(&self, run_id: String) -> RpcResult<Job>;

    /// Per device: state, running job and its pid, pending count; and the runner's uptime.
    #[method(name = "get_status", param_kind = map)]
    async fn get_status(&self) -> RpcResult<RunnerStatus>;

    /// Finished runs, newest first, filtered by device, status and job type; `before` (a run
    /// id) pages back from that run, `ended_before` from an instant (for a caller merging the
    /// runs of several runners). `limit` is 1-1000, default 50.
    #[method(name = "list_runs", param_kind = map)]
    async fn list_runs(
        &self,
        device: Option<String>,
        status: Option<String>,
        job_type: Option<String>,
        limit: Option<i64>,
        before: Option<String>,
        ended_before: Option<chrono::DateTime<chrono::Utc>>,
    ) -> RpcResult<Vec<Job>>;

    /// One job or run, with its results and last checkpoint.
    #[method(name = "get_run", param_kind = map)]
    async fn get_run(&self, run_id: String) -> RpcResult<Job>;

    /// Reads a job's log from byte `offset`, at most `limit` bytes (default and maximum 1 MiB).
    #[method(name = "get_logs", param_kind = map)]
    async fn get_logs(
        &self,
        job_id: String,
        offset: Option<u64>,
        limit: Option<u64>,
    ) -> RpcResult<LogChunk>;

    /// Sends a job's log from byte `offset`, then what it writes as it comes, until it ends
    /// (the last chunk has `eof` true). WebSocket only.
    #[subscription(name = "subscribe_logs", unsubscribe = "unsubscribe_logs", item = LogChunk, param_kind = map)]
    async fn subscribe_logs(&self, job_id: String, offset: Option<u64>) -> SubscriptionResult;

    /// Per device, the runs that overlap the last `hours` (default 24): start, end, type,
    /// status.
    #[method(name = "get_timeline", param_kind = map)]
    async fn get_timeline(&self, hours: Option<f64>) -> RpcResult<Vec<DeviceTimeline>>;

    /// The devices from the configuration and from adb.
    #[method(name = "list_devices", param_kind = map)]
    async fn list_devices(&self) -> RpcResult<Vec<DeviceInfo>>;

    /// Takes a phone out of service: it starts no new job (its running job goes on) until
    /// `release_device`. Kept across restarts. Admin.
    #[method(name = "quarantine_device", param_kind = map)]
    async fn quarantine_device(
        &self,
        serial: String,
        reason: Option<String>,
    ) -> RpcResult<DeviceInfo>;

    /// Ends a phone's quarantine. Admin.
    #[method(name = "release_device", param_kind = map)]
    async fn release_device(&self, serial: String) -> RpcResult<DeviceInfo>;

    /// A phone's history (quarantines, releases, reboots), newest first; `limit` 1-1000,
    /// default 100.
    #[method(name = "get_device_history", param_kind = map)]
    async fn get_device_history(
        &self,
        serial: String,
        limit: Option<i64>,
    ) -> RpcResult<Vec<DeviceEvent>>;

    /// The configured job types.
    #[method(name = "list_job_types", param_kind = map)]
    async fn list_job_types(&self) -> RpcResult<Vec<JobTypeInfo>>;

    /// The job engine's verb: starts module `module_id` (a job type that runs on a pool) with
    /// params `{inputs, settings}`, from `checkpoint` when given, stopped after
    /// `max_duration` (`1h`, `24h`, `7d`; default the type's). Returns the job id.
    #[method(name = "start_job", param_kind = map)]
    async fn start_job(
        &self,
        module_id: String,
        inputs: Option<Value>,
        settings: Option<Value>,
        checkpoint: Option<Value>,
        max_duration: Option<Value>,
    ) -> RpcResult<String>;

    /// Stops a job: kills it if it runs, cancels it if it waits. True when the job was found
    /// and stopped; false when there is no such job or it had already ended.
    #[method(name = "stop_job", param_kind = map)]
    async fn stop_job(&self, job_id: String) -> RpcResult<bool>;

    /// Queues an ended job again from its last checkpoint, with the same type, parameters and
    /// priority; returns the new job.
    #[method(name = "resume_job", param_kind = map)]
    async fn resume_job(&self, job_id: String) -> RpcResult<Job>;

    /// Liveness: answers "OK".
    #[method(name = "health_check", param_kind = map)]
    async fn health_check(&self) -> RpcResult<String>;
}

/// What `enqueue_job` is asked, by name: a typed caller fills what it needs and leaves the
/// rest to its default (`EnqueueJob { device: Some(…), job_type: …, ..Default::default() }`),
/// then sends it with [`Enqueue::enqueue`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnqueueJob {
    pub device: Option<String>,
    pub job_type: String,
    pub params: Option<Value>,
    pub priority: Option<i64>,
    pub max_duration: Option<Value>,
    pub source: Option<String>,
    pub checkpoint: Option<Value>,
    pub idempotency_key: Option<String>,
    pub pool: Option<String>,
    /// The W3C trace context the job continues.
    pub traceparent: Option<String>,
}

/// `enqueue_job` with its params by name, for every typed client of the API.
pub trait Enqueue {
    fn enqueue(
        &self,
        job: EnqueueJob,
    ) -> impl std::future::Future<Output = Result<Job, jsonrpsee::core::ClientError>> + Send;
}

impl<C: DeviceRunnerApiClient + Sync> Enqueue for C {
    async fn enqueue(&self, job: EnqueueJob) -> Result<Job, jsonrpsee::core::ClientError> {
        self.enqueue_job(
            job.device,
            job.job_type,
            job.params,
            job.priority,
            job.max_duration,
            job.source,
            job.checkpoint,
            job.idempotency_key,
            job.pool,
            job.traceparent,
        )
        .await
    }
}
