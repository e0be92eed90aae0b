//! The in-memory backend: the `weekly_notifications` jobstore, and a reference for the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Mutex;

use crate::model::{ListFilter, RunOutcome, RunRecord, RunStatus, Schedule, StoreName};
use crate::plan::plan_fire;
use crate::store::{JobStore, StoreError};

/// Schedules and ledger rows held in process memory; lost on exit by design.
pub struct MemoryStore {
    jobstore: StoreName,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    schedules: HashMap<String, (u64, Schedule)>,
    /// Insertion order, so listings are oldest first like the database backends.
    sequence: u64,
    /// `(next_run_at, id)` of every active schedule: the due index.
    due: BTreeSet<(DateTime<Utc>, String)>,
    runs: BTreeMap<(String, DateTime<Utc>), RunRecord>,
}

impl State {
    /// Adds a ledger row unless its occurrence is already there.
    fn insert_run(&mut self, run: &RunRecord) -> bool {
        let key = (run.schedule_id.clone(), run.scheduled_time);
        if self.runs.contains_key(&key) {
            return false;
        }
        self.runs.insert(key, run.clone());
        true
    }

    fn index(&mut self, schedule: &Schedule) {
        if let (false, Some(at)) = (schedule.paused, schedule.next_run_at) {
            self.due.insert((at, schedule.id.clone()));
        }
    }

    fn unindex(&mut self, schedule: &Schedule) {
        if let Some(at) = schedule.next_run_at {
            self.due.remove(&(at, schedule.id.clone()));
        }
    }
}

impl MemoryStore {
    pub fn new(jobstore: StoreName) -> Self {
        MemoryStore {
            jobstore,
            state: Mutex::new(State::default()),
        }
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    fn jobstore(&self) -> StoreName {
        self.jobstore
    }

    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn insert(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if state.schedules.contains_key(&schedule.id) {
            return Err(StoreError::Conflict(schedule.id.clone()));
        }
        state.sequence += 1;
        let sequence = state.sequence;
        state.index(schedule);
        state
            .schedules
            .insert(schedule.id.clone(), (sequence, schedule.clone()));
        Ok(())
    }

    async fn insert_many(&self, schedules: &[Schedule]) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let mut seen = std::collections::HashSet::new();
        if let Some(taken) = schedules
            .iter()
            .find(|s| state.schedules.contains_key(&s.id) || !seen.insert(&s.id))
        {
            return Err(StoreError::Conflict(taken.id.clone()));
        }
        for schedule in schedules {
            state.sequence += 1;
            let sequence = state.sequence;
            state.index(schedule);
            state
                .schedules
                .insert(schedule.id.clone(), (sequence, schedule.clone()));
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        Ok(self
            .state
            .lock()
            .await
            .schedules
            .get(id)
            .map(|(_, s)| s.clone()))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Schedule>, StoreError> {
        let state = self.state.lock().await;
        let mut found: Vec<_> = state
            .schedules
            .values()
            .filter(|(_, s)| filter.accepts(s))
            .collect();
        found.sort_by_key(|(sequence, _)| *sequence);
        Ok(found.into_iter().map(|(_, s)| s.clone()).collect())
    }

    async fn delete(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let mut state = self.state.lock().await;
        let removed = state.schedules.remove(id).map(|(_, s)| s);
        if let Some(schedule) = &removed {
            state.unindex(schedule);
        }
        Ok(removed)
    }

    async fn set_paused(
        &self,
        id: &str,
        paused: bool,
        reason: Option<&str>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Schedule>, StoreError> {
        let mut state = self.state.lock().await;
        let Some((_, current)) = state.schedules.get(id).cloned() else {
            return Ok(None);
        };
        state.unindex(&current);
        let updated = Schedule {
            paused,
            paused_reason: reason.filter(|_| paused).map(str::to_string),
            next_run_at,
            ..current
        };
        state.index(&updated);
        if let Some(entry) = state.schedules.get_mut(id) {
            entry.1 = updated.clone();
        }
        Ok(Some(updated))
    }

    async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.state.lock().await;
        let next_due = state.due.first().map(|(at, _)| *at);
        let next_lease = state
            .runs
            .values()
            .filter(|run| run.status == RunStatus::Pending)
            .filter_map(|run| run.lease_until)
            .min();
        Ok(next_due.into_iter().chain(next_lease).min())
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut state = self.state.lock().await;
        let due: Vec<_> = state
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .cloned()
            .collect();
        let mut claimed = Vec::new();
        for (at, id) in due {
            state.due.remove(&(at, id.clone()));
            let Some((_, schedule)) = state.schedules.get(&id).cloned() else {
                continue;
            };
            let plan = plan_fire(self.jobstore, &schedule, now, lease);
            for run in plan.runs {
                if state.insert_run(&run) && run.status == RunStatus::Pending {
                    claimed.push(run);
                }
            }
            let parked = plan.parked.is_some();
            let updated = Schedule {
                next_run_at: plan.next_run_at,
                paused: schedule.paused || parked,
                paused_reason: plan.parked.or(schedule.paused_reason),
                ..schedule
            };
            state.index(&updated);
            if let Some(entry) = state.schedules.get_mut(&id) {
                entry.1 = updated;
            }
        }
        Ok(claimed)
    }

    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut state = self.state.lock().await;
        let mut reclaimed = Vec::new();
        for run in state.runs.values_mut() {
            if reclaimed.len() >= limit {
                break;
            }
            if run.status == RunStatus::Pending && run.lease_until.is_some_and(|l| l <= now) {
                run.lease_until = Some(now + lease);
                reclaimed.push(run.clone());
            }
        }
        Ok(reclaimed)
    }

    async fn finish_runs(&self, outcomes: &[RunOutcome]) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        for outcome in outcomes {
            let key = (outcome.schedule_id.clone(), outcome.scheduled_time);
            if let Some(run) = state
                .runs
                .get_mut(&key)
                .filter(|r| r.status == RunStatus::Pending)
            {
                run.status = outcome.status;
                run.detail = outcome.detail.clone();
                run.attempts = outcome.attempts;
                run.finished_at = Some(outcome.finished_at);
                run.lease_until = None;
            }
        }
        Ok(())
    }

    async fn insert_run(&self, run: &RunRecord) -> Result<bool, StoreError> {
        Ok(self.state.lock().await.insert_run(run))
    }

    async fn set_leases(
        &self,
        runs: &[(String, DateTime<Utc>)],
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        for key in runs {
            if let Some(run) = state
                .runs
                .get_mut(key)
                .filter(|r| r.status == RunStatus::Pending)
            {
                run.lease_until = Some(until);
            }
        }
        Ok(())
    }

    async fn runs(&self, schedule_id: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let state = self.state.lock().await;
        Ok(state
            .runs
            .range(
                (schedule_id.to_string(), DateTime::<Utc>::MIN_UTC)
                    ..=(schedule_id.to_string(), DateTime::<Utc>::MAX_UTC),
            )
            .rev()
            .take(limit)
            .map(|(_, run)| run.clone())
            .collect())
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.state.lock().await.schedules.len() as u64)
    }
}
