//! The in-memory backend: the `weekly_notifications` jobstore, and a reference for the others.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Mutex;

use crate::alerts::{Alert, AlertFilter, AlertState, Delivery, Phase, RunFacts, Watched};
use crate::changes::{Change, ChangeFilter};
use crate::model::{
    AlertPolicy, ListFilter, Overlap, RunFilter, RunNote, RunOutcome, RunPlacement, RunRecord,
    RunStatus, Schedule, StoreName,
};
use crate::plan::{Active, admitted, earliest, needs_active, plan_fire, replanned};
use crate::store::{
    AlertLog, ChangeLog, ClaimAt, Claims, Ledger, Retention, Schedules, StoreError,
};
use crate::watches::{Sent, WatchFilter, WatchStore, attempted, cancelled, delivery_due, sent};
use scheduler_api::{CheckResult, Watch, WatchStatus};

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
    /// The pending runs an engine has taken (claimed or reclaimed), and of those the ones
    /// taken over from an earlier holder: the `claimed_by` and `recovered` columns.
    held: HashSet<(String, DateTime<Utc>)>,
    recovered: HashSet<(String, DateTime<Utc>)>,
    /// Watches by id, and the leases of the completions being sent.
    watches: BTreeMap<String, Watch>,
    delivery_leases: HashMap<String, DateTime<Utc>>,
    /// The audit log, oldest first.
    changes: Vec<Change>,
    /// Incidents, oldest first, and their messages by incident, phase and channel.
    alerts: Vec<Alert>,
    deliveries: BTreeMap<(String, &'static str, String), Message>,
}

/// A message about an incident to one channel, as the in-memory log keeps it.
struct Message {
    phase: Phase,
    due_at: DateTime<Utc>,
    attempts: u32,
    delivered: bool,
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

    /// A message due at `at` to each of `channels` about incident `id`.
    fn messages_due(&mut self, id: &str, phase: Phase, channels: &[String], at: DateTime<Utc>) {
        for channel in channels {
            let key = (id.to_string(), phase.as_str(), channel.clone());
            self.deliveries.entry(key).or_insert(Message {
                phase,
                due_at: at,
                attempts: 0,
                delivered: false,
            });
        }
    }

    fn message(&mut self, delivery: &Delivery) -> Option<&mut Message> {
        let key = (
            delivery.alert.id.clone(),
            delivery.phase.as_str(),
            delivery.channel.clone(),
        );
        self.deliveries.get_mut(&key)
    }

    /// Adds a new schedule after the others, indexed.
    fn add(&mut self, schedule: &Schedule) {
        self.sequence += 1;
        let sequence = self.sequence;
        self.index(schedule);
        self.schedules
            .insert(schedule.id.clone(), (sequence, schedule.clone()));
    }

    fn index(&mut self, schedule: &Schedule) {
        if let (false, Some(at)) = (schedule.paused, schedule.next_run_at) {
            self.due.insert((at, schedule.id.clone()));
        }
    }

    /// What a schedule's runs tell the alert checks.
    fn run_facts(&self, schedule_id: &str) -> RunFacts {
        let newest_first = || self.schedule_runs(schedule_id).rev();
        let success = newest_first().find(|run| run.status == RunStatus::Dispatched);
        let counted = AlertPolicy::MAX_FAILED_IN_A_ROW as usize + 1;
        RunFacts {
            last_success: success.map(|run| run.scheduled_time),
            failed_since: newest_first()
                .take_while(|run| run.status != RunStatus::Dispatched)
                .filter(|run| run.status == RunStatus::Failed)
                .take(counted)
                .count() as u32,
            last_error: newest_first()
                .find(|run| run.status == RunStatus::Failed)
                .and_then(|run| run.detail.clone()),
            oldest_waiting: self
                .schedule_runs(schedule_id)
                .find(|run| run.status == RunStatus::Buffered)
                .map(|run| run.scheduled_time),
        }
    }

    fn schedule_runs(&self, schedule_id: &str) -> impl DoubleEndedIterator<Item = &RunRecord> {
        self.runs
            .range(
                (schedule_id.to_string(), DateTime::<Utc>::MIN_UTC)
                    ..=(schedule_id.to_string(), DateTime::<Utc>::MAX_UTC),
            )
            .map(|(_, run)| run)
    }

