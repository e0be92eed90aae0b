//! The scheduler's JSON-RPC API, shared by the service (which implements [`SchedulerApiServer`])
//! and its callers (which use [`SchedulerApiClient`] or the `scheduler-client` crate).
//!
//! Method names and parameters keep the wire protocol of the AutoGPT platform's Python scheduler
//! so existing callers work unchanged. Parameters may be passed by name or by position.

// add_graph_execution_schedule takes AutoGPT's keyword arguments one by one: the wire protocol
// fixes their number, and the generated server and client repeat it.
#![allow(clippy::too_many_arguments)]

mod error;
mod types;

pub use error::{SchedulerError, codes};
pub use types::{
    GraphExecutionJobInfo, JobstoreStatus, Registry, RegistryEntry, RunStatus, SchedulePolicy,
    ScheduleRun, SchedulerStatus, SystemTaskEntry,
};

use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use serde_json::Value;

/// The default port, as in AutoGPT (`execution_scheduler_port`).
pub const DEFAULT_PORT: u16 = 8003;

/// The methods only the admin token may call (when tokens are configured).
pub const ADMIN_METHODS: [&str; 6] = [
    "get_registry",
    "execute_process_existing_batches",
    "execute_process_weekly_summary",
    "execute_report_late_executions",
    "execute_report_block_error_rates",
    "execute_cleanup_expired_files",
];

/// The system tasks that `execute_<task>` runs on demand.
pub const SYSTEM_TASKS: [&str; 5] = [
    "process_existing_batches",
    "process_weekly_summary",
    "report_late_executions",
    "report_block_error_rates",
    "cleanup_expired_files",
];

#[rpc(server, client)]
pub trait SchedulerApi {
    /// Adds a cron schedule that runs a graph for a user. `cron` has 5 fields (or 6 with
    /// seconds) and is evaluated in `user_timezone` (an IANA name; UTC when absent). `policy`
    /// overrides the misfire defaults (coalesce, no grace limit).
    #[method(name = "add_graph_execution_schedule", param_kind = map)]
    async fn add_graph_execution_schedule(
        &self,
        user_id: String,
        graph_id: String,
        graph_version: i64,
        cron: String,
        input_data: Value,
        input_credentials: Option<Value>,
        name: Option<String>,
        user_timezone: Option<String>,
        policy: Option<SchedulePolicy>,
    ) -> RpcResult<GraphExecutionJobInfo>;

    /// Deletes a schedule owned by `user_id` and returns it as it was.
    #[method(name = "delete_graph_execution_schedule", param_kind = map)]
    async fn delete_graph_execution_schedule(
        &self,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<GraphExecutionJobInfo>;

    /// Lists schedules, optionally only one graph's or one user's. Paused schedules are left
    /// out unless `include_paused` is true (they have no `next_run_time`).
    #[method(name = "get_graph_execution_schedules", param_kind = map)]
    async fn get_graph_execution_schedules(
        &self,
        graph_id: Option<String>,
        user_id: Option<String>,
        include_paused: Option<bool>,
    ) -> RpcResult<Vec<GraphExecutionJobInfo>>;

    /// Pauses a schedule owned by `user_id`: no occurrence fires until it is resumed.
    #[method(name = "pause_execution_schedule", param_kind = map)]
    async fn pause_execution_schedule(
        &self,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<bool>;

    /// Resumes a paused schedule; its next run is the first occurrence after now.
    #[method(name = "resume_execution_schedule", param_kind = map)]
    async fn resume_execution_schedule(
        &self,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<bool>;

    /// The occurrences of a schedule from the run ledger, newest first (`limit` 1-1000,
    /// default 50). Works for deleted schedules too, as long as their history exists.
    #[method(name = "get_schedule_runs", param_kind = map)]
    async fn get_schedule_runs(
        &self,
        schedule_id: String,
        user_id: String,
        limit: Option<u32>,
    ) -> RpcResult<Vec<ScheduleRun>>;

    /// The next `count` (1-1000, default 5) fire times of a cron expression in a time zone,
    /// strictly after `after` (RFC 3339; default now), as RFC 3339 instants in UTC. The list
    /// stops at the end of year 9999, so it may hold fewer than `count`.
    #[method(name = "next_fire_times", param_kind = map)]
    async fn next_fire_times(
        &self,
        cron: String,
        timezone: Option<String>,
        after: Option<String>,
        count: Option<u32>,
    ) -> RpcResult<Vec<String>>;

    /// Runs the `process_existing_batches` system task now with the given keyword arguments
    /// (`{"notification_types": [...]}`) and returns its result. Admin only, as are all
    /// `execute_*` methods; each run is recorded in the run ledger under the task's id.
    #[method(name = "execute_process_existing_batches", param_kind = map, with_extensions)]
    async fn execute_process_existing_batches(&self, kwargs: Value) -> RpcResult<Value>;

    /// Runs the `process_weekly_summary` system task now.
    #[method(name = "execute_process_weekly_summary", param_kind = map, with_extensions)]
    async fn execute_process_weekly_summary(&self) -> RpcResult<Value>;

    /// Runs the `report_late_executions` system task now.
    #[method(name = "execute_report_late_executions", param_kind = map, with_extensions)]
    async fn execute_report_late_executions(&self) -> RpcResult<Value>;

    /// Runs the `report_block_error_rates` system task now.
    #[method(name = "execute_report_block_error_rates", param_kind = map, with_extensions)]
    async fn execute_report_block_error_rates(&self) -> RpcResult<Value>;

    /// Runs the `cleanup_expired_files` system task now.
    #[method(name = "execute_cleanup_expired_files", param_kind = map, with_extensions)]
    async fn execute_cleanup_expired_files(&self) -> RpcResult<Value>;

    /// This replica's state: uptime, whether it leads, the database, each jobstore with its
    /// schedule count and next run.
    #[method(name = "get_scheduler_status", param_kind = map)]
    async fn get_scheduler_status(&self) -> RpcResult<SchedulerStatus>;

    /// Every schedule of every jobstore and every declared system task, with next run times.
    /// Admin only.
    #[method(name = "get_registry", param_kind = map, with_extensions)]
    async fn get_registry(&self) -> RpcResult<Registry>;

    /// Liveness: answers "OK".
    #[method(name = "health_check")]
    async fn health_check(&self) -> RpcResult<String>;
}
