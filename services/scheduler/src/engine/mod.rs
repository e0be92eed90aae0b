//! The engine: sleeps until the earliest due time (or until told that schedules changed),
//! claims due runs in batches, dispatches them outside the claim transaction and records how
//! each ended. No fixed polling tick and no scan of every schedule: each store answers "when is
//! your next work" from an index.

//!
//! The parts: this module holds the loop ([`Engine::run`], one [`Engine::pass`] over the stores
//! at a time); [`launcher`] dispatches what a pass claimed; [`outcomes`] records how runs
//! ended; [`notes`] writes what runs in progress wait for, in batches; [`leases`] renews and
//! releases the leases of runs in flight; [`backoff`] is the one backoff of what is tried again.

mod backoff;
mod launcher;
mod leases;
mod notes;
mod outcomes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{ClaimAt, JobStore, RunRecord, RunStatus, StoreError, StoreName};
use tokio::sync::{Notify, watch};

use crate::config::EngineConfig;
use crate::dispatch::Dispatcher;
use crate::stores::Stores;
use crate::telemetry;
use launcher::Launcher;
use leases::{release_unfinished, renew_leases};
use notes::start_notes;
use outcomes::start_recorder;

type RunKey = (String, DateTime<Utc>);

/// A run's key: its schedule and its scheduled time.
fn key_of(run: &RunRecord) -> RunKey {
    (run.schedule_id.clone(), run.scheduled_time)
}
/// The waits of the backoff while passes fail; `None` while they succeed.
type Failing = Option<Box<dyn Iterator<Item = Duration> + Send>>;
/// The runs dispatched and not yet recorded, with their jobstores.
type InFlight = Arc<Mutex<HashMap<RunKey, StoreName>>>;

/// The first wait before a pass that failed (the database is down) is tried again.
const FIRST_PASS_RETRY: Duration = Duration::from_millis(500);
/// How soon the engine looks again when due work is there but it claimed nothing (another
/// replica's claim, or a stuck transaction, holds the rows): soon, but without spinning.
const RECHECK_DELAY: Duration = Duration::from_millis(25);

pub(crate) struct Engine {
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
    pub(crate) fn new(
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
    pub(crate) async fn run(
        self,
        mut shutdown: service_kit::Shutdown,
        grace: Duration,
    ) -> Result<(), String> {
        let lease = self.config.lease_delta();
        let ahead = self.config.lookahead_delta();
        let batch = self.config.batch_size as usize;
        let in_flight: InFlight = Arc::default();
        let (outcomes, mut recorder) = start_recorder(
            self.stores.clone(),
            in_flight.clone(),
            self.wake.clone(),
            self.dispatcher.targets.watches.clone(),
        );
        let renewer = tokio::spawn(renew_leases(
            self.stores.clone(),
            in_flight.clone(),
            lease,
            self.config.lease / 3,
        ));
        let (notes, noter) = start_notes(self.stores.clone());
        let (stopping, stop_rx) = watch::channel(false);
        let mut launcher = Launcher::new(
            Arc::new(self.stores.clone()),
            self.dispatcher.clone(),
            self.config.dispatch_concurrency as usize,
            in_flight.clone(),
            stop_rx,
            outcomes,
            notes,
        );

        if self.exclusive {
            self.recover_left_pending(lease, batch, &mut launcher).await;
        }

        let mut failing: Failing = None;
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
            let sleep = self.after(pass, &mut failing);
            // A replica that dies is noticed within a poll, whatever is due.
            let sleep = sleep.min(launcher.until_held()).min(self.takeover.within());
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                () = shutdown.requested() => {}
                _ = leadership_change(&mut leader) => {}
            }
            launcher.reap();
        }

        // Runs that only wait for a device job to end are left to the next process.
        let _ = stopping.send(true);
        let deadline = launcher.finish(grace).await;
        drop(launcher);
        if tokio::time::timeout_at(deadline, &mut recorder)
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline reached before every outcome was recorded");
            recorder.abort();
        }
        renewer.abort();
        // The notes sent are written, when there is time left (they are only for show).
        if tokio::time::timeout_at(deadline, noter).await.is_err() {
            tracing::debug!("shutdown deadline reached before every note was written");
        }
        release_unfinished(&self.stores, &in_flight).await;
        stopped_by_itself.map_or(Ok(()), Err)
    }

    /// How long to sleep after a pass: until the stores' next work, soon when work was due and
    /// none could be claimed, and after a failed pass the next wait of the backoff.
    fn after(&self, pass: Result<Pass, StoreError>, failing: &mut Failing) -> Duration {
        telemetry::database_up(pass.is_ok());
        match pass {
            Ok(pass) => {
                if failing.take().is_some() {
                    tracing::info!("engine pass succeeded again; firing resumed");
                }
                if pass.stalled {
                    RECHECK_DELAY
                } else {
                    self.sleep_until(pass.next_wakeup)
                }
            }
            Err(error) => {
                let waits =
                    failing.get_or_insert_with(|| Box::new(backoff::delays(FIRST_PASS_RETRY)));
                let backoff = waits.next().unwrap_or(FIRST_PASS_RETRY);
                tracing::error!(%error, ?backoff, "engine pass failed; retrying");
                backoff
            }
        }
    }

    /// Takes over, at start, every run a previous life of this sole process left pending, and
    /// dispatches each again with its idempotency key (which settles it: a device job already
    /// ended is found ended). They are marked recovered, so an occurrence due meanwhile waits
    /// for them instead of being skipped for overlap.
    async fn recover_left_pending(&self, lease: TimeDelta, batch: usize, launcher: &mut Launcher) {
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
        launcher: &mut Launcher,
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
    launcher: &mut Launcher,
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
            // A claim writes a failed row only when it parks the schedule (see `plan`).
            if run.status == RunStatus::Failed {
                crate::audit::parked(launcher.stores(), run).await;
            }
        }
        telemetry::claimed(jobstore, kind.label(), pending.len());
        total += count;
        launcher.start_all(pending).await;
        if count < batch {
            return Ok(total);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