    fn active(&self, schedule_id: &str) -> Active {
        let mut active = Active::default();
        for run in self.schedule_runs(schedule_id) {
            match run.status {
                RunStatus::Pending => {
                    active.running += 1;
                    let key = (run.schedule_id.clone(), run.scheduled_time);
                    if self.recovered.contains(&key) {
                        active.recovering += 1;
                    }
                }
                RunStatus::Buffered => active.buffered += 1,
                _ => {}
            }
        }
        active
    }

    /// Makes the oldest buffered run of a schedule with none in progress pending; says
    /// whether there was one.
    fn promote(&mut self, schedule_id: &str, now: DateTime<Utc>) -> bool {
        if self.active(schedule_id).running > 0 {
            return false;
        }
        let next = self
            .schedule_runs(schedule_id)
            .find(|run| run.status == RunStatus::Buffered)
            .map(|run| (run.schedule_id.clone(), run.scheduled_time));
        let Some(key) = next else {
            return false;
        };
        self.held.remove(&key);
        self.recovered.remove(&key);
        match self.runs.get_mut(&key) {
            Some(run) => {
                run.status = RunStatus::Pending;
                run.lease_until = Some(now);
                true
            }
            None => false,
        }
    }

    /// Replaces schedule `id` by what `change` makes of it, keeping the due index right;
    /// returns it as stored, or `None` when there is no such schedule.
    fn update(&mut self, id: &str, change: impl FnOnce(Schedule) -> Schedule) -> Option<Schedule> {
        let (_, current) = self.schedules.get(id).cloned()?;
        self.unindex(&current);
        let updated = change(current);
        self.index(&updated);
        if let Some(entry) = self.schedules.get_mut(id) {
            entry.1 = updated.clone();
        }
        Some(updated)
    }

    /// Whether schedule `id`'s fire depends on its runs in progress (so it is never claimed
    /// ahead).
    fn checks_overlap(&self, id: &str) -> bool {
        self.schedules
            .get(id)
            .is_some_and(|(_, schedule)| needs_active(schedule))
    }

    /// Deletes a schedule's runs claimed ahead of their time and not yet due; the earliest of
    /// their times.
    fn unclaim_ahead(&mut self, schedule_id: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        self.runs.retain(|(id, at), run| {
            let ahead = id == schedule_id && *at > now && run.status == RunStatus::Pending;
            if ahead {
                earliest = Some(earliest.map_or(*at, |e| e.min(*at)));
            }
            !ahead
        });
        earliest
    }

    /// Ends a pending ledger row as `outcome` says; says whether it was pending.
    fn finish(&mut self, outcome: &RunOutcome) -> bool {
        let key = (outcome.schedule_id.clone(), outcome.scheduled_time);
        let Some(run) = self
            .runs
            .get_mut(&key)
            .filter(|r| r.status == RunStatus::Pending)
        else {
            return false;
        };
        run.status = outcome.status;
        run.detail = outcome.detail.clone();
        run.attempts = outcome.attempts;
        run.finished_at = Some(outcome.finished_at);
        run.lease_until = None;
        true
    }

    /// Removes a schedule with its runs claimed ahead, keeping the due index right.
    fn remove_schedule(&mut self, id: &str, now: DateTime<Utc>) -> Option<Schedule> {
        let removed = self.schedules.remove(id).map(|(_, s)| s);
        if let Some(schedule) = &removed {
            self.unindex(schedule);
            self.unclaim_ahead(id, now);
        }
        removed
    }

    /// A watch as it is read: its next check from its schedule.
    fn watch(&self, id: &str) -> Option<Watch> {
        let mut watch = self.watches.get(id)?.clone();
        watch.next_run_at = self
            .schedules
            .get(id)
            .and_then(|(_, schedule)| schedule.next_run_at);
        Some(watch)
    }

