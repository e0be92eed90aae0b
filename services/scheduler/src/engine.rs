//! The engine: sleeps until the earliest due time (or until told that schedules changed),
//! claims due runs in batches, dispatches them outside the claim transaction and records how
//! each ended. No fixed polling tick and no scan of every schedule: each store answers "when is
//! your next work" from an index.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{JobStore, Jobstore, RunOutcome, RunRecord, RunStatus, StoreError};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::app::Stores;
use crate::config::EngineConfig;
use crate::dispatch::Executor;

type RunKey = (String, DateTime<Utc>);

pub struct Engine {
    stores: Stores,
    executor: Arc<Executor>,
    wake: Arc<Notify>,
    config: EngineConfig,
    /// Whether this process is the only one using the stores (SQLite, memory): then runs left
    /// pending by a previous life of this process are taken over at start without waiting for
    /// their leases to expire.
    exclusive: bool,
    /// Whether this replica leads: only the leader fires the in-memory jobstores.
    leader: watch::Receiver<bool>,
}

impl Engine {
    pub fn new(
        stores: Stores,
        executor: Arc<Executor>,
        wake: Arc<Notify>,
        config: EngineConfig,
        exclusive: bool,
        leader: watch::Receiver<bool>,
    ) -> Self {
        Engine {
            stores,
            executor,
            wake,
            config,
            exclusive,
            leader,
        }
    }

    /// The stores this replica fires now: the persisted ones always, the in-memory ones only
    /// while it leads.
    fn active_stores(&self) -> Vec<&Arc<dyn JobStore>> {
        let leading = *self.leader.borrow();
        self.stores
            .all()
            .filter(|store| leading || store.backend() != "memory")
            .collect()
    }

    /// Runs until `shutdown` turns true, then waits for in-flight dispatches and their records.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let lease = TimeDelta::from_std(self.config.lease).unwrap_or(TimeDelta::seconds(30));
        let batch = self.config.batch_size as usize;
        let permits = Arc::new(Semaphore::new(self.config.dispatch_concurrency as usize));
        let in_flight: Arc<Mutex<HashSet<RunKey>>> = Arc::default();
        let (outcomes, outcome_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_outcomes(
            self.stores.clone(),
            outcome_rx,
            in_flight.clone(),
        ));
        let mut dispatches = JoinSet::new();
        let mut dispatcher = Dispatcher {
            executor: self.executor.clone(),
            permits,
            in_flight,
            outcomes,
            tasks: &mut dispatches,
        };

        if self.exclusive {
            // Every pending run is ours: leases are at most `lease` past their claim, which
            // lies in the past, so "expired as of now + lease" covers them all.
            let recover_at = Utc::now() + lease;
            for store in self.stores.all() {
                match drain(
                    store,
                    |s| s.reclaim_expired(recover_at, batch, lease),
                    batch,
                    &mut dispatcher,
                )
                .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        jobstore = store.jobstore().as_str(),
                        runs = n,
                        "recovered runs left pending by a previous process; dispatching them with their original idempotency keys"
                    ),
                    Err(error) => tracing::error!(%error, "recovering pending runs failed"),
                }
            }
        }

        let mut failures = 0u32;
        let mut leader = self.leader.clone();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let pass = self.pass(lease, batch, &mut dispatcher).await;
            let sleep = match pass {
                Ok(next_wakeup) => {
                    failures = 0;
                    self.sleep_until(next_wakeup)
                }
                Err(error) => {
                    failures += 1;
                    let backoff = Duration::from_millis(250 * 2u64.pow(failures.min(7)))
                        .min(Duration::from_secs(30));
                    tracing::error!(%error, ?backoff, "engine pass failed; retrying");
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
                _ = leadership_change(&mut leader) => {}
            }
            // Reap finished dispatch tasks so the set does not grow.
            while dispatcher.tasks.try_join_next().is_some() {}
        }

        tracing::info!(
            in_flight = dispatcher.tasks.len(),
            "engine stopping; waiting for in-flight dispatches"
        );
        while dispatcher.tasks.join_next().await.is_some() {}
        drop(dispatcher);
        let _ = recorder.await;
    }

    /// One pass over every store: take over expired leases, claim what is due. Returns when the
    /// stores next have work.
    async fn pass(
        &self,
        lease: TimeDelta,
        batch: usize,
        dispatcher: &mut Dispatcher<'_>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let now = Utc::now();
        let mut next: Option<DateTime<Utc>> = None;
        for store in self.active_stores() {
            drain(
                store,
                |s| s.reclaim_expired(now, batch, lease),
                batch,
                dispatcher,
            )
            .await?;
            drain(store, |s| s.claim_due(now, batch, lease), batch, dispatcher).await?;
            if let Some(at) = store.next_wakeup().await? {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next)
    }

    fn sleep_until(&self, next: Option<DateTime<Utc>>) -> Duration {
        let Some(at) = next else {
            return self.config.max_sleep;
        };
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        // Round up to whole milliseconds so the timer never wakes just before the due time.
        Duration::from_millis(wait.as_millis() as u64 + 1).min(self.config.max_sleep)
    }
}

