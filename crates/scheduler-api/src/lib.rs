//! The scheduler's JSON-RPC API, shared by the service (which implements [`SchedulerApiServer`])
//! and its callers (which use [`SchedulerApiClient`] or the `scheduler-client` crate).
//!
//! Method names and parameters keep the wire protocol of the AutoGPT platform's Python scheduler
//! so existing callers work unchanged. Parameters may be passed by name or by position.

// add_graph_execution_schedule takes AutoGPT's keyword arguments one by one: the wire protocol
// fixes their number, and the generated server and client repeat it.
#![allow(clippy::too_many_arguments)]

mod alerts;
mod error;
mod fleet;
mod requests;
mod target;
mod types;
mod values;
mod watch;

pub use alerts::{Alert, AlertKind, AlertPolicy, AlertState};
pub use error::{SchedulerError, codes};
pub use fleet::{Fleet, FleetPhone, FleetRunner, PhoneState, RunningJob};
pub use requests::{
    DEFAULT_LIMIT, DEFAULT_WATCH_ATTEMPTS, DEFAULT_WATCH_INTERVAL_SECS, ExecutionScheduleQuery,
    MAX_ID_LEN, MAX_LIMIT, MAX_MESSAGE_LEN, MAX_TAG_LEN, MAX_TAGS, NewGraphSchedule, NewSchedule,
    NewWatch, RunQuery, ScheduleQuery, ScheduleUpdate, Valid, WatchQuery, check_id, check_tags,
    page_limit,
};
pub use target::{
    DeviceJobTarget, DeviceSelector, ExpectedStatus, GraphExecutionTarget, HttpTarget, Origin,
    Overlap, RedisPublishTarget, RpcTarget, SystemTaskTarget, Target, TargetData, WatchTarget,
    http_method,
};
pub use triggers::{TriggerKind, TriggerSpec};
pub use types::{
    Backfill, COPILOT_TURN_KIND, CalendarView, ChangePage, FirePreview, GRAPH_KIND,
    GraphExecutionJobInfo, JobstoreStatus, MinuteCount, Placement, PreviewFire, Registry,
    RegistryEntry, RunPage, RunStatus, Schedule, ScheduleChange, SchedulePage, SchedulePolicy,
    ScheduleRun, SchedulerStatus, SystemTaskEntry,
};
pub use values::{check_object, json_kind};
pub use watch::{
    Check, CheckResult, Delivery, DeliveryState, MAX_DELAY_SECS, MAX_WATCH_ATTEMPTS,
    MAX_WATCH_INTERVAL_SECS, OnComplete, Watch, WatchPage, WatchStatus,
};

use chrono::{DateTime, Utc};
use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use serde_json::Value;

/// The default port, as in AutoGPT (`execution_scheduler_port`).
pub const DEFAULT_PORT: u16 = 8003;

/// The methods only the admin token may call (when tokens are configured).
pub const ADMIN_METHODS: [&str; 17] = [
    "get_registry",
    "quarantine_device",
    "release_device",
    "execute_process_existing_batches",
    "execute_process_weekly_summary",
    "execute_report_late_executions",
    "execute_report_block_error_rates",
    "execute_cleanup_expired_files",
    "execute_flush_matured_alerts",
    "execute_send_due_briefings",
    "execute_cleanup_oauth_tokens",
    "execute_report_execution_accuracy_alerts",
    "execute_ensure_embeddings_coverage",
    "execute_reconcile_schedule_index",
    "execute_optimize_block_descriptions",
    "get_parked_jobs",
    "reconcile_parked_jobs",
];

/// AutoGPT's maintenance tasks that a backend declares as `[[schedules]]` (an `rpc` target on
/// the service that runs each, as `deploy/examples/autogpt.toml` does), each run on demand by
/// `execute_<task>`: the declared schedule whose id is the task's name, run now.
pub const DECLARED_TASKS: [&str; 7] = [
    "flush_matured_alerts",
    "send_due_briefings",
    "cleanup_oauth_tokens",
    "report_execution_accuracy_alerts",
    "ensure_embeddings_coverage",
    "reconcile_schedule_index",
    "optimize_block_descriptions",
];

