//! The traits every backend implements, one per concern, composed into [`JobStore`].

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::alerts::{Alert, AlertFilter, Delivery, Watched};
use crate::changes::{Change, ChangeFilter};
use crate::model::{
    ListFilter, Overlap, RunFilter, RunNote, RunOutcome, RunPlacement, RunRecord, RunStatus,
    Schedule, StoreName,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a schedule with id '{0}' already exists")]
    Conflict(String),
    #[error("stored row is unreadable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Open(#[from] service_kit::DatabaseError),
}

impl StoreError {
    pub(crate) fn corrupt(what: &str, error: impl std::fmt::Display) -> Self {
        StoreError::Corrupt(format!("{what}: {error}"))
    }
}

/// The instant a claim plans with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAt {
    /// This instant.
    Instant(DateTime<Utc>),
    /// The clock, read once the claim holds its transaction. A claim that waited for a
    /// connection (the database was away) or for its turn to write plans with the time it
    /// runs, not the time it was asked for, so what it folds into one coalesced run and what it
    /// finds late are as of that moment, whatever the wait.
    Clock,
}

impl ClaimAt {
    /// The instant, reading the clock for [`ClaimAt::Clock`].
    pub fn resolve(self) -> DateTime<Utc> {
        match self {
            ClaimAt::Instant(at) => at,
            ClaimAt::Clock => Utc::now(),
        }
    }
}

impl From<DateTime<Utc>> for ClaimAt {
    fn from(at: DateTime<Utc>) -> Self {
        ClaimAt::Instant(at)
    }
}

/// The schedules of one named jobstore.
#[async_trait]
pub trait Schedules: Send + Sync + 'static {
    /// Which named jobstore this is.
    fn jobstore(&self) -> StoreName;

    /// The backend's name, for logs and status ("postgres", "sqlite", "memory").
    fn backend(&self) -> &'static str;

    /// Stores a new schedule; fails with [`StoreError::Conflict`] when the id exists.
    async fn insert(&self, schedule: &Schedule) -> Result<(), StoreError>;

    /// Stores a new schedule and records its creation (`change`) in the audit log of the same
    /// database, in one transaction: the log misses no creation, and costs it no write of its
    /// own. Fails as [`Schedules::insert`] does.
    async fn insert_recorded(&self, schedule: &Schedule, change: &Change)
    -> Result<(), StoreError>;

    /// Stores many new schedules in one transaction: all of them, or none when an id exists.
    async fn insert_many(&self, schedules: &[Schedule]) -> Result<(), StoreError>;

    async fn get(&self, id: &str) -> Result<Option<Schedule>, StoreError>;

    /// Replaces a schedule in place (everything but its id and creation time) and returns it
    /// as stored; `None` when there is no such schedule. Its ledger rows stay, but for the runs
    /// claimed ahead of their time and not yet due: they are given back (deleted, and never
    /// run as the schedule was), and when the replacement `keeps_next` (its trigger did not
    /// change) the earliest of them is its next run again, claimed anew as it now is
    /// ([`crate::plan::replanned`]).
    async fn replace(
        &self,
        schedule: &Schedule,
        keeps_next: bool,
    ) -> Result<Option<Schedule>, StoreError>;

    /// Schedules matching `filter`: oldest first, or in id order for a page.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Schedule>, StoreError>;

    /// Removes a schedule and returns it. Its ledger rows stay as history, but for the runs
    /// claimed ahead of their time and not yet due, which are deleted with it (they never ran).
    async fn delete(&self, id: &str) -> Result<Option<Schedule>, StoreError>;

    /// Pauses (with an optional reason) or resumes a schedule, setting its next run time;
    /// returns the updated schedule. Resuming clears the reason. Pausing deletes the runs that
    /// were claimed ahead of their time and are not yet due, so they do not run (an engine
    /// holding one checks with [`Claims::still_pending`] before it dispatches it).
    async fn set_paused(
        &self,
        id: &str,
        paused: bool,
        reason: Option<&str>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Schedule>, StoreError>;

    /// How many schedules the store holds.
    async fn count(&self) -> Result<u64, StoreError>;
}

