//! The engine: sleeps until the earliest due time (or until told that schedules changed),
//! claims due runs in batches, dispatches them outside the claim transaction and records how
//! each ended. No fixed polling tick and no scan of every schedule: each store answers "when is
//! your next work" from an index.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::FutureExt;
use jobstore::{ClaimAt, JobStore, RunOutcome, RunRecord, RunStatus, StoreError, StoreName};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::config::EngineConfig;
use crate::dispatch::{Dispatcher, dispatch_batch, dispatch_run, follow};
use crate::stores::Stores;
use crate::targets::Ended;
use crate::telemetry;
use crate::watches::Watches;
use scheduler_api::CheckResult;

type RunKey = (String, DateTime<Utc>);
/// The runs dispatched and not yet recorded, with their jobstores.
type InFlight = Arc<Mutex<HashMap<RunKey, StoreName>>>;

/// The longest the release of unfinished runs may take at shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// How soon the engine looks again when due work is there but it claimed nothing (another
/// replica's claim, or a stuck transaction, holds the rows): soon, but without spinning.
const RECHECK_DELAY: Duration = Duration::from_millis(25);

pub struct Engine {
    stores: Stores,
    dispatcher: Arc<Dispatcher>,
    wake: Arc<Notify>,
    config: EngineConfig,
    /// Whether this process is the only one using the stores (SQLite, memory): then runs left
    /// pending by a previous life of this process are taken over at start without waiting for
    /// their leases to expire.
    exclusive: bool,
    /// Whether this replica leads: only the leader fires the in-memory jobstores.
    leader: watch::Receiver<bool>,
    /// When to take over the runs of replicas that died (PostgreSQL).
    takeover: Takeover,
}

/// When this replica takes over the runs of replicas that died, without waiting for their
/// leases: once it has itself been known alive to the others ([`crate::leader`]) for two
/// polls (after a database restart every live replica takes its lock again within one), and
/// then at most once a poll, so a burst's many passes do not each look.
struct Takeover {
    /// Since when this replica is known alive; `None` while it is not, or on SQLite.
    present: watch::Receiver<Option<Instant>>,
    poll: Duration,
    last: Mutex<Option<Instant>>,
}

impl Takeover {
    /// Whether this pass looks for dead replicas' runs (and, if so, it is noted).
    fn due(&self) -> bool {
        let settled =
            (*self.present.borrow()).is_some_and(|since| since.elapsed() >= self.poll * 2);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if !settled || last.is_some_and(|at| at.elapsed() < self.poll) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// How long the engine may sleep before it looks again: a poll while it watches.
    fn within(&self) -> Duration {
        if self.present.borrow().is_some() {
            self.poll
        } else {
            Duration::MAX
        }
    }
}

impl Engine {
    pub fn new(
        stores: Stores,
        dispatcher: Arc<Dispatcher>,
        wake: Arc<Notify>,
        config: EngineConfig,
        exclusive: bool,
        leader: watch::Receiver<bool>,
        present: watch::Receiver<Option<Instant>>,
    ) -> Self {
        let takeover = Takeover {
            present,
            poll: config.leader_poll,
            last: Mutex::default(),
        };
        Engine {
            stores,
            dispatcher,
            wake,
            config,
            exclusive,
            leader,
            takeover,
        }
    }

