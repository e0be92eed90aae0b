//! The JSON-RPC surface: [`RpcHandler`] implements the API trait and hands each method to the
//! file of its area.

mod access;
pub(crate) mod alerts;
mod changes;
mod cron;
mod fleet;
pub(crate) mod general;
mod parked;
mod preview;
mod registry;
mod runs;
mod schedules;
mod status;
mod system;
mod views;
mod watches;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use jsonrpsee::Extensions;
use jsonrpsee::core::{RpcResult, async_trait};
use scheduler_api::{
    Backfill, Check, ExecutionScheduleQuery, FirePreview, Fleet, FleetPhone, GraphExecutionJobInfo,
    NewGraphSchedule, NewSchedule, NewWatch, PhoneState, Registry, RunPage, RunQuery, RunStatus,
    Schedule, SchedulePage, SchedulePolicy, ScheduleQuery, ScheduleRun, ScheduleUpdate,
    SchedulerApiServer, SchedulerError, SchedulerStatus, Target, TriggerSpec, Watch, WatchPage,
    WatchQuery,
};
use serde_json::Value;

use crate::app::App;
use crate::autogpt::tasks::SystemTask;

pub(crate) struct RpcHandler {
    app: Arc<App>,
}

impl RpcHandler {
    pub(crate) fn new(app: Arc<App>) -> Self {
        RpcHandler { app }
    }

    async fn execute(
        &self,
        extensions: &Extensions,
        task: SystemTask,
        kwargs: Option<Value>,
    ) -> RpcResult<Value> {
        self.admin(&format!("execute_{}", task.as_str()), extensions)?;
        Ok(system::execute(&self.app, task, kwargs).await?)
    }

    /// `execute_<task>` of a task a backend declares ([`scheduler_api::DECLARED_TASKS`]).
    async fn execute_declared(&self, extensions: &Extensions, task: &str) -> RpcResult<Value> {
        self.admin(&format!("execute_{task}"), extensions)?;
        Ok(system::execute_declared(&self.app, task).await?)
    }

    fn admin(&self, method: &str, extensions: &Extensions) -> Result<(), SchedulerError> {
        self.app
            .auth
            .check_admin(method, extensions)
            .map_err(SchedulerError::Unauthorized)
    }
}

#[async_trait]
impl SchedulerApiServer for RpcHandler {
    // The argument list is AutoGPT's wire protocol (see scheduler-api).
    #[allow(clippy::too_many_arguments)]
    async fn add_graph_execution_schedule(
        &self,
        extensions: &Extensions,
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
    ) -> RpcResult<GraphExecutionJobInfo> {
        let request = NewGraphSchedule {
            user_id,
            graph_id,
            graph_version,
            cron,
            input_data,
            input_credentials,
            name,
            user_timezone,
            policy,
            organization_id,
            team_id,
            expert_id,
        };
        Ok(schedules::add(&self.app, extensions, request.validate()?).await?)
    }

