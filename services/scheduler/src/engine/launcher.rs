//! The launcher: takes the runs a pass claimed and dispatches each in a dispatch slot (in
//! batches where a service takes them), holding without a slot the runs whose moment has not
//! come (jittered, or claimed ahead). A dispatch that panics fails its run and parks its
//! schedule.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::FutureExt;
use jobstore::{RunOutcome, RunRecord, RunStatus, StoreName};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::{InFlight, RunKey, key_of, lock, until};
use crate::dispatch::{Dispatcher, dispatch_batch, dispatch_run, follow};
use crate::spans;
use crate::stores::Stores;
use crate::targets::{Ended, Notes};
use crate::telemetry;
use tracing::Instrument;

pub(super) struct Launcher {
    stores: Arc<Stores>,
    dispatcher: Arc<Dispatcher>,
    permits: Arc<Semaphore>,
    in_flight: InFlight,
    /// Turns true when the engine stops: a run waiting for its device job gives up then, and
    /// is released with the rest, to be followed again by the next process.
    stopping: watch::Receiver<bool>,
    outcomes: mpsc::UnboundedSender<(StoreName, Ended)>,
    /// Where a run's progress is noted in the ledger ([`super::notes`]).
    notes: Notes,
    /// The dispatches under way.
    tasks: JoinSet<()>,
    /// Runs whose moment has not come (claimed ahead of their time, or jittered), by that
    /// moment. They are in flight (their leases are renewed) but hold no dispatch slot.
    held: BTreeMap<DateTime<Utc>, Vec<RunRecord>>,
    /// The moment of each held run, by its key.
    held_keys: HashMap<RunKey, DateTime<Utc>>,
}

impl Launcher {
    /// The stores it dispatches from.
    pub(super) fn stores(&self) -> &Stores {
        &self.stores
    }

    pub(super) fn new(
        stores: Arc<Stores>,
        dispatcher: Arc<Dispatcher>,
        concurrency: usize,
        in_flight: InFlight,
        stopping: watch::Receiver<bool>,
        outcomes: mpsc::UnboundedSender<(StoreName, Ended)>,
        notes: Notes,
    ) -> Self {
        Launcher {
            stores,
            dispatcher,
            permits: Arc::new(Semaphore::new(concurrency)),
            in_flight,
            stopping,
            outcomes,
            notes,
            tasks: JoinSet::new(),
            held: BTreeMap::new(),
            held_keys: HashMap::new(),
        }
    }