    /// Runs until `shutdown` turns true. Then it stops claiming and gives in-flight dispatches
    /// until `grace` to finish and be recorded; what is still unfinished is released, so that
    /// another replica (or this one's next start) takes it over at once.
    ///
    /// Returns an error when it stopped without being told to: its outcome recorder ended, so
    /// it could no longer record what it fires.
    pub async fn run(
        self,
        mut shutdown: service_kit::Shutdown,
        grace: Duration,
    ) -> Result<(), String> {
        let lease = self.config.lease_delta();
        let ahead = self.config.lookahead_delta();
        let batch = self.config.batch_size as usize;
        let permits = Arc::new(Semaphore::new(self.config.dispatch_concurrency as usize));
        let in_flight: InFlight = Arc::default();
        let (outcomes, outcome_rx) = mpsc::unbounded_channel();
        let mut recorder = tokio::spawn(record_outcomes(
            self.stores.clone(),
            outcome_rx,
            in_flight.clone(),
            self.wake.clone(),
            self.dispatcher.targets.watches.clone(),
        ));
        let renewer = tokio::spawn(renew_leases(
            self.stores.clone(),
            in_flight.clone(),
            lease,
            self.config.lease / 3,
        ));
        let mut dispatches = JoinSet::new();
        let (stopping, stop_rx) = watch::channel(false);
        let mut launcher = Launcher {
            stores: Arc::new(self.stores.clone()),
            dispatcher: self.dispatcher.clone(),
            permits,
            in_flight: in_flight.clone(),
            stopping: stop_rx,
            outcomes,
            tasks: &mut dispatches,
            held: BTreeMap::new(),
        };

        if self.exclusive {
            self.recover_left_pending(lease, batch, &mut launcher).await;
        }

        let mut failures = 0u32;
        let mut leader = self.leader.clone();
        let mut stopped_by_itself = None;
        loop {
            telemetry::leader(*leader.borrow());
            if shutdown.is_requested() {
                break;
            }
            if recorder.is_finished() {
                stopped_by_itself = Some("its outcome recorder ended".to_string());
                tracing::error!("the engine's outcome recorder ended; the engine stops");
                break;
            }
            launcher.release_held().await;
            let pass = self.pass(lease, ahead, batch, &mut launcher).await;
            telemetry::database_up(pass.is_ok());
            let sleep = match pass {
                Ok(pass) => {
                    if failures > 0 {
                        tracing::info!("engine pass succeeded again; firing resumed");
                    }
                    failures = 0;
                    if pass.stalled {
                        RECHECK_DELAY
                    } else {
                        self.sleep_until(pass.next_wakeup)
                    }
                }
                Err(error) => {
                    failures += 1;
                    let backoff = Duration::from_millis(250 * 2u64.pow(failures.min(7)))
                        .min(Duration::from_secs(30));
                    tracing::error!(%error, ?backoff, "engine pass failed; retrying");
                    backoff
                }
            };
            // A replica that dies is noticed within a poll, whatever is due.
            let sleep = sleep.min(launcher.until_held()).min(self.takeover.within());
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                () = shutdown.requested() => {}
                _ = leadership_change(&mut leader) => {}
            }
            // Reap finished dispatch tasks so the set does not grow.
            while launcher.tasks.try_join_next().is_some() {}
        }

