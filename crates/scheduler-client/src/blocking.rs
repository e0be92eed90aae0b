//! A blocking wrapper for callers without an async runtime.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use scheduler_api::{
    Backfill, ExecutionScheduleQuery, GraphExecutionJobInfo, RunPage, Schedule, SchedulePage,
    ScheduleRun,
};
use serde_json::Value;

use crate::{
    CalendarView, ClientConfig, Error, FireTimesQuery, NewGraphSchedule, NewSchedule, NewWatch,
    Registry, RunQuery, ScheduleQuery, ScheduleUpdate, SchedulerClient, SchedulerStatus, Watch,
    WatchPage, WatchQuery,
};

/// The same calls as [`SchedulerClient`], each blocking the calling thread. It owns a small
/// runtime, so it must not be used from inside an async task.
pub struct BlockingSchedulerClient {
    runtime: tokio::runtime::Runtime,
    client: SchedulerClient,
}

impl BlockingSchedulerClient {
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start a runtime: {e}")))?;
        // The HTTP client must be created inside the runtime it will run on.
        let client = runtime.block_on(async { SchedulerClient::new(config) })?;
        Ok(BlockingSchedulerClient { runtime, client })
    }

    pub fn from_env() -> Result<Self, Error> {
        BlockingSchedulerClient::new(ClientConfig::from_env()?)
    }

    pub fn add_graph_execution_schedule(
        &self,
        schedule: NewGraphSchedule,
    ) -> Result<GraphExecutionJobInfo, Error> {
        self.runtime
            .block_on(self.client.add_graph_execution_schedule(schedule))
    }

    pub fn delete_graph_execution_schedule(
        &self,
        schedule_id: &str,
        user_id: &str,
    ) -> Result<GraphExecutionJobInfo, Error> {
        self.runtime.block_on(
            self.client
                .delete_graph_execution_schedule(schedule_id, user_id),
        )
    }

    pub fn get_graph_execution_schedules(
        &self,
        query: &ExecutionScheduleQuery,
    ) -> Result<Vec<GraphExecutionJobInfo>, Error> {
        self.runtime
            .block_on(self.client.get_graph_execution_schedules(query))
    }

    pub fn get_execution_schedules(
        &self,
        query: &ExecutionScheduleQuery,
    ) -> Result<Vec<GraphExecutionJobInfo>, Error> {
        self.runtime
            .block_on(self.client.get_execution_schedules(query))
    }

    pub fn get_parked_jobs(
        &self,
        limit: Option<u32>,
    ) -> Result<BTreeMap<String, Vec<String>>, Error> {
        self.runtime.block_on(self.client.get_parked_jobs(limit))
    }

    pub fn reconcile_parked_jobs(&self) -> Result<BTreeMap<String, Vec<String>>, Error> {
        self.runtime.block_on(self.client.reconcile_parked_jobs())
    }

    pub fn pause_execution_schedule(
        &self,
        schedule_id: &str,
        user_id: &str,
    ) -> Result<bool, Error> {
        self.runtime
            .block_on(self.client.pause_execution_schedule(schedule_id, user_id))
    }

    pub fn resume_execution_schedule(
        &self,
        schedule_id: &str,
        user_id: &str,
    ) -> Result<bool, Error> {
        self.runtime
            .block_on(self.client.resume_execution_schedule(schedule_id, user_id))
    }

    pub fn get_schedule_runs(
        &self,
        schedule_id: &str,
        user_id: &str,
        limit: Option<u32>,
    ) -> Result<Vec<ScheduleRun>, Error> {
        self.runtime
            .block_on(self.client.get_schedule_runs(schedule_id, user_id, limit))
    }

    pub fn next_fire_times(&self, cron: &str, query: FireTimesQuery) -> Result<Vec<String>, Error> {
        self.runtime
            .block_on(self.client.next_fire_times(cron, query))
    }

    pub fn list_calendars(&self) -> Result<Vec<CalendarView>, Error> {
        self.runtime.block_on(self.client.list_calendars())
    }

    pub fn get_scheduler_status(&self) -> Result<SchedulerStatus, Error> {
        self.runtime.block_on(self.client.get_scheduler_status())
    }

    pub fn get_registry(&self) -> Result<Registry, Error> {
        self.runtime.block_on(self.client.get_registry())
    }

    pub fn health_check(&self) -> Result<String, Error> {
        self.runtime.block_on(self.client.health_check())
    }

    pub fn execute_system_task(&self, task: &str, kwargs: Option<Value>) -> Result<Value, Error> {
        self.runtime
            .block_on(self.client.execute_system_task(task, kwargs))
    }
}