    async fn delete_graph_execution_schedule(
        &self,
        extensions: &Extensions,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<GraphExecutionJobInfo> {
        Ok(schedules::delete(&self.app, extensions, &schedule_id, &user_id).await?)
    }

    async fn get_graph_execution_schedules(
        &self,
        extensions: &Extensions,
        graph_id: Option<String>,
        user_id: Option<String>,
        organization_id: Option<String>,
        team_ids: Option<Vec<String>>,
        include_paused: Option<bool>,
    ) -> RpcResult<Vec<GraphExecutionJobInfo>> {
        // As AutoGPT's: the listing of every kind, of the graph kind.
        let kind = Some(scheduler_api::GRAPH_KIND.to_string());
        self.get_execution_schedules(
            extensions,
            graph_id,
            user_id,
            None,
            kind,
            organization_id,
            team_ids,
            include_paused,
        )
        .await
    }

    async fn get_execution_schedules(
        &self,
        extensions: &Extensions,
        graph_id: Option<String>,
        user_id: Option<String>,
        session_id: Option<String>,
        kind: Option<String>,
        organization_id: Option<String>,
        team_ids: Option<Vec<String>>,
        include_paused: Option<bool>,
    ) -> RpcResult<Vec<GraphExecutionJobInfo>> {
        let query = ExecutionScheduleQuery {
            graph_id,
            user_id,
            session_id,
            kind,
            organization_id,
            team_ids,
            include_paused: include_paused.unwrap_or(false),
        };
        Ok(schedules::list(&self.app, extensions, query).await?)
    }

    async fn get_parked_jobs(
        &self,
        extensions: &Extensions,
        limit: Option<u32>,
    ) -> RpcResult<BTreeMap<String, Vec<String>>> {
        self.admin("get_parked_jobs", extensions)?;
        Ok(parked::list(&self.app, extensions, limit).await?)
    }

    async fn reconcile_parked_jobs(
        &self,
        extensions: &Extensions,
    ) -> RpcResult<BTreeMap<String, Vec<String>>> {
        self.admin("reconcile_parked_jobs", extensions)?;
        Ok(parked::reconcile(&self.app, extensions).await?)
    }

    async fn pause_execution_schedule(
        &self,
        extensions: &Extensions,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<bool> {
        Ok(schedules::set_paused(&self.app, extensions, &schedule_id, &user_id, true).await?)
    }

    async fn resume_execution_schedule(
        &self,
        extensions: &Extensions,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<bool> {
        Ok(schedules::set_paused(&self.app, extensions, &schedule_id, &user_id, false).await?)
    }

    async fn get_schedule_runs(
        &self,
        extensions: &Extensions,
        schedule_id: String,
        user_id: String,
        limit: Option<u32>,
    ) -> RpcResult<Vec<ScheduleRun>> {
        Ok(runs::list(&self.app, extensions, &schedule_id, &user_id, limit).await?)
    }

    async fn next_fire_times(
        &self,
        cron: String,
        timezone: Option<String>,
        after: Option<String>,
        count: Option<u32>,
        hash_key: Option<String>,
        exclude: Option<Vec<String>>,
    ) -> RpcResult<Vec<String>> {
        let asked = cron::FireTimes {
            timezone,
            after,
            count,
            hash_key,
            exclude: exclude.unwrap_or_default(),
        };
        Ok(cron::next_fire_times(&cron, asked)?)
    }

    async fn list_changes(
        &self,
        extensions: &Extensions,
        schedule_id: Option<String>,
        owner: Option<String>,
        since: Option<DateTime<Utc>>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> RpcResult<scheduler_api::ChangePage> {
        let query = changes::ChangeQuery {
            schedule_id,
            owner,
            since,
            limit,
            cursor,
        };
        Ok(changes::list(&self.app, extensions, query).await?)
    }

    async fn list_alerts(
        &self,
        extensions: &Extensions,
        state: Option<scheduler_api::AlertState>,
        owner: Option<String>,
        schedule_id: Option<String>,
        limit: Option<u32>,
    ) -> RpcResult<Vec<scheduler_api::Alert>> {
        let query = alerts::AlertQuery {
            state,
            owner,
            schedule_id,
            limit,
        };
        Ok(alerts::list(&self.app, extensions, query).await?)
    }

    async fn list_calendars(&self) -> RpcResult<Vec<scheduler_api::CalendarView>> {
        Ok(crate::calendars::views())
    }

    async fn execute_process_existing_batches(
        &self,
        extensions: &Extensions,
        kwargs: Value,
    ) -> RpcResult<Value> {
        self.execute(extensions, SystemTask::ProcessExistingBatches, Some(kwargs))
            .await
    }

    async fn execute_process_weekly_summary(&self, extensions: &Extensions) -> RpcResult<Value> {
        self.execute(extensions, SystemTask::ProcessWeeklySummary, None)
            .await
    }

    async fn execute_report_late_executions(&self, extensions: &Extensions) -> RpcResult<Value> {
        self.execute(extensions, SystemTask::ReportLateExecutions, None)
            .await
    }

    async fn execute_report_block_error_rates(&self, extensions: &Extensions) -> RpcResult<Value> {
        self.execute(extensions, SystemTask::ReportBlockErrorRates, None)
            .await
    }

    async fn execute_cleanup_expired_files(&self, extensions: &Extensions) -> RpcResult<Value> {
        self.execute(extensions, SystemTask::CleanupExpiredFiles, None)
            .await
    }

    async fn execute_flush_matured_alerts(&self, extensions: &Extensions) -> RpcResult<Value> {
        self.execute_declared(extensions, "flush_matured_alerts")
            .await
    }

    async fn execute_send_due_briefings(&self, extensions: &Extensions) -> RpcResult<Value> {
        self.execute_declared(extensions, "send_due_briefings")
            .await
    }

    async fn execute_cleanup_oauth_tokens(&self, extensions: &Extensions) -> RpcResult<Value> {
        self.execute_declared(extensions, "cleanup_oauth_tokens")
            .await
    }

    async fn execute_report_execution_accuracy_alerts(
        &self,
        extensions: &Extensions,
    ) -> RpcResult<Value> {
        self.execute_declared(extensions, "report_execution_accuracy_alerts")
            .await
    }

    async fn execute_ensure_embeddings_coverage(
        &self,
        extensions: &Extensions,
    ) -> RpcResult<Value> {
        self.execute_declared(extensions, "ensure_embeddings_coverage")
            .await
    }

    async fn execute_reconcile_schedule_index(&self, extensions: &Extensions) -> RpcResult<Value> {
        self.execute_declared(extensions, "reconcile_schedule_index")
            .await
    }

    async fn execute_optimize_block_descriptions(
        &self,
        extensions: &Extensions,
    ) -> RpcResult<Value> {
        self.execute_declared(extensions, "optimize_block_descriptions")
            .await
    }

    async fn get_registry(&self, extensions: &Extensions) -> RpcResult<Registry> {
        self.admin("get_registry", extensions)?;
        Ok(registry::registry(&self.app).await?)
    }

    async fn get_scheduler_status(&self) -> RpcResult<SchedulerStatus> {
        Ok(status::status(&self.app).await)
    }

    async fn health_check(&self) -> RpcResult<String> {
        Ok("OK".to_string())
    }

    async fn create_schedule(
        &self,
        extensions: &Extensions,
        id: Option<String>,
        name: Option<String>,
        owner: String,
        jobstore: Option<String>,
        trigger: TriggerSpec,
        target: Target,
        policy: Option<SchedulePolicy>,
        tags: Option<Vec<String>>,
        replace_existing: Option<bool>,
    ) -> RpcResult<Schedule> {
        let request = NewSchedule {
            id,
            name,
            owner,
            jobstore,
            trigger,
            target,
            policy,
            tags: tags.unwrap_or_default(),
            replace_existing: replace_existing.unwrap_or(false),
        };
        Ok(general::create(&self.app, extensions, request.validate()?).await?)
    }

    async fn update_schedule(
        &self,
        extensions: &Extensions,
        id: String,
        owner: String,
        name: Option<String>,
        trigger: Option<TriggerSpec>,
        target: Option<Target>,
        policy: Option<SchedulePolicy>,
        tags: Option<Vec<String>>,
    ) -> RpcResult<Schedule> {
        let update = ScheduleUpdate {
            name,
            trigger,
            target,
            policy,
            tags,
        }
        .validate()?;
        Ok(general::update(&self.app, extensions, &id, &owner, update).await?)
    }

    async fn get_schedule(
        &self,
        extensions: &Extensions,
        id: String,
        owner: String,
    ) -> RpcResult<Schedule> {
        Ok(general::get(&self.app, extensions, &id, &owner).await?)
    }

    async fn preview_fires(
        &self,
        extensions: &Extensions,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        owner: Option<String>,
        tag: Option<String>,
        jobstore: Option<String>,
        limit: Option<u32>,
    ) -> RpcResult<FirePreview> {
        let window = preview::Window {
            from,
            to,
            owner,
            tag,
            jobstore,
            limit,
        };
        Ok(preview::preview_fires(&self.app, extensions, window).await?)
    }

    async fn list_schedules(
        &self,
        extensions: &Extensions,
        owner: Option<String>,
        target_type: Option<String>,
        paused: Option<bool>,
        tag: Option<String>,
        jobstore: Option<String>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> RpcResult<SchedulePage> {
        let listing = ScheduleQuery {
            owner,
            target_type,
            paused,
            tag,
            jobstore,
            limit,
            cursor,
        }
        .validate()?;
        Ok(general::list(&self.app, extensions, listing).await?)
    }

    async fn delete_schedule(
        &self,
        extensions: &Extensions,
        id: String,
        owner: String,
    ) -> RpcResult<Schedule> {
        Ok(general::delete(&self.app, extensions, &id, &owner).await?)
    }

    async fn pause_schedule(
        &self,
        extensions: &Extensions,
        id: String,
        owner: String,
        reason: Option<String>,
    ) -> RpcResult<Schedule> {
        Ok(general::set_paused(&self.app, extensions, &id, &owner, Some(reason)).await?)
    }

    async fn resume_schedule(
        &self,
        extensions: &Extensions,
        id: String,
        owner: String,
    ) -> RpcResult<Schedule> {
        Ok(general::set_paused(&self.app, extensions, &id, &owner, None).await?)
    }

    async fn trigger_schedule(
        &self,
        extensions: &Extensions,
        id: String,
        owner: String,
    ) -> RpcResult<ScheduleRun> {
        Ok(general::trigger(&self.app, extensions, &id, &owner).await?)
    }

    async fn backfill_schedule(
        &self,
        extensions: &Extensions,
        id: String,
        owner: String,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        max: Option<u32>,
    ) -> RpcResult<Backfill> {
        Ok(general::backfill(&self.app, extensions, &id, &owner, (start, end), max).await?)
    }

    async fn list_runs(
        &self,
        extensions: &Extensions,
        schedule_id: String,
        owner: String,
        status: Option<RunStatus>,
        since: Option<DateTime<Utc>>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> RpcResult<RunPage> {
        let listing = RunQuery {
            status,
            since,
            limit,
            cursor,
        }
        .validate()?;
        Ok(general::list_runs(&self.app, extensions, &schedule_id, &owner, listing).await?)
    }

    async fn add_watch(
        &self,
        extensions: &Extensions,
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
    ) -> RpcResult<Watch> {
        let check = Check::parse(&job_type, &check_config).map_err(SchedulerError::Value)?;
        let request = NewWatch {
            user_id,
            check,
            on_success_message,
            on_failure_message,
            on_complete: NewWatch::on_complete_from_wire(on_complete.as_deref())?,
            workflow_id,
            interval_seconds: NewWatch::interval_from_wire(interval_seconds)?,
            max_attempts: NewWatch::attempts_from_wire(max_attempts)?,
            conversation_id,
            platform,
            platform_channel_id,
            platform_thread_id,
        }
        .validate()?;
        Ok(watches::add(&self.app, extensions, request, check_config).await?)
    }

    async fn list_watches(
        &self,
        extensions: &Extensions,
        status_filter: Option<String>,
        user_id: Option<String>,
        workflow_id: Option<String>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> RpcResult<WatchPage> {
        let query = WatchQuery {
            status: WatchQuery::status_from_wire(status_filter.as_deref())?,
            user_id,
            workflow_id,
            limit,
            cursor,
        }
        .validate()?;
        Ok(watches::list(&self.app, extensions, query).await?)
    }

    async fn cancel_watch(&self, extensions: &Extensions, job_id: String) -> RpcResult<Watch> {
        Ok(watches::cancel(&self.app, extensions, &job_id).await?)
    }

    async fn cancel_workflow(
        &self,
        extensions: &Extensions,
        workflow_id: String,
    ) -> RpcResult<u64> {
        Ok(watches::cancel_workflow(&self.app, extensions, &workflow_id).await?)
    }

    async fn list_fleet(
        &self,
        runner: Option<String>,
        tags: Option<Vec<String>>,
        state: Option<PhoneState>,
    ) -> RpcResult<Fleet> {
        Ok(fleet::list(&self.app, runner, tags, state).await?)
    }

    async fn quarantine_device(
        &self,
        extensions: &Extensions,
        runner: String,
        serial: String,
        reason: Option<String>,
    ) -> RpcResult<FleetPhone> {
        let quarantine = Some(reason);
        let method = "quarantine_device";
        Ok(
            fleet::set_quarantine(&self.app, extensions, method, &runner, &serial, quarantine)
                .await?,
        )
    }

    async fn release_device(
        &self,
        extensions: &Extensions,
        runner: String,
        serial: String,
    ) -> RpcResult<FleetPhone> {
        let method = "release_device";
        Ok(fleet::set_quarantine(&self.app, extensions, method, &runner, &serial, None).await?)
    }
}