    /// Stores a watch that ended or changed, deleting its schedule once it is no longer active.
    fn store_watch(&mut self, watch: Watch, now: DateTime<Utc>) {
        if watch.status != WatchStatus::Active {
            self.remove_schedule(&watch.id, now);
        }
        self.delivery_leases.remove(&watch.id);
        self.watches.insert(watch.id.clone(), watch);
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
impl Schedules for MemoryStore {
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
        state.add(schedule);
        Ok(())
    }

    async fn insert_recorded(
        &self,
        schedule: &Schedule,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.insert(schedule).await?;
        self.record_change(change).await
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
            state.add(schedule);
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

    async fn replace(
        &self,
        schedule: &Schedule,
        keeps_next: bool,
    ) -> Result<Option<Schedule>, StoreError> {
        let mut state = self.state.lock().await;
        let given_back = state.unclaim_ahead(&schedule.id, Utc::now());
        let next_run_at = replanned(schedule, keeps_next, given_back);
        Ok(state.update(&schedule.id, |current| Schedule {
            created_at: current.created_at,
            next_run_at,
            ..schedule.clone()
        }))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Schedule>, StoreError> {
        let state = self.state.lock().await;
        let mut found: Vec<_> = state
            .schedules
            .values()
            .filter(|(_, s)| filter.accepts(s))
            .collect();
        match &filter.page {
            Some(page) => {
                found.sort_by(|(_, a), (_, b)| a.id.cmp(&b.id));
                found.truncate(page.limit);
            }
            None => found.sort_by_key(|(sequence, _)| *sequence),
        }
        Ok(found.into_iter().map(|(_, s)| s.clone()).collect())
    }

    async fn delete(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        Ok(self.state.lock().await.remove_schedule(id, Utc::now()))
    }

    async fn set_paused(
        &self,
        id: &str,
        paused: bool,
        reason: Option<&str>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Schedule>, StoreError> {
        let mut state = self.state.lock().await;
        let updated = state.update(id, |current| Schedule {
            paused,
            paused_reason: reason.filter(|_| paused).map(str::to_string),
            next_run_at,
            ..current
        });
        if paused && updated.is_some() {
            state.unclaim_ahead(id, Utc::now());
        }
        Ok(updated)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.state.lock().await.schedules.len() as u64)
    }
}

#[async_trait]
impl Claims for MemoryStore {
    async fn wakeup(
        &self,
        now: DateTime<Utc>,
        ahead: TimeDelta,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.state.lock().await;
        let horizon = now + ahead;
        let mut due = None;
        let mut claimable = None;
        for (at, id) in &state.due {
            if *at > horizon || !state.checks_overlap(id) {
                claimable = Some(*at);
                break;
            }
            due.get_or_insert(*at);
        }
        let next_lease = state
            .runs
            .values()
            .filter(|run| run.status == RunStatus::Pending)
            .filter_map(|run| run.lease_until)
            .min();
        Ok(earliest(due, claimable, ahead, next_lease))
    }

    async fn claim_rows(
        &self,
        at: ClaimAt,
        ahead: TimeDelta,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut state = self.state.lock().await;
        let now = at.resolve();
        let horizon = now + ahead;
        let due: Vec<_> = state
            .due
            .iter()
            .take_while(|(at, _)| *at <= horizon)
            .filter(|(at, id)| *at <= now || !state.checks_overlap(id))
            .take(limit)
            .cloned()
            .collect();
        let mut claimed = Vec::new();
        for (at, id) in due {
            state.due.remove(&(at, id.clone()));
            let Some((_, schedule)) = state.schedules.get(&id).cloned() else {
                continue;
            };
            let active = if needs_active(&schedule) {
                state.active(&id)
            } else {
                Active::default()
            };
            let plan = plan_fire(self.jobstore, &schedule, now, lease, active);
            for run in plan.runs {
                if state.insert_run(&run) {
                    state
                        .held
                        .insert((run.schedule_id.clone(), run.scheduled_time));
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

    async fn still_pending(
        &self,
        runs: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let state = self.state.lock().await;
        Ok(runs
            .iter()
            .filter(|key| {
                state
                    .runs
                    .get(*key)
                    .is_some_and(|run| run.status == RunStatus::Pending)
            })
            .cloned()
            .collect())
    }

    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let mut reclaimed = Vec::new();
        for (key, run) in state.runs.iter_mut() {
            if reclaimed.len() >= limit {
                break;
            }
            if run.status == RunStatus::Pending && run.lease_until.is_some_and(|l| l <= now) {
                run.lease_until = Some(now + lease);
                // Held before: delivered again.
                if !state.held.insert(key.clone()) {
                    state.recovered.insert(key.clone());
                }
                reclaimed.push(run.clone());
            }
        }
        Ok(reclaimed)
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
}

#[async_trait]
impl Ledger for MemoryStore {
    async fn finish_runs(&self, outcomes: &[RunOutcome]) -> Result<usize, StoreError> {
        let mut state = self.state.lock().await;
        for outcome in outcomes {
            state.finish(outcome);
        }
        let now = Utc::now();
        let mut promoted = 0;
        for outcome in outcomes.iter().filter(|o| o.may_release) {
            promoted += usize::from(state.promote(&outcome.schedule_id, now));
        }
        Ok(promoted)
    }

    async fn insert_run(&self, run: &RunRecord) -> Result<bool, StoreError> {
        Ok(self.state.lock().await.insert_run(run))
    }

    async fn start_run(
        &self,
        run: &RunRecord,
        overlap: Overlap,
    ) -> Result<Option<RunRecord>, StoreError> {
        let mut state = self.state.lock().await;
        let active = state.active(&run.schedule_id);
        let row = admitted(run.clone(), overlap, active, run.claimed_at);
        Ok(state.insert_run(&row).then_some(row))
    }

    async fn queue_runs(
        &self,
        runs: &[RunRecord],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut state = self.state.lock().await;
        let mut written = 0;
        for run in runs {
            if state.insert_run(run) {
                written += 1;
            }
        }
        for run in runs {
            state.promote(&run.schedule_id, now);
        }
        Ok(written)
    }

    async fn annotate(&self, notes: &[RunNote]) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        for note in notes {
            let key = (note.schedule_id.clone(), note.scheduled_time);
            if let Some(run) = state.runs.get_mut(&key)
                && run.status == RunStatus::Pending
            {
                run.detail = Some(note.detail.clone());
            }
        }
        Ok(())
    }

    async fn place(&self, placements: &[RunPlacement]) -> Result<Vec<bool>, StoreError> {
        let mut state = self.state.lock().await;
        Ok(placements
            .iter()
            .map(|p| {
                let key = (p.schedule_id.clone(), p.scheduled_time);
                match state.runs.get_mut(&key) {
                    Some(stored)
                        if stored.status == RunStatus::Pending
                            && stored.target.placement() == p.expected =>
                    {
                        stored.target = p.target.clone();
                        stored.detail = Some(p.detail.clone());
                        true
                    }
                    _ => false,
                }
            })
            .collect())
    }

    async fn alerting(
        &self,
        after: Option<&str>,
        limit: usize,
        every: bool,
    ) -> Result<Vec<Watched>, StoreError> {
        let state = self.state.lock().await;
        let mut ids: Vec<&String> = state
            .schedules
            .iter()
            .filter(|(id, (_, schedule))| {
                after.is_none_or(|after| id.as_str() > after)
                    && (every || !schedule.policy.alerts.is_empty())
            })
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids.truncate(limit);
        Ok(ids
            .into_iter()
            .map(|id| Watched {
                schedule: state.schedules[id].1.clone(),
                runs: state.run_facts(id),
            })
            .collect())
    }

    async fn runs(
        &self,
        schedule_id: &str,
        filter: &RunFilter,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let state = self.state.lock().await;
        Ok(state
            .schedule_runs(schedule_id)
            .rev()
            .filter(|run| filter.accepts(run))
            .take(filter.limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl Retention for MemoryStore {
    async fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut state = self.state.lock().await;
        let old: Vec<_> = state
            .runs
            .iter()
            .filter(|(_, run)| {
                !run.status.is_open() && run.finished_at.is_some_and(|at| at < before)
            })
            .map(|(key, _)| key.clone())
            .take(limit)
            .collect();
        for key in &old {
            state.runs.remove(key);
        }
        Ok(old.len() as u64)
    }

    async fn over_keep(&self, keep: usize, limit: usize) -> Result<Vec<String>, StoreError> {
        let state = self.state.lock().await;
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for ((id, _), run) in &state.runs {
            if !run.status.is_open() {
                *counts.entry(id.as_str()).or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .filter(|(id, count)| *count > keep && state.schedules.contains_key(*id))
            .map(|(id, _)| id.to_string())
            .take(limit)
            .collect())
    }

    async fn trim_runs(
        &self,
        schedule_id: &str,
        keep: usize,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut state = self.state.lock().await;
        let excess: Vec<_> = state
            .schedule_runs(schedule_id)
            .rev()
            .filter(|run| !run.status.is_open())
            .skip(keep)
            .map(|run| (run.schedule_id.clone(), run.scheduled_time))
            .collect();
        let oldest_first = excess.into_iter().rev().take(limit).collect::<Vec<_>>();
        for key in &oldest_first {
            state.runs.remove(key);
        }
        Ok(oldest_first.len() as u64)
    }
}

#[async_trait]
impl ChangeLog for MemoryStore {
    async fn record_change(&self, change: &Change) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let seq = state.changes.last().map_or(1, |last| last.seq + 1);
        state.changes.push(Change {
            seq,
            ..change.clone()
        });
        Ok(())
    }

    async fn changes(&self, filter: &ChangeFilter) -> Result<Vec<Change>, StoreError> {
        let state = self.state.lock().await;
        Ok(state
            .changes
            .iter()
            .rev()
            .filter(|change| filter.accepts(change))
            .take(filter.limit)
            .cloned()
            .collect())
    }

    async fn prune_changes(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut state = self.state.lock().await;
        let old = state
            .changes
            .iter()
            .take(limit)
            .take_while(|change| change.at < before)
            .count();
        state.changes.drain(..old);
        Ok(old as u64)
    }
}

#[async_trait]
impl AlertLog for MemoryStore {
    async fn open_alert(&self, alert: &Alert, channels: &[String]) -> Result<bool, StoreError> {
        let mut state = self.state.lock().await;
        let open = state.alerts.iter().any(|a| {
            a.state == AlertState::Open
                && a.jobstore == alert.jobstore
                && a.schedule_id == alert.schedule_id
                && a.kind == alert.kind
        });
        if open || state.alerts.iter().any(|a| a.id == alert.id) {
            return Ok(false);
        }
        state.alerts.push(Alert {
            state: AlertState::Open,
            resolved_at: None,
            resolution: None,
            ..alert.clone()
        });
        state.messages_due(&alert.id, Phase::Opened, channels, alert.opened_at);
        Ok(true)
    }

    async fn resolve_alert(
        &self,
        id: &str,
        at: DateTime<Utc>,
        resolution: &str,
        channels: &[String],
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock().await;
        let Some(alert) = state
            .alerts
            .iter_mut()
            .find(|a| a.id == id && a.state == AlertState::Open)
        else {
            return Ok(false);
        };
        alert.state = AlertState::Resolved;
        alert.resolved_at = Some(at);
        alert.resolution = Some(resolution.to_string());
        state.messages_due(id, Phase::Resolved, channels, at);
        Ok(true)
    }

    async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let state = self.state.lock().await;
        let mut found: Vec<Alert> = state
            .alerts
            .iter()
            .filter(|alert| filter.accepts(alert))
            .cloned()
            .collect();
        found.sort_by(|a, b| (b.opened_at, &b.id).cmp(&(a.opened_at, &a.id)));
        found.truncate(filter.limit);
        Ok(found)
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut state = self.state.lock().await;
        let waiting_opening = |state: &State, id: &str, channel: &str| {
            state
                .deliveries
                .get(&(id.to_string(), Phase::Opened.as_str(), channel.to_string()))
                .is_some_and(|m| !m.delivered)
        };
        let mut due: Vec<_> = state
            .deliveries
            .iter()
            .filter(|((id, _, channel), m)| {
                !m.delivered
                    && m.due_at <= now
                    && (m.phase == Phase::Opened || !waiting_opening(&state, id, channel))
            })
            .map(|(key, m)| (m.due_at, key.clone()))
            .collect();
        due.sort();
        due.truncate(limit);
        let mut taken = Vec::new();
        for (_, key) in due {
            let Some(alert) = state.alerts.iter().find(|a| a.id == key.0).cloned() else {
                continue;
            };
            let message = state.deliveries.get_mut(&key).expect("listed above");
            message.due_at = hold_until;
            taken.push(Delivery {
                alert,
                phase: message.phase,
                channel: key.2,
                attempts: message.attempts,
            });
        }
        Ok(taken)
    }

    async fn delivered(&self, delivery: &Delivery, _at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if let Some(message) = state.message(delivery) {
            message.attempts += 1;
            message.delivered = true;
        }
        Ok(())
    }

    async fn delivery_failed(
        &self,
        delivery: &Delivery,
        _error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if let Some(message) = state.message(delivery) {
            message.attempts += 1;
            message.due_at = retry_at;
        }
        Ok(())
    }

    async fn prune_alerts(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut state = self.state.lock().await;
        let mut old: Vec<(DateTime<Utc>, String)> = state
            .alerts
            .iter()
            .filter_map(|a| {
                a.resolved_at
                    .filter(|at| *at < before)
                    .map(|at| (at, a.id.clone()))
            })
            .collect();
        old.sort();
        old.truncate(limit);
        let ids: HashSet<String> = old.into_iter().map(|(_, id)| id).collect();
        state.alerts.retain(|a| !ids.contains(&a.id));
        state.deliveries.retain(|(id, _, _), _| !ids.contains(id));
        Ok(ids.len() as u64)
    }
}

#[async_trait]
impl WatchStore for MemoryStore {
    async fn add_watch(&self, watch: &Watch, schedule: &Schedule) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if state.schedules.contains_key(&schedule.id) || state.watches.contains_key(&watch.id) {
            return Err(StoreError::Conflict(watch.id.clone()));
        }
        state.add(schedule);
        state.watches.insert(watch.id.clone(), watch.clone());
        Ok(())
    }

    async fn watch(&self, id: &str) -> Result<Option<Watch>, StoreError> {
        Ok(self.state.lock().await.watch(id))
    }

    async fn watches(&self, filter: &WatchFilter) -> Result<Vec<Watch>, StoreError> {
        let state = self.state.lock().await;
        Ok(state
            .watches
            .values()
            .rev()
            .filter(|watch| filter.accepts(watch))
            .take(filter.limit)
            .filter_map(|watch| state.watch(&watch.id))
            .collect())
    }

    async fn record_attempts(
        &self,
        attempts: &[(RunOutcome, CheckResult)],
    ) -> Result<Vec<Watch>, StoreError> {
        let mut state = self.state.lock().await;
        let now = Utc::now();
        let mut recorded = Vec::with_capacity(attempts.len());
        for (outcome, result) in attempts {
            if !state.finish(outcome) {
                continue;
            }
            let Some(watch) = state.watch(&outcome.schedule_id) else {
                continue;
            };
            let watch = attempted(watch, result, now);
            state.store_watch(watch.clone(), now);
            recorded.push(watch);
        }
        Ok(recorded)
    }

    async fn cancel_watch(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Watch>, StoreError> {
        let mut state = self.state.lock().await;
        let Some(watch) = state.watches.get(id).cloned() else {
            return Ok(None);
        };
        if let Some(watch) = cancelled(watch, now) {
            state.store_watch(watch, now);
        }
        Ok(state.watch(id))
    }

    async fn cancel_workflow(
        &self,
        workflow_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut state = self.state.lock().await;
        let active: Vec<Watch> = state
            .watches
            .values()
            .filter(|w| w.workflow_id.as_deref() == Some(workflow_id))
            .filter_map(|w| cancelled(w.clone(), now))
            .collect();
        let count = active.len() as u64;
        for watch in active {
            state.store_watch(watch, now);
        }
        Ok(count)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<Watch>, StoreError> {
        let mut state = self.state.lock().await;
        let due: Vec<String> = state
            .watches
            .values()
            .filter(|w| delivery_due(w).is_some_and(|at| at <= now))
            .filter(|w| {
                state
                    .delivery_leases
                    .get(&w.id)
                    .is_none_or(|until| *until <= now)
            })
            .take(limit)
            .map(|w| w.id.clone())
            .collect();
        let mut claimed = Vec::with_capacity(due.len());
        for id in due {
            state.delivery_leases.insert(id.clone(), now + lease);
            claimed.extend(state.watch(&id));
        }
        Ok(claimed)
    }

    async fn record_delivery(&self, id: &str, outcome: &Sent) -> Result<Option<Watch>, StoreError> {
        let mut state = self.state.lock().await;
        let Some(watch) = state.watches.get(id).cloned() else {
            return Ok(None);
        };
        if let Some(watch) = sent(watch, outcome) {
            state.store_watch(watch, Utc::now());
        }
        Ok(state.watch(id))
    }

    async fn next_delivery(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.state.lock().await;
        Ok(state
            .watches
            .values()
            .filter_map(|w| {
                let due = delivery_due(w)?;
                Some(
                    state
                        .delivery_leases
                        .get(&w.id)
                        .map_or(due, |until| due.max(*until)),
                )
            })
            .min())
    }
}
