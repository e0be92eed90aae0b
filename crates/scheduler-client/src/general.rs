//! The general schedule API: any trigger, any target, for an owner.

use chrono::{DateTime, Utc};
use scheduler_api::{Backfill, RunPage, Schedule, SchedulePage, ScheduleRun, SchedulerApiClient};
pub use scheduler_api::{NewSchedule, RunQuery, ScheduleQuery, ScheduleUpdate};

use crate::{Error, SchedulerClient};

impl SchedulerClient {
    pub async fn create_schedule(&self, schedule: NewSchedule) -> Result<Schedule, Error> {
        self.call(|rpc| {
            let s = schedule.clone();
            async move {
                rpc.create_schedule(
                    s.id,
                    s.name,
                    s.owner,
                    s.jobstore,
                    s.trigger,
                    s.target,
                    s.policy,
                    Some(s.tags),
                    Some(s.replace_existing),
                )
                .await
            }
        })
        .await
    }

    pub async fn update_schedule(
        &self,
        id: &str,
        owner: &str,
        update: ScheduleUpdate,
    ) -> Result<Schedule, Error> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.call(|rpc| {
            let (id, owner, u) = (id.clone(), owner.clone(), update.clone());
            async move {
                rpc.update_schedule(id, owner, u.name, u.trigger, u.target, u.policy, u.tags)
                    .await
            }
        })
        .await
    }

    pub async fn get_schedule(&self, id: &str, owner: &str) -> Result<Schedule, Error> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.call(|rpc| {
            let (id, owner) = (id.clone(), owner.clone());
            async move { rpc.get_schedule(id, owner).await }
        })
        .await
    }

    pub async fn list_schedules(&self, query: ScheduleQuery) -> Result<SchedulePage, Error> {
        self.call(|rpc| {
            let q = query.clone();
            async move {
                rpc.list_schedules(
                    q.owner,
                    q.target_type,
                    q.paused,
                    q.tag,
                    q.jobstore,
                    q.limit,
                    q.cursor,
                )
                .await
            }
        })
        .await
    }

    pub async fn delete_schedule(&self, id: &str, owner: &str) -> Result<Schedule, Error> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.call(|rpc| {
            let (id, owner) = (id.clone(), owner.clone());
            async move { rpc.delete_schedule(id, owner).await }
        })
        .await
    }

    pub async fn pause_schedule(
        &self,
        id: &str,
        owner: &str,
        reason: Option<String>,
    ) -> Result<Schedule, Error> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.call(|rpc| {
            let (id, owner, reason) = (id.clone(), owner.clone(), reason.clone());
            async move { rpc.pause_schedule(id, owner, reason).await }
        })
        .await
    }

    pub async fn resume_schedule(&self, id: &str, owner: &str) -> Result<Schedule, Error> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.call(|rpc| {
            let (id, owner) = (id.clone(), owner.clone());
            async move { rpc.resume_schedule(id, owner).await }
        })
        .await
    }

    /// Runs the schedule now. Like every call it is retried when the scheduler cannot be
    /// reached; a retry after a lost answer may run it twice, each run with its own key.
    pub async fn trigger_schedule(&self, id: &str, owner: &str) -> Result<ScheduleRun, Error> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.call(|rpc| {
            let (id, owner) = (id.clone(), owner.clone());
            async move { rpc.trigger_schedule(id, owner).await }
        })
        .await
    }

    pub async fn backfill_schedule(
        &self,
        id: &str,
        owner: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        max: Option<u32>,
    ) -> Result<Backfill, Error> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.call(|rpc| {
            let (id, owner) = (id.clone(), owner.clone());
            async move { rpc.backfill_schedule(id, owner, start, end, max).await }
        })
        .await
    }

    pub async fn list_runs(
        &self,
        schedule_id: &str,
        owner: &str,
        query: RunQuery,
    ) -> Result<RunPage, Error> {
        let (schedule_id, owner) = (schedule_id.to_string(), owner.to_string());
        self.call(|rpc| {
            let (schedule_id, owner, q) = (schedule_id.clone(), owner.clone(), query.clone());
            async move {
                rpc.list_runs(schedule_id, owner, q.status, q.since, q.limit, q.cursor)
                    .await
            }
        })
        .await
    }
}