/// Resolves when leadership changes; never when it cannot (a sole process always leads).
async fn leadership_change(leader: &mut watch::Receiver<bool>) {
    if leader.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Calls `take` until it returns less than a full batch, dispatching everything it returns.
async fn drain<'s, F, Fut>(
    store: &'s Arc<dyn JobStore>,
    take: F,
    batch: usize,
    dispatcher: &mut Dispatcher<'_>,
) -> Result<usize, StoreError>
where
    F: Fn(&'s Arc<dyn JobStore>) -> Fut,
    Fut: Future<Output = Result<Vec<RunRecord>, StoreError>>,
{
    let mut total = 0;
    loop {
        let runs = take(store).await?;
        let count = runs.len();
        total += count;
        for run in runs {
            dispatcher.start(run).await;
        }
        if count < batch {
            return Ok(total);
        }
    }
}

struct Dispatcher<'a> {
    executor: Arc<Executor>,
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<RunKey>>>,
    outcomes: mpsc::UnboundedSender<(Jobstore, RunOutcome)>,
    tasks: &'a mut JoinSet<()>,
}

impl Dispatcher<'_> {
    /// Starts dispatching a run unless it is already in flight here (a lease we took over from
    /// ourselves: reclaiming it only extended the lease).
    async fn start(&mut self, run: RunRecord) {
        let key = (run.schedule_id.clone(), run.scheduled_time);
        if !lock(&self.in_flight).insert(key) {
            return;
        }
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let executor = self.executor.clone();
        let outcomes = self.outcomes.clone();
        self.tasks.spawn(async move {
            let dispatched = executor.dispatch(&run).await;
            let finished_at = Utc::now();
            let lag_ms = (finished_at - run.scheduled_time).num_milliseconds();
            let (status, detail) = match dispatched.result {
                Ok(()) => {
                    tracing::debug!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, lag_ms, "dispatched");
                    (RunStatus::Dispatched, None)
                }
                Err(error) => {
                    tracing::warn!(schedule_id = %run.schedule_id, scheduled_time = %run.scheduled_time, attempts = dispatched.attempts, %error, "dispatch failed");
                    (RunStatus::Failed, Some(error.to_string()))
                }
            };
            let outcome = RunOutcome {
                schedule_id: run.schedule_id,
                scheduled_time: run.scheduled_time,
                status,
                detail,
                attempts: dispatched.attempts,
                finished_at,
            };
            let _ = outcomes.send((run.jobstore, outcome));
            drop(permit);
        });
    }
}

/// Writes outcomes in batches; a run leaves the in-flight set only once its outcome is stored.
async fn record_outcomes(
    stores: Stores,
    mut incoming: mpsc::UnboundedReceiver<(Jobstore, RunOutcome)>,
    in_flight: Arc<Mutex<HashSet<RunKey>>>,
) {
    const MAX_BATCH: usize = 1000;
    while let Some(first) = incoming.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        for jobstore in Jobstore::ALL {
            let outcomes: Vec<RunOutcome> = batch
                .iter()
                .filter(|(j, _)| *j == jobstore)
                .map(|(_, o)| o.clone())
                .collect();
            let Some(store) = stores.get(jobstore).filter(|_| !outcomes.is_empty()) else {
                continue;
            };
            let mut delay = Duration::from_millis(100);
            while let Err(error) = store.finish_runs(&outcomes).await {
                // The runs stay pending in the store; keep trying, so nothing is lost.
                tracing::error!(%error, runs = outcomes.len(), ?delay, "recording run outcomes failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            let mut flying = lock(&in_flight);
            for outcome in &outcomes {
                flying.remove(&(outcome.schedule_id.clone(), outcome.scheduled_time));
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