/// Claiming what is due: the occurrences an engine fires, each once, under a lease.
#[async_trait]
pub trait Claims: Send + Sync + 'static {
    /// The earliest instant at which this store has work: a schedule's next run, or the expiry
    /// of a pending run's lease.
    async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.wakeup(Utc::now(), TimeDelta::zero()).await
    }

    /// The earliest instant at which an engine that claims `ahead` of time (see
    /// [`Claims::claim`]) has work here: `ahead` before the next run of a schedule that may be
    /// claimed ahead, the next run of one that may not, or the expiry of a pending run's lease.
    async fn wakeup(
        &self,
        now: DateTime<Utc>,
        ahead: TimeDelta,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// [`Claims::claim`] of what is due by `now`, nothing ahead.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.claim(now, TimeDelta::zero(), limit, lease).await
    }

    /// The runs of [`Claims::claim_rows`] at `now` that are pending dispatch.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        ahead: TimeDelta,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut rows = self.claim_rows(now.into(), ahead, limit, lease).await?;
        rows.retain(|run| run.status == RunStatus::Pending);
        Ok(rows)
    }

    /// Claims up to `limit` schedules in one transaction: those due by `now` (the instant `at`
    /// stands for once the transaction is held), and those due by
    /// `now + ahead` whose fire does not depend on their runs in progress (their overlap policy
    /// cannot apply, [`crate::plan::needs_active`]). Writes their ledger rows and advances
    /// their next run times. Returns every ledger row it wrote: the runs now pending dispatch,
    /// leased until `now + lease` (a run claimed ahead is to be dispatched at its time, once
    /// [`Claims::still_pending`] confirms it), and those that ended as they were planned
    /// (`coalesced`, `skipped`, `failed`). An occurrence already in the ledger is never
    /// returned twice.
    async fn claim_rows(
        &self,
        at: ClaimAt,
        ahead: TimeDelta,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError>;

    /// Which of these runs are still `pending`: a run claimed ahead whose schedule was paused or
    /// deleted before its time is not (its row is gone).
    async fn still_pending(
        &self,
        runs: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;

    /// Takes over pending runs whose lease expired at or before `now` (their claimer died),
    /// extending the lease to `now + lease`. A run that an engine held before is marked
    /// `recovered` (delivered again); a run no engine had taken yet (by hand, backfilled,
    /// promoted from `buffered`) is not.
    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError>;

    /// Takes over, without waiting for their leases, the pending runs of replicas known to be
    /// dead ([`crate::replica`]), marked `recovered`, leased until `now + lease`. Only a store
    /// that several processes share can tell: the others have none to give.
    async fn take_over(
        &self,
        _now: DateTime<Utc>,
        _limit: usize,
        _lease: TimeDelta,
    ) -> Result<Vec<RunRecord>, StoreError> {
        Ok(Vec::new())
    }

    /// Sets the lease of pending runs to end at `until`. With `until` ahead, a live process
    /// keeps the runs it is still dispatching; with `until` now, it gives them up (at
    /// shutdown), so that another process takes them over at once. A run whose row another
    /// transaction holds at that moment (its outcome being recorded) may be left as it is.
    async fn set_leases(
        &self,
        runs: &[(String, DateTime<Utc>)],
        until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// The run ledger: how claimed runs ended, and runs written outside a claim (by hand, a
/// backfill).
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Records how pending runs ended. Rows that are no longer pending are left as they are.
    /// For each schedule left with no run in progress, its oldest `buffered` row becomes
    /// `pending` with an expired lease, so that an engine dispatches it at once. Returns how
    /// many rows it made pending so.
    async fn finish_runs(&self, outcomes: &[RunOutcome]) -> Result<usize, StoreError>;

    /// Writes one ledger row outside any claim (a run started by hand). Returns false, writing
    /// nothing, when the occurrence is already in the ledger.
    async fn insert_run(&self, run: &RunRecord) -> Result<bool, StoreError>;

    /// Writes a run started by hand (run now) as the overlap policy admits it next to the
    /// schedule's runs in progress ([`crate::plan::admitted`]), in one transaction. Returns the
    /// row as written, or `None`, writing nothing, when the occurrence is already in the
    /// ledger. A `pending` row is dispatched by whichever engine takes over its lease.
    async fn start_run(
        &self,
        run: &RunRecord,
        overlap: Overlap,
    ) -> Result<Option<RunRecord>, StoreError>;

    /// Writes `buffered` rows (a backfill), skipping occurrences already in the ledger, and
    /// returns how many it wrote. When the schedule has no run in progress the oldest
    /// becomes `pending` at once; each following one when the one before it ends.
    async fn queue_runs(&self, runs: &[RunRecord], now: DateTime<Utc>)
    -> Result<usize, StoreError>;

    /// Sets the detail of each run still pending that a note names (what it is waiting for,
    /// such as the job a device runner queued for it), in one statement per 1,000 notes; a
    /// run that has ended is left as it is.
    async fn annotate(&self, notes: &[RunNote]) -> Result<(), StoreError>;

    /// Records where pending runs go (device jobs placed by tags), in one statement per 1,000:
    /// each row's target becomes the placed one and its detail the placement's, only if the
    /// row is still pending and placed as expected (compare and set, so two deliveries never
    /// place one run twice). Whether each was written, in order.
    async fn place(&self, placements: &[RunPlacement]) -> Result<Vec<bool>, StoreError>;

    /// A page of the schedules whose alerts are checked, by id after `after`: those that set
    /// `policy.alerts`, or every one when `every` (the service has defaults), each with what
    /// its runs tell. A schedule whose row does not read is left out (it is parked by the
    /// engine, which reports it).
    async fn alerting(
        &self,
        after: Option<&str>,
        limit: usize,
        every: bool,
    ) -> Result<Vec<Watched>, StoreError>;

    /// A schedule's ledger rows matching `filter`, newest scheduled time first.
    async fn runs(
        &self,
        schedule_id: &str,
        filter: &RunFilter,
    ) -> Result<Vec<RunRecord>, StoreError>;
}

/// Pruning the ledger's finished rows.
#[async_trait]
pub trait Retention: Send + Sync + 'static {
    /// Deletes at most `limit` of this store's ledger rows that finished before `before`
    /// (never a pending or buffered one); returns how many.
    async fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;

    /// The schedules of this store with more than `keep` finished ledger rows, at most `limit`
    /// of them.
    /// A deleted schedule's rows are left to age out.
    async fn over_keep(&self, keep: usize, limit: usize) -> Result<Vec<String>, StoreError>;

    /// Deletes at most `limit` of a schedule's finished ledger rows beyond its newest `keep`
    /// finished ones, oldest first; returns how many.
    async fn trim_runs(
        &self,
        schedule_id: &str,
        keep: usize,
        limit: usize,
    ) -> Result<u64, StoreError>;
}

/// A jobstore: the schedules of one named store and their part of the run ledger, each concern
/// a trait of its own ([`Schedules`], [`Claims`], [`Ledger`], [`Retention`]) that every backend
/// implements and this one composes.
///
/// Every method that changes state commits it before returning, so a caller acts only on
/// what is persisted.
pub trait JobStore: Schedules + Claims + Ledger + Retention {}

impl<T: Schedules + Claims + Ledger + Retention + ?Sized> JobStore for T {}

/// The audit log.
#[async_trait]
pub trait ChangeLog: Send + Sync + 'static {
    /// Appends `change` (its `seq` is given by the log).
    async fn record_change(&self, change: &Change) -> Result<(), StoreError>;

    /// The changes `filter` selects, newest first, at most `filter.limit`.
    async fn changes(&self, filter: &ChangeFilter) -> Result<Vec<Change>, StoreError>;

    /// Deletes up to `limit` changes older than `before`; how many went.
    async fn prune_changes(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;
}

/// The alerts: incidents, and their messages to the channels until each is delivered.
#[async_trait]
pub trait AlertLog: Send + Sync + 'static {
    /// Opens `alert` with a message due now to each of `channels`, unless an incident of its
    /// kind is open for its schedule already; whether it opened.
    async fn open_alert(&self, alert: &Alert, channels: &[String]) -> Result<bool, StoreError>;

    /// Resolves the open incident `id` with `resolution`, with a message due to each of
    /// `channels` (sent after the opening one); whether it was open.
    async fn resolve_alert(
        &self,
        id: &str,
        at: DateTime<Utc>,
        resolution: &str,
        channels: &[String],
    ) -> Result<bool, StoreError>;

    /// The incidents `filter` selects, newest first.
    async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError>;

    /// Takes up to `limit` messages due at `now` (a resolution only once its incident's
    /// opening went to that channel) and holds them until `hold_until`, so that no other
    /// sender takes them meanwhile.
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Records a message as delivered.
    async fn delivered(&self, delivery: &Delivery, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Records a failed attempt; the message is due again at `retry_at`.
    async fn delivery_failed(
        &self,
        delivery: &Delivery,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Deletes up to `limit` incidents resolved before `before`, with their messages; how
    /// many went.
    async fn prune_alerts(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;
}