        // Runs that only wait for a device job to end are left to the next process.
        let _ = stopping.send(true);
        tracing::info!(
            in_flight = launcher.tasks.len(),
            ?grace,
            "engine stopped claiming; waiting for in-flight dispatches"
        );
        let deadline = tokio::time::Instant::now() + grace;
        let drained = tokio::time::timeout_at(deadline, async {
            while launcher.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                unfinished = launcher.tasks.len(),
                "shutdown deadline reached; abandoning the dispatches still under way"
            );
            launcher.tasks.abort_all();
            while launcher.tasks.join_next().await.is_some() {}
        }
        drop(launcher);
        if tokio::time::timeout_at(deadline, &mut recorder)
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline reached before every outcome was recorded");
            recorder.abort();
        }
        renewer.abort();
        release_unfinished(&self.stores, &in_flight).await;
        match stopped_by_itself {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// Takes over, at start, every run a previous life of this sole process left pending, and
    /// dispatches each again with its idempotency key (which settles it: a device job already
    /// ended is found ended). They are marked recovered, so an occurrence due meanwhile waits
    /// for them instead of being skipped for overlap.
    async fn recover_left_pending(
        &self,
        lease: TimeDelta,
        batch: usize,
        launcher: &mut Launcher<'_>,
    ) {
        // Every pending run is ours: leases are at most `lease` past their claim, which
        // lies in the past, so "expired as of now + lease" covers them all.
        let recover_at = Utc::now() + lease;
        for store in self.stores.all() {
            match drain(
                store,
                Take::Reclaimed,
                |s| s.reclaim_expired(recover_at, batch, lease),
                batch,
                launcher,
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

    /// One pass over every store: take over the runs of dead replicas and expired leases,
    /// claim what is due.
    async fn pass(
        &self,
        lease: TimeDelta,
        ahead: TimeDelta,
        batch: usize,
        launcher: &mut Launcher<'_>,
    ) -> Result<Pass, StoreError> {
        let now = Utc::now();
        let mut next: Option<DateTime<Utc>> = None;
        let mut taken = 0;
        let leading = *self.leader.borrow();
        let taking_over = self.takeover.due();
        for store in self.stores.active(leading) {
            if taking_over {
                let taken_over = drain(
                    store,
                    Take::TakenOver,
                    |s| s.take_over(now, batch, lease),
                    batch,
                    launcher,
                )
                .await?;
                if taken_over > 0 {
                    tracing::warn!(
                        jobstore = store.jobstore().as_str(),
                        runs = taken_over,
                        "took over the pending runs of replicas whose database session ended; dispatching them again with their idempotency keys"
                    );
                }
                taken += taken_over;
            }
            taken += drain(
                store,
                Take::Reclaimed,
                |s| s.reclaim_expired(now, batch, lease),
                batch,
                launcher,
            )
            .await?;
            taken += drain(
                store,
                Take::Due,
                // The clock is read once the claim holds its transaction: a pass that began
                // before a database outage plans with the time it runs.
                |s| s.claim_rows(ClaimAt::Clock, ahead, batch, lease),
                batch,
                launcher,
            )
            .await?;
            let started = Instant::now();
            let wakeup = store.wakeup(now, ahead).await;
            telemetry::store_operation("next_wakeup", started.elapsed());
            if let Some(at) = wakeup? {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(Pass {
            next_wakeup: next,
            // Work was due when the claims looked, yet they took nothing.
            stalled: taken == 0 && next.is_some_and(|at| at <= now),
        })
    }

    fn sleep_until(&self, next: Option<DateTime<Utc>>) -> Duration {
        let Some(at) = next else {
            return self.config.max_sleep;
        };
        until(at).min(self.config.max_sleep)
    }
}

/// How long until `at`, rounded up to whole milliseconds so that a timer never wakes just
/// before it.
fn until(at: DateTime<Utc>) -> Duration {
    let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Duration::from_millis(wait.as_millis() as u64 + 1)
}

/// What one pass over the stores did.
struct Pass {
    /// When the stores next have work.
    next_wakeup: Option<DateTime<Utc>>,
    /// Whether work was due and none of it could be claimed (its rows are held elsewhere).
    stalled: bool,
}

/// Resolves when leadership changes; never when it cannot (a sole process always leads).
async fn leadership_change(leader: &mut watch::Receiver<bool>) {
    if leader.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Which runs a [`drain`] takes.
#[derive(Clone, Copy)]
enum Take {
    Due,
    Reclaimed,
    TakenOver,
}

impl Take {
    fn operation(self) -> &'static str {
        match self {
            Take::Due => "claim_due",
            Take::Reclaimed => "reclaim_expired",
            Take::TakenOver => "take_over",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Take::Due => "due",
            Take::Reclaimed => "reclaimed",
            Take::TakenOver => "taken_over",
        }
    }
}

/// Calls `take` until it returns less than a full batch, dispatching the pending runs it
/// returns and counting those that ended as they were planned (coalesced, skipped, failed).
async fn drain<'s, F, Fut>(
    store: &'s Arc<dyn JobStore>,
    kind: Take,
    take: F,
    batch: usize,
    launcher: &mut Launcher<'_>,
) -> Result<usize, StoreError>
where
    F: Fn(&'s Arc<dyn JobStore>) -> Fut,
    Fut: Future<Output = Result<Vec<RunRecord>, StoreError>>,
{
    let mut total = 0;
    loop {
        let started = Instant::now();
        let runs = take(store).await;
        telemetry::store_operation(kind.operation(), started.elapsed());
        let runs = runs?;
        let count = runs.len();
        let jobstore = store.jobstore().as_str();
        let (pending, written): (Vec<_>, Vec<_>) = runs
            .into_iter()
            .partition(|run| run.status == RunStatus::Pending);
        for run in written.iter().filter(|run| !run.status.is_open()) {
            telemetry::ended(jobstore, run.status);
        }
        telemetry::claimed(jobstore, kind.label(), pending.len());
        total += count;
        launcher.start_all(pending).await;
        if count < batch {
            return Ok(total);
        }
    }
}

struct Launcher<'a> {
    stores: Arc<Stores>,
    dispatcher: Arc<Dispatcher>,
    permits: Arc<Semaphore>,
    in_flight: InFlight,
    /// Turns true when the engine stops: a run waiting for its device job gives up then, and
    /// is released with the rest, to be followed again by the next process.
    stopping: watch::Receiver<bool>,
    outcomes: mpsc::UnboundedSender<(StoreName, Ended)>,
    tasks: &'a mut JoinSet<()>,
    /// Runs whose moment has not come (claimed ahead of their time, or jittered), by that
    /// moment. They are in flight (their leases are renewed) but hold no dispatch slot.
    held: BTreeMap<DateTime<Utc>, Vec<RunRecord>>,
}

impl Launcher<'_> {
    /// Takes runs in hand: those whose moment has come are dispatched now, the others held
    /// until it comes. Held runs that fell due meanwhile go first.
    async fn start_all(&mut self, runs: Vec<RunRecord>) {
        self.release_held().await;
        let now = Utc::now();
        let mut ready = Vec::with_capacity(runs.len());
        for run in runs {
            if !self.take_off(&run) {
                continue;
            }
            // Every replica computes the same moment from the run's key.
            let goes_at = run.goes_at();
            if goes_at > now {
                self.held.entry(goes_at).or_default().push(run);
            } else {
                ready.push(run);
            }
        }
        self.launch(ready).await;
    }

    /// How long until the first held run's moment.
    fn until_held(&self) -> Duration {
        self.held
            .keys()
            .next()
            .map_or(Duration::MAX, |at| until(*at))
    }

    /// Dispatches the held runs whose moment has come. A run claimed ahead of its time goes
    /// only if the store still has it pending: pausing or deleting its schedule meanwhile
    /// deleted it.
    async fn release_held(&mut self) {
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
        let (ahead, mut ready): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|run| run.scheduled_time > run.claimed_at);
        let keyed = ahead
            .iter()
            .map(|run| (run.jobstore, (run.schedule_id.clone(), run.scheduled_time)))
            .collect();
        let mut confirmed = std::collections::HashSet::new();
        let mut unknown = Vec::new();
        for (store, keys) in per_store(&self.stores, keyed) {
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
            let key = (run.schedule_id.clone(), run.scheduled_time);
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
    /// its size, the others one by one.
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
        for (_, _, rest) in batches {
            if !rest.is_empty() {
                self.start_batch(rest).await;
            }
        }
    }

    /// Marks a run in flight; false when it already is here (a lease we took over from
    /// ourselves: reclaiming it only extended the lease).
    fn take_off(&self, run: &RunRecord) -> bool {
        let key = (run.schedule_id.clone(), run.scheduled_time);
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
        self.tasks.spawn(async move {
            let ended = match AssertUnwindSafe(dispatch_batch(&dispatcher, &runs))
                .catch_unwind()
                .await
            {
                Ok(ended) => ended,
                Err(panic) => {
                    let message = jobstore::plan::panic_message(&*panic);
                    let mut parked = Vec::with_capacity(runs.len());
                    for run in &runs {
                        parked.push(park_after_panic(&stores, run, &message).await);
                    }
                    parked
                }
            };
            for (run, outcome) in runs.iter().zip(ended) {
                let _ = outcomes.send((run.jobstore, Ended::from(outcome)));
            }
            drop(permit);
        });
    }

    /// Dispatches one run in a dispatch slot.
    async fn start(&mut self, run: RunRecord) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let dispatcher = self.dispatcher.clone();
        let outcomes = self.outcomes.clone();
        let stores = self.stores.clone();
        let mut stopping = self.stopping.clone();
        self.tasks.spawn(async move {
            let outcome = match AssertUnwindSafe(dispatch_run(&dispatcher, &run))
                .catch_unwind()
                .await
            {
                Ok((outcome, result)) => {
                    // What is left (a device job's run) waits without a dispatch slot.
                    drop(permit);
                    tokio::select! {
                        // An outcome already there is recorded, stopping or not.
                        biased;
                        outcome = follow(&dispatcher, &stores, &run, outcome, result) => outcome,
                        _ = stopping.wait_for(|stop| *stop) => return,
                    }
                }
                Err(panic) => {
                    drop(permit);
                    let message = jobstore::plan::panic_message(&*panic);
                    Ended::from(park_after_panic(&stores, &run, &message).await)
                }
            };
            let _ = outcomes.send((run.jobstore, outcome));
        });
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
        if let Err(error) = parked.await {
            tracing::error!(%error, schedule_id = %run.schedule_id, "cannot park the schedule");
        }
    }
    RunOutcome::of(run, RunStatus::Failed, Some(reason), 0, Utc::now())
}

/// Ends the leases of runs whose outcome was not recorded before shutdown.
async fn release_unfinished(stores: &Stores, in_flight: &InFlight) {
    let left: Vec<(StoreName, RunKey)> = lock(in_flight)
        .drain()
        .map(|(key, jobstore)| (jobstore, key))
        .collect();
    let now = Utc::now();
    for (store, keys) in per_store(stores, left) {
        let jobstore = store.jobstore();
        match tokio::time::timeout(RELEASE_TIMEOUT, store.set_leases(&keys, now)).await {
            Ok(Ok(())) => tracing::warn!(
                jobstore = jobstore.as_str(),
                runs = keys.len(),
                "released unfinished runs for takeover; they will be dispatched again with the same idempotency keys"
            ),
            Ok(Err(error)) => {
                tracing::error!(%error, runs = keys.len(), "releasing unfinished runs failed; they are taken over when their leases expire")
            }
            Err(_) => tracing::error!(
                runs = keys.len(),
                "releasing unfinished runs timed out; they are taken over when their leases expire"
            ),
        }
    }
}

/// Renews, every `every`, the leases of the runs this process has claimed and not yet
/// recorded (waiting for a dispatch slot, or dispatching), so that no other replica takes over
/// a run whose claimer is alive and busy. Only the runs of a process that died, or that lost
/// the database, are taken over.
async fn renew_leases(stores: Stores, in_flight: InFlight, lease: TimeDelta, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let held: Vec<(StoreName, RunKey)> = lock(&in_flight)
            .iter()
            .map(|(key, jobstore)| (*jobstore, key.clone()))
            .collect();
        let until = Utc::now() + lease;
        for (store, keys) in per_store(&stores, held) {
            let started = Instant::now();
            let renewed = store.set_leases(&keys, until).await;
            telemetry::store_operation("set_leases", started.elapsed());
            if let Err(error) = renewed {
                tracing::warn!(%error, runs = keys.len(), "renewing the leases of runs in flight failed; another replica may take them over");
            }
        }
    }
}

/// Writes outcomes in batches (a watch's attempts with their count, in one transaction per
/// batch); a run leaves the in-flight set only once its outcome is stored.
async fn record_outcomes(
    stores: Stores,
    mut incoming: mpsc::UnboundedReceiver<(StoreName, Ended)>,
    in_flight: InFlight,
    wake: Arc<Notify>,
    watch_ended: Arc<Watches>,
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
        for (store, ended) in per_store(&stores, batch) {
            let mut outcomes = Vec::with_capacity(ended.len());
            let mut attempts = Vec::new();
            for Ended { outcome, check } in ended {
                match check {
                    Some(check) => attempts.push((outcome, check)),
                    None => outcomes.push(outcome),
                }
            }
            if !attempts.is_empty() {
                record_attempts(store, &attempts, &watch_ended).await;
                let mut flying = lock(&in_flight);
                for (outcome, _) in &attempts {
                    flying.remove(&(outcome.schedule_id.clone(), outcome.scheduled_time));
                }
            }
            if outcomes.is_empty() {
                continue;
            }
            let mut delay = Duration::from_millis(100);
            loop {
                let started = Instant::now();
                let recorded = store.finish_runs(&outcomes).await;
                telemetry::store_operation("finish_runs", started.elapsed());
                let error = match recorded {
                    Ok(0) => break,
                    Ok(_) => {
                        // Runs that waited for these to end are due now.
                        wake.notify_one();
                        break;
                    }
                    Err(error) => error,
                };
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

/// Records watches' attempts with their ledger rows, retrying until it is stored; wakes the
/// completions' sender when a watch has ended.
async fn record_attempts(
    store: &Arc<dyn JobStore>,
    attempts: &[(RunOutcome, CheckResult)],
    watches: &Watches,
) {
    let Some(watch_store) = store.clone().watch_store() else {
        tracing::error!(
            jobstore = store.jobstore().as_str(),
            "watch attempts in a jobstore without watches; they are left pending"
        );
        return;
    };
    let mut delay = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let recorded = watch_store.record_attempts(attempts).await;
        telemetry::store_operation("record_attempts", started.elapsed());
        match recorded {
            Ok(recorded) => {
                for watch in &recorded {
                    tracing::debug!(watch_id = %watch.id, attempts = watch.attempts, status = watch.status.as_str(), "watch attempt recorded");
                }
                if recorded.iter().any(|watch| watch.delivery.is_some()) {
                    watches.ended.notify_one();
                }
                return;
            }
            Err(error) => {
                tracing::error!(%error, attempts = attempts.len(), ?delay, "recording watch attempts failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Items grouped by the store they belong to, in the order of [`StoreName::ALL`]; stores with
/// nothing, or not served here, are left out.
fn per_store<T>(stores: &Stores, items: Vec<(StoreName, T)>) -> Vec<(&Arc<dyn JobStore>, Vec<T>)> {
    let mut groups: Vec<_> = stores.all().map(|store| (store, Vec::new())).collect();
    for (jobstore, item) in items {
        if let Some((_, group)) = groups.iter_mut().find(|(s, _)| s.jobstore() == jobstore) {
            group.push(item);
        }
    }
    groups.retain(|(_, group)| !group.is_empty());
    groups
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobstore::{MemoryStore, Policy, Schedule, Target};
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