/// The general schedule API, blocking.
impl BlockingSchedulerClient {
    pub fn create_schedule(&self, schedule: NewSchedule) -> Result<Schedule, Error> {
        self.runtime.block_on(self.client.create_schedule(schedule))
    }

    pub fn update_schedule(
        &self,
        id: &str,
        owner: &str,
        update: ScheduleUpdate,
    ) -> Result<Schedule, Error> {
        self.runtime
            .block_on(self.client.update_schedule(id, owner, update))
    }

    pub fn get_schedule(&self, id: &str, owner: &str) -> Result<Schedule, Error> {
        self.runtime.block_on(self.client.get_schedule(id, owner))
    }

    pub fn list_schedules(&self, query: ScheduleQuery) -> Result<SchedulePage, Error> {
        self.runtime.block_on(self.client.list_schedules(query))
    }

    pub fn delete_schedule(&self, id: &str, owner: &str) -> Result<Schedule, Error> {
        self.runtime
            .block_on(self.client.delete_schedule(id, owner))
    }

    pub fn pause_schedule(
        &self,
        id: &str,
        owner: &str,
        reason: Option<String>,
    ) -> Result<Schedule, Error> {
        self.runtime
            .block_on(self.client.pause_schedule(id, owner, reason))
    }

    pub fn resume_schedule(&self, id: &str, owner: &str) -> Result<Schedule, Error> {
        self.runtime
            .block_on(self.client.resume_schedule(id, owner))
    }

    pub fn trigger_schedule(&self, id: &str, owner: &str) -> Result<ScheduleRun, Error> {
        self.runtime
            .block_on(self.client.trigger_schedule(id, owner))
    }

    pub fn backfill_schedule(
        &self,
        id: &str,
        owner: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        max: Option<u32>,
    ) -> Result<Backfill, Error> {
        self.runtime
            .block_on(self.client.backfill_schedule(id, owner, start, end, max))
    }

    pub fn list_runs(
        &self,
        schedule_id: &str,
        owner: &str,
        query: RunQuery,
    ) -> Result<RunPage, Error> {
        self.runtime
            .block_on(self.client.list_runs(schedule_id, owner, query))
    }
}

/// Watches, blocking.
impl BlockingSchedulerClient {
    pub fn add_watch(&self, watch: NewWatch) -> Result<Watch, Error> {
        self.runtime.block_on(self.client.add_watch(watch))
    }

    pub fn list_watches(&self, query: WatchQuery) -> Result<WatchPage, Error> {
        self.runtime.block_on(self.client.list_watches(query))
    }

    pub fn cancel_watch(&self, id: &str) -> Result<Watch, Error> {
        self.runtime.block_on(self.client.cancel_watch(id))
    }

    pub fn cancel_workflow(&self, workflow_id: &str) -> Result<u64, Error> {
        self.runtime
            .block_on(self.client.cancel_workflow(workflow_id))
    }

    pub fn preview_fires(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        query: crate::PreviewQuery,
    ) -> Result<crate::FirePreview, Error> {
        self.runtime
            .block_on(self.client.preview_fires(from, to, query))
    }

    pub fn list_fleet(&self, query: crate::FleetQuery) -> Result<crate::Fleet, Error> {
        self.runtime.block_on(self.client.list_fleet(query))
    }

    pub fn quarantine_device(
        &self,
        runner: &str,
        serial: &str,
        reason: Option<&str>,
    ) -> Result<crate::FleetPhone, Error> {
        self.runtime
            .block_on(self.client.quarantine_device(runner, serial, reason))
    }

    pub fn release_device(&self, runner: &str, serial: &str) -> Result<crate::FleetPhone, Error> {
        self.runtime
            .block_on(self.client.release_device(runner, serial))
    }
}
