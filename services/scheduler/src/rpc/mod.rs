//! The JSON-RPC surface: [`RpcHandler`] implements the API trait and hands each method to the
//! file of its area.

mod cron;
mod registry;
mod runs;
mod schedules;
mod status;
mod system;

use std::sync::Arc;

use jsonrpsee::Extensions;
use jsonrpsee::core::{RpcResult, async_trait};
use scheduler_api::{
    GraphExecutionJobInfo, Registry, SchedulePolicy, ScheduleRun, SchedulerApiServer,
    SchedulerError, SchedulerStatus,
};
use serde_json::Value;

use crate::app::App;
use crate::tasks::SystemTask;

pub struct RpcHandler {
    app: Arc<App>,
}

impl RpcHandler {
    pub fn new(app: Arc<App>) -> Self {
        RpcHandler { app }
    }

    async fn execute(
        &self,
        extensions: &Extensions,
        task: SystemTask,
        kwargs: Option<Value>,
    ) -> RpcResult<Value> {
        let method = format!("execute_{}", task.as_str());
        self.app
            .auth
            .check_admin(&method, extensions)
            .map_err(SchedulerError::Unauthorized)?;
        Ok(system::execute(&self.app, task, kwargs).await?)
    }
}

#[async_trait]
impl SchedulerApiServer for RpcHandler {
    // The argument list is AutoGPT's wire protocol (see scheduler-api).
    #[allow(clippy::too_many_arguments)]
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
    ) -> RpcResult<GraphExecutionJobInfo> {
        let request = schedules::AddRequest {
            user_id,
            graph_id,
            graph_version,
            cron,
            input_data,
            input_credentials,
            name,
            user_timezone,
            policy,
        };
        Ok(schedules::add(&self.app, request).await?)
    }

    async fn delete_graph_execution_schedule(
        &self,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<GraphExecutionJobInfo> {
        Ok(schedules::delete(&self.app, &schedule_id, &user_id).await?)
    }

    async fn get_graph_execution_schedules(
        &self,
        graph_id: Option<String>,
        user_id: Option<String>,
        include_paused: Option<bool>,
    ) -> RpcResult<Vec<GraphExecutionJobInfo>> {
        Ok(schedules::list(
            &self.app,
            graph_id,
            user_id,
            include_paused.unwrap_or(false),
        )
        .await?)
    }

    async fn pause_execution_schedule(
        &self,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<bool> {
        Ok(schedules::set_paused(&self.app, &schedule_id, &user_id, true).await?)
    }

    async fn resume_execution_schedule(
        &self,
        schedule_id: String,
        user_id: String,
    ) -> RpcResult<bool> {
        Ok(schedules::set_paused(&self.app, &schedule_id, &user_id, false).await?)
    }

    async fn get_schedule_runs(
        &self,
        schedule_id: String,
        user_id: String,
        limit: Option<u32>,
    ) -> RpcResult<Vec<ScheduleRun>> {
        Ok(runs::list(&self.app, &schedule_id, &user_id, limit).await?)
    }

    async fn next_fire_times(
        &self,
        cron: String,
        timezone: Option<String>,
        after: Option<String>,
        count: Option<u32>,
    ) -> RpcResult<Vec<String>> {
        Ok(cron::next_fire_times(
            &cron,
            timezone.as_deref(),
            after.as_deref(),
            count,
        )?)
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

    async fn get_registry(&self, extensions: &Extensions) -> RpcResult<Registry> {
        self.app
            .auth
            .check_admin("get_registry", extensions)
            .map_err(SchedulerError::Unauthorized)?;
        Ok(registry::registry(&self.app).await?)
    }

    async fn get_scheduler_status(&self) -> RpcResult<SchedulerStatus> {
        Ok(status::status(&self.app).await)
    }

    async fn health_check(&self) -> RpcResult<String> {
        Ok("OK".to_string())
    }
}