    /// Reaps the dispatches that have finished, so the set does not grow.
    pub(super) fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
    }

    /// At shutdown: gives the dispatches under way `grace` to finish (and be recorded), then
    /// abandons the rest, whose runs are released with the others. Returns the deadline.
    pub(super) async fn finish(&mut self, grace: Duration) -> tokio::time::Instant {
        tracing::info!(
            in_flight = self.tasks.len(),
            ?grace,
            "engine stopped claiming; waiting for in-flight dispatches"
        );
        let deadline = tokio::time::Instant::now() + grace;
        let drained = tokio::time::timeout_at(deadline, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                unfinished = self.tasks.len(),
                "shutdown deadline reached; abandoning the dispatches still under way"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        deadline
    }

    /// Takes runs in hand: those whose moment has come are dispatched now, the others held
    /// until it comes. Held runs that fell due meanwhile go first.
    pub(super) async fn start_all(&mut self, runs: Vec<RunRecord>) {
        self.release_held().await;
        let now = Utc::now();
        let mut ready = Vec::with_capacity(runs.len());
        for run in runs {
            // A run claimed again while it is held (its schedule was updated, which gave the
            // claim back) takes the held one's place, so that it goes as its schedule now is.
            if !self.take_off(&run) && !self.unhold(&run) {
                continue;
            }
            // Every replica computes the same moment from the run's key.
            let goes_at = run.goes_at();
            if goes_at > now {
                self.held_keys.insert(key_of(&run), goes_at);
                self.held.entry(goes_at).or_default().push(run);
            } else {
                ready.push(run);
            }
        }
        self.launch(ready).await;
    }

    /// Takes the held run with `run`'s key out of the held ones; false when none is held.
    fn unhold(&mut self, run: &RunRecord) -> bool {
        let key = key_of(run);
        let Some(goes_at) = self.held_keys.remove(&key) else {
            return false;
        };
        if let Some(runs) = self.held.get_mut(&goes_at) {
            runs.retain(|held| key_of(held) != key);
            if runs.is_empty() {
                self.held.remove(&goes_at);
            }
        }
        true
    }

    /// How long until the first held run's moment.
    pub(super) fn until_held(&self) -> Duration {
        self.held
            .keys()
            .next()
            .map_or(Duration::MAX, |at| until(*at))
    }

    /// Dispatches the held runs whose moment has come. A run claimed ahead of its time goes
    /// only if the store still has it pending: pausing or deleting its schedule meanwhile
    /// deleted it.
    pub(super) async fn release_held(&mut self) {
        let now = Utc::now();
        let Some(first) = self.held.keys().next() else {
            return;
        };
        if *first > now {
            return;
        }
        let later = self.held.split_off(&(now + TimeDelta::nanoseconds(1)));
        let due: Vec<RunRecord> = std::mem::replace(&mut self.held, later)
            .into_values()
            .flatten()
            .collect();
        for run in &due {
            self.held_keys.remove(&key_of(run));
        }
        let (ahead, mut ready): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|run| run.scheduled_time > run.claimed_at);
        let keyed = ahead
            .iter()
            .map(|run| (run.jobstore, key_of(run)))
            .collect();
        let mut confirmed = std::collections::HashSet::new();
        let mut unknown = Vec::new();
        for (store, keys) in self.stores.per_store(keyed) {
            let started = Instant::now();
            let pending = store.still_pending(&keys).await;
            telemetry::store_operation("still_pending", started.elapsed());
            match pending {
                Ok(pending) => confirmed.extend(pending),
                Err(error) => {
                    // They are ours by their leases: dispatching them is the safer error.
                    tracing::warn!(%error, runs = keys.len(), "cannot confirm runs claimed ahead; dispatching them as claimed");
                    unknown.push(store.jobstore());
                }
            }
        }
        for run in ahead {
            let key = key_of(&run);
            if confirmed.contains(&key) || unknown.contains(&run.jobstore) {
                ready.push(run);
            } else {
                tracing::info!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, "not dispatched: its schedule was paused or deleted after the run was claimed ahead of its time");
                lock(&self.in_flight).remove(&key);
            }
        }
        self.launch(ready).await;
    }

    /// Dispatches runs taken off: those a batched JSON-RPC service takes in batches of up to
    /// its size (a call left alone goes as a plain request), the others one by one.
    async fn launch(&mut self, runs: Vec<RunRecord>) {
        let mut batches: Vec<(String, usize, Vec<RunRecord>)> = Vec::new();
        for run in runs {
            let Some((service, size)) = self.dispatcher.batch_of(&run) else {
                self.start(run).await;
                continue;
            };
            let at = match batches.iter().position(|(s, _, _)| *s == service) {
                Some(at) => at,
                None => {
                    batches.push((service, size, Vec::new()));
                    batches.len() - 1
                }
            };
            let group = &mut batches[at].2;
            group.push(run);
            if group.len() >= size {
                let full = std::mem::take(group);
                self.start_batch(full).await;
            }
        }
        for (_, _, mut rest) in batches {
            // A call due alone goes as a plain request, as it would unbatched.
            if rest.len() == 1 {
                self.start(rest.remove(0)).await;
            } else if !rest.is_empty() {
                self.start_batch(rest).await;
            }
        }
    }

    /// Marks a run in flight; false when it already is here (a lease we took over from
    /// ourselves: reclaiming it only extended the lease).
    fn take_off(&self, run: &RunRecord) -> bool {
        let key = key_of(run);
        let mut flying = lock(&self.in_flight);
        if flying.contains_key(&key) {
            return false;
        }
        flying.insert(key, run.jobstore);
        true
    }

    /// Dispatches runs of one batch as one request, in one dispatch slot.
    async fn start_batch(&mut self, runs: Vec<RunRecord>) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let dispatcher = self.dispatcher.clone();
        let outcomes = self.outcomes.clone();
        let stores = self.stores.clone();
        let notes = self.notes.clone();
        self.tasks.spawn(async move {
            let dispatched = AssertUnwindSafe(dispatch_batch(&dispatcher, &runs))
                .catch_unwind()
                .await;
            drop(permit);
            match dispatched {
                Ok(dispatched) => {
                    for (run, (outcome, answer)) in runs.iter().zip(dispatched) {
                        // A batch request serves many occurrences: each has its trace, with
                        // its claim and its outcome, and the request no traceparent.
                        let occurrence = spans::occurrence(run);
                        let ended = follow(&dispatcher, &notes, run, outcome, answer)
                            .instrument(occurrence.clone())
                            .await;
                        spans::outcome(&occurrence, &ended.outcome);
                        let _ = outcomes.send((run.jobstore, ended));
                    }
                }
                Err(panic) => {
                    let message = jobstore::plan::panic_message(&*panic);
                    for run in &runs {
                        let parked = park_after_panic(&stores, run, &message).await;
                        let _ = outcomes.send((run.jobstore, Ended::from(parked)));
                    }
                }
            }
        });
    }

    /// Dispatches one run in a dispatch slot, in its occurrence's span.
    async fn start(&mut self, run: RunRecord) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let dispatcher = self.dispatcher.clone();
        let outcomes = self.outcomes.clone();
        let stores = self.stores.clone();
        let notes = self.notes.clone();
        let mut stopping = self.stopping.clone();
        let occurrence = spans::occurrence(&run);
        let traced = occurrence.clone();
        let dispatched = async move {
            let dispatching = dispatch_run(&dispatcher, &run).instrument(spans::dispatch());
            let outcome = match AssertUnwindSafe(dispatching).catch_unwind().await {
                Ok((outcome, result)) => {
                    // What is left (a device job's run) waits without a dispatch slot.
                    drop(permit);
                    tokio::select! {
                        // An outcome already there is recorded, stopping or not.
                        biased;
                        outcome = follow(&dispatcher, &notes, &run, outcome, result) => outcome,
                        _ = stopping.wait_for(|stop| *stop) => return,
                    }
                }
                Err(panic) => {
                    drop(permit);
                    let message = jobstore::plan::panic_message(&*panic);
                    Ended::from(park_after_panic(&stores, &run, &message).await)
                }
            };
            spans::outcome(&traced, &outcome.outcome);
            let _ = outcomes.send((run.jobstore, outcome));
        };
        self.tasks.spawn(dispatched.instrument(occurrence));
    }
}

