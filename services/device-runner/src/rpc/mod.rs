//! The API, one file per area: `jobs` (queueing and stopping), `runs` (history), `logs`,
//! `info` (status, devices, job types).

mod info;
mod jobs;
mod logs;
mod runs;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use device_runner_api::{
    DeviceEvent, DeviceInfo, DeviceRunnerApiServer, DeviceTimeline, Job, JobTypeInfo, LogChunk,
    RunnerStatus,
};
use jsonrpsee::PendingSubscriptionSink;
use jsonrpsee::core::{RpcResult, SubscriptionResult, async_trait};
use serde_json::Value;

use crate::health;
use crate::state::RunnerState;

pub struct RpcHandler {
    runner: Arc<RunnerState>,
}

impl RpcHandler {
    pub fn new(runner: Arc<RunnerState>) -> Self {
        RpcHandler { runner }
    }
}

#[async_trait]
impl DeviceRunnerApiServer for RpcHandler {
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
    ) -> RpcResult<Job> {
        let request = jobs::Enqueue {
            traceparent,
            device,
            pool,
            job_type,
            params,
            priority,
            max_duration,
            source,
            checkpoint,
            requeued_from: None,
            idempotency_key,
        };
        Ok(jobs::enqueue(&self.runner, request).await?)
    }

    async fn check_job(
        &self,
        device: Option<String>,
        job_type: String,
        params: Option<Value>,
        priority: Option<i64>,
        max_duration: Option<Value>,
        pool: Option<String>,
    ) -> RpcResult<String> {
        let request = jobs::Enqueue {
            device,
            pool,
            job_type,
            params,
            priority,
            max_duration,
            source: None,
            checkpoint: None,
            requeued_from: None,
            idempotency_key: None,
            traceparent: None,
        };
        Ok(jobs::checked(&self.runner, request)?.device)
    }

    async fn start_job(
        &self,
        module_id: String,
        inputs: Option<Value>,
        settings: Option<Value>,
        checkpoint: Option<Value>,
        max_duration: Option<Value>,
    ) -> RpcResult<String> {
        let module = jobs::Module {
            module_id,
            inputs,
            settings,
            checkpoint,
            max_duration,
        };
        Ok(jobs::start(&self.runner, module).await?)
    }

    async fn stop_job(&self, job_id: String) -> RpcResult<bool> {
        Ok(jobs::stop(&self.runner, &job_id).await?)
    }

    async fn resume_job(&self, job_id: String) -> RpcResult<Job> {
        Ok(jobs::requeue(&self.runner, &job_id, true).await?)
    }

    async fn list_queue(&self, device: Option<String>) -> RpcResult<Vec<Job>> {
        Ok(jobs::list_queue(&self.runner, device).await?)
    }

    async fn kill_job(&self, id: String) -> RpcResult<Job> {
        Ok(jobs::kill(&self.runner, &id).await?)
    }

    async fn cancel_job(&self, id: String) -> RpcResult<Job> {
        Ok(jobs::cancel(&self.runner, &id).await?)
    }

    async fn restart_run(&self, run_id: String) -> RpcResult<Job> {
        Ok(jobs::requeue(&self.runner, &run_id, false).await?)
    }

    async fn get_status(&self) -> RpcResult<RunnerStatus> {
        Ok(info::status(&self.runner).await?)
    }

    async fn list_runs(
        &self,
        device: Option<String>,
        status: Option<String>,
        job_type: Option<String>,
        limit: Option<i64>,
        before: Option<String>,
        ended_before: Option<DateTime<Utc>>,
    ) -> RpcResult<Vec<Job>> {
        let query = runs::RunsQuery {
            device,
            status,
            job_type,
            limit,
            before,
            ended_before,
        };
        Ok(runs::list(&self.runner, query).await?)
    }

    async fn get_run(&self, run_id: String) -> RpcResult<Job> {
        Ok(runs::get(&self.runner, &run_id).await?)
    }

    async fn get_logs(
        &self,
        job_id: String,
        offset: Option<u64>,
        limit: Option<u64>,
    ) -> RpcResult<LogChunk> {
        Ok(logs::read(&self.runner, &job_id, offset.unwrap_or(0), limit).await?)
    }

    async fn subscribe_logs(
        &self,
        pending: PendingSubscriptionSink,
        job_id: String,
        offset: Option<u64>,
    ) -> SubscriptionResult {
        logs::follow(self.runner.clone(), pending, job_id, offset.unwrap_or(0)).await
    }

    async fn get_timeline(&self, hours: Option<f64>) -> RpcResult<Vec<DeviceTimeline>> {
        Ok(runs::timeline(&self.runner, hours).await?)
    }

    async fn list_devices(&self) -> RpcResult<Vec<DeviceInfo>> {
        Ok(info::devices(&self.runner))
    }

    async fn quarantine_device(
        &self,
        serial: String,
        reason: Option<String>,
    ) -> RpcResult<DeviceInfo> {
        Ok(health::quarantine(&self.runner, &serial, reason).await?)
    }

    async fn release_device(&self, serial: String) -> RpcResult<DeviceInfo> {
        Ok(health::release(&self.runner, &serial, "released by an operator").await?)
    }

    async fn get_device_history(
        &self,
        serial: String,
        limit: Option<i64>,
    ) -> RpcResult<Vec<DeviceEvent>> {
        Ok(health::history(&self.runner, &serial, limit).await?)
    }

    async fn list_job_types(&self) -> RpcResult<Vec<JobTypeInfo>> {
        Ok(info::job_types(&self.runner))
    }

    async fn health_check(&self) -> RpcResult<String> {
        Ok("OK".into())
    }
}