/// The most schedule ids `get_parked_jobs` answers per jobstore when no `limit` is given, as
/// AutoGPT's scheduler does.
pub const PARKED_LIMIT: u32 = 1000;

/// The methods of the fleet; their parameters that do not parse (an unknown state) are
/// answered with `ValueError`.
pub const FLEET_METHODS: [&str; 3] = ["list_fleet", "quarantine_device", "release_device"];

/// The methods of the general schedule API. Their parameters that do not parse (an unknown
/// trigger or target kind, a negative jitter, an unknown alert state) are answered with
/// `ValueError`, like every other bad value.
pub const GENERAL_METHODS: [&str; 13] = [
    "create_schedule",
    "update_schedule",
    "get_schedule",
    "list_schedules",
    "delete_schedule",
    "pause_schedule",
    "resume_schedule",
    "trigger_schedule",
    "backfill_schedule",
    "list_runs",
    "preview_fires",
    "list_changes",
    "list_alerts",
];

/// The methods of watches, an agent's monitoring jobs. Like the general methods, their
/// parameters that do not parse are answered with `ValueError`.
pub const WATCH_METHODS: [&str; 4] = [
    "add_watch",
    "list_watches",
    "cancel_watch",
    "cancel_workflow",
];

/// The owner of schedules declared in the configuration; no caller may use it.
pub const SYSTEM_OWNER: &str = "system";

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
    #[method(name = "add_graph_execution_schedule", param_kind = map, with_extensions)]
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
        organization_id: Option<String>,
        team_id: Option<String>,
        expert_id: Option<String>,
    ) -> RpcResult<GraphExecutionJobInfo>;

    /// Deletes a schedule owned by `user_id` and returns it as it was.
    #[method(name = "delete_graph_execution_schedule", param_kind = map, with_extensions)]
    async fn delete_graph_execution_schedule(
        &self,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<GraphExecutionJobInfo>;

    /// Lists schedules, optionally only one graph's or one user's. With `organization_id`, a
    /// user sees their own schedules, the organisation's schedules without a team and those of
    /// the teams in `team_ids`; an expert's schedules only their owner sees. Paused schedules
    /// are left out unless `include_paused` is true (they have no `next_run_time`).
    #[method(name = "get_graph_execution_schedules", param_kind = map, with_extensions)]
    async fn get_graph_execution_schedules(
        &self,
        graph_id: Option<String>,
        user_id: Option<String>,
        organization_id: Option<String>,
        team_ids: Option<Vec<String>>,
        include_paused: Option<bool>,
    ) -> RpcResult<Vec<GraphExecutionJobInfo>>;

    /// AutoGPT's listing of every kind of schedule: as `get_graph_execution_schedules`, with
    /// `kind` (`graph`, the kind this service holds, or `copilot_turn`, which lists nothing)
    /// and `session_id` (a copilot turn's, so it lists nothing either).
    #[method(name = "get_execution_schedules", param_kind = map, with_extensions)]
    async fn get_execution_schedules(
        &self,
        graph_id: Option<String>,
        user_id: Option<String>,
        session_id: Option<String>,
        kind: Option<String>,
        organization_id: Option<String>,
        team_ids: Option<Vec<String>>,
        include_paused: Option<bool>,
    ) -> RpcResult<Vec<GraphExecutionJobInfo>>;

    /// The schedules the engine parked (it could not plan or dispatch them), per jobstore:
    /// `{jobstore: [schedule ids]}`, at most `limit` (default 1000) each. Admin only.
    #[method(name = "get_parked_jobs", param_kind = map, with_extensions)]
    async fn get_parked_jobs(
        &self,
        limit: Option<u32>,
    ) -> RpcResult<std::collections::BTreeMap<String, Vec<String>>>;

    /// Checks every parked schedule again and resumes those that can now be planned; answers
    /// `{jobstore: [schedule ids resumed]}`. What still cannot be planned stays parked with its
    /// reason. Admin only.
    #[method(name = "reconcile_parked_jobs", param_kind = map, with_extensions)]
    async fn reconcile_parked_jobs(
        &self,
    ) -> RpcResult<std::collections::BTreeMap<String, Vec<String>>>;

    /// Pauses a schedule owned by `user_id`: no occurrence fires until it is resumed. False
    /// when it already was paused.
    #[method(name = "pause_execution_schedule", param_kind = map, with_extensions)]
    async fn pause_execution_schedule(
        &self,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<bool>;

    /// Resumes a paused schedule; its next run is the first occurrence after now. False when
    /// it was not paused.
    #[method(name = "resume_execution_schedule", param_kind = map, with_extensions)]
    async fn resume_execution_schedule(
        &self,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<bool>;

    /// The occurrences of a schedule from the run ledger, newest first (`limit` 1-1000,
    /// default 50). Works for deleted schedules too, as long as their history exists.
    #[method(name = "get_schedule_runs", param_kind = map, with_extensions)]
    async fn get_schedule_runs(
        &self,
        schedule_id: String,
        user_id: String,
        limit: Option<u32>,
    ) -> RpcResult<Vec<ScheduleRun>>;

    /// The next `count` (1-1000, default 5) fire times of a cron expression in a time zone,
    /// strictly after `after` (RFC 3339; default now), as RFC 3339 instants in UTC. The list
    /// stops at the end of year 9999, so it may hold fewer than `count`. An expression with
    /// `H` fields needs `hash_key`, the id of the schedule it is for: `H` becomes what it
    /// becomes in that schedule. `exclude` names calendars (`[calendars.<name>]`) whose dates
    /// are left out, as a trigger naming them skips them.
    #[method(name = "next_fire_times", param_kind = map)]
    async fn next_fire_times(
        &self,
        cron: String,
        timezone: Option<String>,
        after: Option<String>,
        count: Option<u32>,
        hash_key: Option<String>,
        exclude: Option<Vec<String>>,
    ) -> RpcResult<Vec<String>>;

    /// The audit log, newest first: every change of a schedule or watch (create, update,
    /// pause, resume, delete, trigger, backfill, declared sync, import, the engine parking
    /// one) with when, who (the client's name), through which route and what changed. A
    /// client sees the changes of its owners only. `cursor` is a page's `next_cursor`.
    #[method(name = "list_changes", param_kind = map, with_extensions)]
    async fn list_changes(
        &self,
        schedule_id: Option<String>,
        owner: Option<String>,
        since: Option<DateTime<Utc>>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> RpcResult<ChangePage>;

    /// Incidents of schedules whose work did not happen (late, failing in a row, missing),
    /// newest first (`limit` 1-1000, default 100): `state` `open` or `resolved`, one owner's,
    /// one schedule's. A client sees the incidents of its owners only.
    #[method(name = "list_alerts", param_kind = map, with_extensions)]
    async fn list_alerts(
        &self,
        state: Option<AlertState>,
        owner: Option<String>,
        schedule_id: Option<String>,
        limit: Option<u32>,
    ) -> RpcResult<Vec<Alert>>;

    /// The exclusion calendars of the configuration: the local dates, ranges of dates and
    /// weekdays on which the occurrences of a trigger naming one are skipped.
    #[method(name = "list_calendars", param_kind = map)]
    async fn list_calendars(&self) -> RpcResult<Vec<CalendarView>>;

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

    /// Runs the declared schedule `flush_matured_alerts` now (see [`DECLARED_TASKS`]) and
    /// returns its target's answer.
    #[method(name = "execute_flush_matured_alerts", param_kind = map, with_extensions)]
    async fn execute_flush_matured_alerts(&self) -> RpcResult<Value>;

    /// Runs the declared schedule `send_due_briefings` now.
    #[method(name = "execute_send_due_briefings", param_kind = map, with_extensions)]
    async fn execute_send_due_briefings(&self) -> RpcResult<Value>;

    /// Runs the declared schedule `cleanup_oauth_tokens` now.
    #[method(name = "execute_cleanup_oauth_tokens", param_kind = map, with_extensions)]
    async fn execute_cleanup_oauth_tokens(&self) -> RpcResult<Value>;

    /// Runs the declared schedule `report_execution_accuracy_alerts` now.
    #[method(
        name = "execute_report_execution_accuracy_alerts",
        param_kind = map,
        with_extensions
    )]
    async fn execute_report_execution_accuracy_alerts(&self) -> RpcResult<Value>;

    /// Runs the declared schedule `ensure_embeddings_coverage` now.
    #[method(name = "execute_ensure_embeddings_coverage", param_kind = map, with_extensions)]
    async fn execute_ensure_embeddings_coverage(&self) -> RpcResult<Value>;

    /// Runs the declared schedule `reconcile_schedule_index` now.
    #[method(name = "execute_reconcile_schedule_index", param_kind = map, with_extensions)]
    async fn execute_reconcile_schedule_index(&self) -> RpcResult<Value>;

    /// Runs the declared schedule `optimize_block_descriptions` now.
    #[method(name = "execute_optimize_block_descriptions", param_kind = map, with_extensions)]
    async fn execute_optimize_block_descriptions(&self) -> RpcResult<Value>;

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

    /// Creates a schedule of any trigger and target for `owner`. Without `id` one is made up.
    /// An existing `id` is `AlreadyExistsError`, or, with `replace_existing`, replaced in place
    /// (its ledger kept). Targets name a configured endpoint, never a raw URL.
    #[method(name = "create_schedule", param_kind = map, with_extensions)]
    async fn create_schedule(
        &self,
        id: Option<String>,
        name: Option<String>,
        owner: String,
        jobstore: Option<String>,
        trigger: TriggerSpec,
        target: Target,
        policy: Option<SchedulePolicy>,
        tags: Option<Vec<String>>,
        replace_existing: Option<bool>,
    ) -> RpcResult<Schedule>;

    /// Changes a schedule in place; absent fields stay. A new trigger recomputes the next
    /// run from now.
    #[method(name = "update_schedule", param_kind = map, with_extensions)]
    async fn update_schedule(
        &self,
        id: String,
        owner: String,
        name: Option<String>,
        trigger: Option<TriggerSpec>,
        target: Option<Target>,
        policy: Option<SchedulePolicy>,
        tags: Option<Vec<String>>,
    ) -> RpcResult<Schedule>;

    /// A schedule with its last run.
    #[method(name = "get_schedule", param_kind = map, with_extensions)]
    async fn get_schedule(&self, id: String, owner: String) -> RpcResult<Schedule>;

    /// Schedules in id order, `limit` (1-1000, default 100) at a time from `cursor`.
    #[method(name = "list_schedules", param_kind = map, with_extensions)]
    async fn list_schedules(
        &self,
        owner: Option<String>,
        target_type: Option<String>,
        paused: Option<bool>,
        tag: Option<String>,
        jobstore: Option<String>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> RpcResult<SchedulePage>;

    /// Every occurrence of every active schedule (of `owner`, with `tag`, in `jobstore`) due
    /// in `[from, to]` (RFC 3339, at most 7 days apart), in time order, the first `limit`
    /// (1-10000, default 10000), with how many fall due in each minute and the busiest
    /// minutes. A window of more than 1,000,000 occurrences is refused: narrow it.
    #[method(name = "preview_fires", param_kind = map, with_extensions)]
    async fn preview_fires(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        owner: Option<String>,
        tag: Option<String>,
        jobstore: Option<String>,
        limit: Option<u32>,
    ) -> RpcResult<FirePreview>;

    /// Deletes a schedule and returns it as it was; its runs stay in the ledger.
    #[method(name = "delete_schedule", param_kind = map, with_extensions)]
    async fn delete_schedule(&self, id: String, owner: String) -> RpcResult<Schedule>;

    /// Pauses a schedule; the reason is kept and shown.
    #[method(name = "pause_schedule", param_kind = map, with_extensions)]
    async fn pause_schedule(
        &self,
        id: String,
        owner: String,
        reason: Option<String>,
    ) -> RpcResult<Schedule>;

    /// Resumes a schedule from now on: what it missed while paused does not run.
    #[method(name = "resume_schedule", param_kind = map, with_extensions)]
    async fn resume_schedule(&self, id: String, owner: String) -> RpcResult<Schedule>;

    /// Runs a schedule now, once, as an occurrence of its own, under its overlap policy;
    /// returns that occurrence as the ledger has it.
    #[method(name = "trigger_schedule", param_kind = map, with_extensions)]
    async fn trigger_schedule(&self, id: String, owner: String) -> RpcResult<ScheduleRun>;

    /// Queues the occurrences the trigger had in `[start, end]` (RFC 3339, not in the future)
    /// that are not in the ledger yet, oldest first, one after another; refuses a range of
    /// more than `max` (default 1000, at most 10000) occurrences.
    #[method(name = "backfill_schedule", param_kind = map, with_extensions)]
    async fn backfill_schedule(
        &self,
        id: String,
        owner: String,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        max: Option<u32>,
    ) -> RpcResult<Backfill>;

    /// A schedule's occurrences from the ledger, newest first, `limit` (1-1000, default 100)
    /// at a time from `cursor`.
    #[method(name = "list_runs", param_kind = map, with_extensions)]
    async fn list_runs(
        &self,
        schedule_id: String,
        owner: String,
        status: Option<RunStatus>,
        since: Option<DateTime<Utc>>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> RpcResult<RunPage>;

    /// Adds a watch for `user_id`: its check (`job_type` `poll_module`, `poll_url` or `delay`,
    /// configured by `check_config`) runs every `interval_seconds` (default 30) until it
    /// succeeds or `max_attempts` (default 120, at most 100,000) checks have not; then the
    /// watch completes once, as `on_complete` says (`notify`, the default, or
    /// `resume_conversation`). The first check is one interval after now (for `delay`, after
    /// the delay).
    #[method(name = "add_watch", param_kind = map, with_extensions)]
    async fn add_watch(
        &self,
        job_type: String,
        check_config: Value,
        on_success_message: String,
        on_failure_message: Option<String>,
        on_complete: Option<String>,
        workflow_id: Option<String>,
        interval_seconds: Option<i64>,
        max_attempts: Option<i64>,
        user_id: String,
        conversation_id: Option<String>,
        platform: Option<String>,
        platform_channel_id: Option<String>,
        platform_thread_id: Option<String>,
    ) -> RpcResult<Watch>;

    /// Watches, newest first, `limit` (1-1000, default 100) at a time from `cursor`;
    /// `status_filter` is `active`, `completed`, `failed` or `cancelled`.
    #[method(name = "list_watches", param_kind = map, with_extensions)]
    async fn list_watches(
        &self,
        status_filter: Option<String>,
        user_id: Option<String>,
        workflow_id: Option<String>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> RpcResult<WatchPage>;

    /// Cancels an active watch and returns it; it sends nothing. A watch that has ended is
    /// returned as it is (its status says so).
    #[method(name = "cancel_watch", param_kind = map, with_extensions)]
    async fn cancel_watch(&self, job_id: String) -> RpcResult<Watch>;

    /// Cancels every active watch of a workflow; returns how many it cancelled.
    #[method(name = "cancel_workflow", param_kind = map, with_extensions)]
    async fn cancel_workflow(&self, workflow_id: String) -> RpcResult<u64>;

    /// Every phone of every device runner (`[device_runners.<name>]`) with its runner, state,
    /// health, quarantine, running job and queue length, filtered by runner, by tags (a phone
    /// carrying every one) and by state; and every runner, a runner that does not answer shown
    /// unreachable with when it was last seen.
    #[method(name = "list_fleet", param_kind = map)]
    async fn list_fleet(
        &self,
        runner: Option<String>,
        tags: Option<Vec<String>>,
        state: Option<PhoneState>,
    ) -> RpcResult<Fleet>;

    /// Takes a phone of a runner out of service (the runner's `quarantine_device`): it takes
    /// no new job, and the jobs placed on it by tags are moved to other phones. Admin.
    #[method(name = "quarantine_device", param_kind = map, with_extensions)]
    async fn quarantine_device(
        &self,
        runner: String,
        serial: String,
        reason: Option<String>,
    ) -> RpcResult<FleetPhone>;

    /// Ends a phone's quarantine (the runner's `release_device`). Admin.
    #[method(name = "release_device", param_kind = map, with_extensions)]
    async fn release_device(&self, runner: String, serial: String) -> RpcResult<FleetPhone>;
}