/// A dispatch that panicked is a bug in the scheduler, not a failure of the target: the run is
/// recorded as failed with the panic, and the schedule is parked with the same reason so it does
/// not hit the bug again at every occurrence. Every other schedule keeps firing.
async fn park_after_panic(stores: &Stores, run: &RunRecord, panic: &str) -> RunOutcome {
    let reason = format!("dispatching it failed unexpectedly: {panic}");
    tracing::error!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, %reason, "dispatch panicked; the schedule is parked");
    if let Some(store) = stores.get(run.jobstore) {
        let parked = store.set_paused(&run.schedule_id, true, Some(&reason), None);
        match parked.await {
            Ok(Some(_)) => {
                let failed = RunRecord {
                    detail: Some(reason.clone()),
                    ..run.clone()
                };
                crate::audit::parked(stores, &failed).await;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, schedule_id = %run.schedule_id, "cannot park the schedule");
            }
        }
    }
    RunOutcome::of(run, RunStatus::Failed, Some(reason), 0, Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobstore::{JobStore, MemoryStore, Policy, Schedule, Target};
    use triggers::{TriggerKind, TriggerSpec};

    #[tokio::test]
    async fn a_panicked_dispatch_fails_its_run_and_parks_its_schedule() {
        let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new(StoreName::Execution));
        let now = Utc::now();
        let target = Target::SystemTask(scheduler_api::SystemTaskTarget {
            task: "t".into(),
            kwargs: serde_json::Value::Null,
        });
        let schedule = Schedule {
            id: "s".into(),
            name: "s".into(),
            owner: "u".into(),
            trigger: TriggerSpec::from(TriggerKind::Cron {
                expression: "* * * * *".into(),
                timezone: "UTC".into(),
            }),
            target: target.clone(),
            policy: Policy::default(),
            paused: false,
            tags: Vec::new(),
            paused_reason: None,
            next_run_at: Some(now),
            created_at: now,
        };
        store.insert(&schedule).await.unwrap();
        let stores = Stores::new([store.clone()]);
        let run = store
            .claim_due(now, 10, TimeDelta::seconds(30))
            .await
            .unwrap()
            .remove(0);
        let outcome = park_after_panic(&stores, &run, "index out of bounds").await;
        assert_eq!(outcome.status, RunStatus::Failed);
        let detail = outcome.detail.unwrap();
        assert!(detail.contains("index out of bounds"), "{detail}");
        let parked = store.get("s").await.unwrap().unwrap();
        assert!(parked.paused && parked.next_run_at.is_none());
        assert_eq!(parked.paused_reason.as_deref(), Some(detail.as_str()));
    }
}
