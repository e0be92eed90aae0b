//! The general schedule API: any trigger to any target, for an owner. Declared schedules
//! (owner `system`) are read-only here; a caller with the admin token may act on any other
//! schedule whatever its owner.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use jobstore::{
    JobStore, ListFilter, Overlap, Page, Policy, RunFilter, RunRecord, RunStatus, Schedule,
    StoreError, StoreName, Target,
};
use jsonrpsee::Extensions;
use scheduler_api::{
    Backfill, NewSchedule, Origin, RunPage, RunQuery, SchedulePage, SchedulePolicy, ScheduleQuery,
    ScheduleUpdate, SchedulerError, TriggerSpec, Valid,
};

use serde_json::json;

use crate::api::access::{self, Access, Denied, Who};
use crate::api::views;
use crate::app::{App, storage_error};
use crate::audit::{self, Actor};
use crate::targets::{self, kind_of};

const DEFAULT_BACKFILL: u32 = 1000;
const MAX_BACKFILL: u32 = 10_000;
/// How many later milliseconds a run started by hand may move to when its instant is taken.
const INSTANT_ATTEMPTS: i64 = 5;

/// A schedule as found, with the store it lives in.
struct Found {
    store: Arc<dyn JobStore>,
    schedule: Schedule,
}

pub(crate) async fn create(
    app: &App,
    extensions: &Extensions,
    request: Valid<NewSchedule>,
) -> Result<scheduler_api::Schedule, SchedulerError> {
    let request = request.into_inner();
    let caller = access::caller_of(extensions);
    access::acting_for(&request.owner, caller)
        .map_err(|_| Denied::out_of_scope(&request.owner, caller))?;
    let jobstore = jobstore_name(request.jobstore.as_deref())?;
    let store = app.stores.get(jobstore).cloned().ok_or_else(|| {
        SchedulerError::Value(format!(
            "jobstore '{}' is not served here",
            jobstore.as_str()
        ))
    })?;
    let replace_existing = request.replace_existing;
    let schedule = new_schedule(app, request).await?;
    let actor = Actor::of(extensions);
    let stored = match find(app, &schedule.id).await? {
        Some(found) if replace_existing => {
            replace_found(app, extensions, found, (&schedule, jobstore), &actor).await?
        }
        Some(_) => return Err(already_exists(&schedule.id)),
        None => {
            let inserted = audit::insert_created(&app.stores, store.as_ref(), &actor, &schedule);
            inserted.await.map_err(|error| match error {
                StoreError::Conflict(_) => already_exists(&schedule.id),
                other => storage_error(other),
            })?;
            schedule
        }
    };
    app.wake.notify_one();
    tracing::info!(schedule_id = %stored.id, owner = %stored.owner, target = stored.target.kind(), next_run_at = ?stored.next_run_at, "schedule created");
    Ok(views::schedule(&stored, jobstore, None))
}

/// The schedule a creation asks for, checked: its id (a new UUID when none is given), its
/// trigger anchored now, its target as the configuration allows it, its policy.
async fn new_schedule(app: &App, request: NewSchedule) -> Result<Schedule, SchedulerError> {
    let id = request
        .id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let now = Utc::now().trunc_subsecs(0);
    let trigger = request.trigger.anchored(now);
    let next_run_at = next_run(&trigger, &id, now)?;
    check_target(app, &request.target).await?;
    let policy = merge_policy(Policy::default(), request.policy)?;
    Ok(Schedule {
        name: request
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| id.clone()),
        id,
        owner: request.owner,
        trigger,
        target: request.target,
        policy,
        tags: request.tags,
        paused: false,
        paused_reason: None,
        next_run_at,
        created_at: now,
    })
}

/// Replaces `found` with `schedule` in place (`replace_existing`), which must be asked for in
/// the jobstore `found` lives in, and records the replacement.
async fn replace_found(
    app: &App,
    extensions: &Extensions,
    found: Found,
    (schedule, asked): (&Schedule, StoreName),
    actor: &Actor,
) -> Result<Schedule, SchedulerError> {
    authorize(&found.schedule, &schedule.owner, extensions, Access::Change)?;
    let id = &schedule.id;
    let jobstore = found.store.jobstore();
    if asked != jobstore {
        return Err(SchedulerError::Value(format!(
            "schedule '{id}' lives in jobstore '{}'; it cannot be replaced into '{}'",
            jobstore.as_str(),
            asked.as_str()
        )));
    }
    let stored = found
        .store
        .replace(schedule, false)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| not_found(id))?;
    let (before, after) = (Some(&found.schedule), Some(&stored));
    audit::schedule(&app.stores, actor, "replace", jobstore, before, after).await;
    Ok(stored)
}

pub(crate) async fn update(
    app: &App,
    extensions: &Extensions,
    id: &str,
    owner: &str,
    update: Valid<ScheduleUpdate>,
) -> Result<scheduler_api::Schedule, SchedulerError> {
    let update = update.into_inner();
    let found = owned(app, id, owner, extensions, Access::Change).await?;
    let before = found.schedule.clone();
    let mut schedule = found.schedule;
    let keeps_next = update.trigger.is_none();
    if let Some(name) = update.name.filter(|n| !n.trim().is_empty()) {
        schedule.name = name;
    }
    if let Some(trigger) = update.trigger {
        let now = Utc::now().trunc_subsecs(0);
        let trigger = trigger.anchored(now);
        let next = next_run(&trigger, id, now)?;
        schedule.trigger = trigger;
        if !schedule.paused {
            schedule.next_run_at = next;
        }
    }
    if let Some(target) = update.target {
        check_target(app, &target).await?;
        schedule.target = target;
    }
    if update.policy.is_some() {
        schedule.policy = merge_policy(schedule.policy, update.policy)?;
    }
    if let Some(tags) = update.tags {
        schedule.tags = tags;
    }
    let stored = found
        .store
        .replace(&schedule, keeps_next)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| not_found(id))?;
    app.wake.notify_one();
    let (actor, jobstore) = (Actor::of(extensions), found.store.jobstore());
    audit::schedule(
        &app.stores,
        &actor,
        "update",
        jobstore,
        Some(&before),
        Some(&stored),
    )
    .await;
    tracing::info!(schedule_id = %id, %owner, "schedule updated");
    Ok(views::schedule(&stored, found.store.jobstore(), None))
}

pub(crate) async fn get(
    app: &App,
    extensions: &Extensions,
    id: &str,
    owner: &str,
) -> Result<scheduler_api::Schedule, SchedulerError> {
    let found = owned(app, id, owner, extensions, Access::Read).await?;
    let last = found
        .store
        .runs(id, &RunFilter::latest(1))
        .await
        .map_err(storage_error)?;
    Ok(views::schedule(
        &found.schedule,
        found.store.jobstore(),
        last.first().map(views::run),
    ))
}

pub(crate) async fn list(
    app: &App,
    extensions: &Extensions,
    listing: Valid<ScheduleQuery>,
) -> Result<SchedulePage, SchedulerError> {
    let limit = listing.page();
    let listing = listing.into_inner();
    let owners = access::listing_scope_naming(listing.owner.as_deref(), extensions)?;
    let stores = stores_named(app, listing.jobstore.as_deref())?;
    let filter = ListFilter {
        owner: listing.owner,
        owners,
        include_inactive: true,
        target_type: listing.target_type,
        paused: listing.paused,
        tag: listing.tag,
        page: Some(Page {
            after_id: listing.cursor,
            // One more than asked, to know whether another page follows.
            limit: limit + 1,
        }),
        ..ListFilter::default()
    };
    let mut found = Vec::new();
    for store in stores {
        let schedules = store.list(&filter).await.map_err(storage_error)?;
        found.extend(schedules.into_iter().map(|s| (s, store.jobstore())));
    }
    // Each store answers in id order; merged, the page is the first `limit` ids of all.
    found.sort_by(|(a, _), (b, _)| a.id.cmp(&b.id));
    let more = found.len() > limit;
    found.truncate(limit);
    let next_cursor = more
        .then(|| found.last().map(|(s, _)| s.id.clone()))
        .flatten();
    // Each listed schedule with its last run, as get_schedule shows it: one indexed read per
    // schedule of the page, at most `limit`, run together.
    let last_runs = futures::future::try_join_all(found.iter().map(|(schedule, jobstore)| async {
        match app.stores.get(*jobstore) {
            Some(store) => store.runs(&schedule.id, &RunFilter::latest(1)).await,
            None => Ok(Vec::new()),
        }
    }))
    .await
    .map_err(storage_error)?;
    Ok(SchedulePage {
        schedules: found
            .iter()
            .zip(last_runs)
            .map(|((schedule, jobstore), last)| {
                views::schedule(schedule, *jobstore, last.first().map(views::run))
            })
            .collect(),
        next_cursor,
    })
}

pub(crate) async fn delete(
    app: &App,
    extensions: &Extensions,
    id: &str,
    owner: &str,
) -> Result<scheduler_api::Schedule, SchedulerError> {
    let found = owned(app, id, owner, extensions, Access::Change).await?;
    let deleted = found.store.delete(id).await.map_err(storage_error)?;
    app.wake.notify_one();
    let deleted = deleted.unwrap_or(found.schedule);
    let (actor, jobstore) = (Actor::of(extensions), found.store.jobstore());
    audit::schedule(
        &app.stores,
        &actor,
        "delete",
        jobstore,
        Some(&deleted),
        None,
    )
    .await;
    tracing::info!(schedule_id = %id, %owner, "schedule deleted");
    Ok(views::schedule(&deleted, jobstore, None))
}

pub(crate) async fn set_paused(
    app: &App,
    extensions: &Extensions,
    id: &str,
    owner: &str,
    pause: Option<Option<String>>,
) -> Result<scheduler_api::Schedule, SchedulerError> {
    let found = owned(app, id, owner, extensions, Access::Change).await?;
    let (paused, reason, next_run_at) = match pause {
        Some(reason) => (true, reason, None),
        // Resuming fires from now on: what was missed while paused is not caught up.
        None => (
            false,
            None,
            next_run(&found.schedule.trigger, id, Utc::now())?,
        ),
    };
    let stored = found
        .store
        .set_paused(id, paused, reason.as_deref(), next_run_at)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| not_found(id))?;
    app.wake.notify_one();
    let action = if paused { "pause" } else { "resume" };
    let (actor, jobstore) = (Actor::of(extensions), found.store.jobstore());
    audit::schedule(
        &app.stores,
        &actor,
        action,
        jobstore,
        Some(&found.schedule),
        Some(&stored),
    )
    .await;
    tracing::info!(schedule_id = %id, %owner, paused, reason = ?reason, "schedule paused state changed");
    Ok(views::schedule(&stored, found.store.jobstore(), None))
}

pub(crate) async fn trigger(
    app: &App,
    extensions: &Extensions,
    id: &str,
    owner: &str,
) -> Result<scheduler_api::ScheduleRun, SchedulerError> {
    let found = owned(app, id, owner, extensions, Access::Run).await?;
    let schedule = &found.schedule;
    let now = Utc::now().trunc_subsecs(3);
    for step in 0..INSTANT_ATTEMPTS {
        let at = now + TimeDelta::milliseconds(step);
        // Pending with its lease already over: the first engine to look dispatches it.
        let run = RunRecord {
            lease_until: Some(at),
            ..run_of(schedule, found.store.jobstore(), at, RunStatus::Pending)
        };
        let written = found
            .store
            .start_run(&run, schedule.policy.overlap)
            .await
            .map_err(storage_error)?;
        if let Some(run) = written {
            if !run.status.is_open() {
                crate::telemetry::ended(run.jobstore.as_str(), run.status);
            }
            app.wake.notify_one();
            let changes = json!({"run": {"scheduled_time": run.scheduled_time, "status": run.status.as_str()}});
            let key = (found.store.jobstore(), id, schedule.owner.as_str());
            audit::record(&app.stores, &Actor::of(extensions), "trigger", key, changes).await;
            tracing::info!(schedule_id = %id, %owner, status = run.status.as_str(), "schedule run by hand");
            return Ok(views::run(&run));
        }
    }
    Err(SchedulerError::Runtime(format!(
        "could not find a free instant for a run of '{id}'; try again"
    )))
}

pub(super) async fn backfill(
    app: &App,
    extensions: &Extensions,
    id: &str,
    owner: &str,
    range: (DateTime<Utc>, DateTime<Utc>),
    max: Option<u32>,
) -> Result<Backfill, SchedulerError> {
    let (start, end) = range;
    let max = max.unwrap_or(DEFAULT_BACKFILL);
    let now = Utc::now();
    check_backfill(range, max, now)?;
    let found = owned(app, id, owner, extensions, Access::Run).await?;
    let schedule = &found.schedule;
    let occurrences = backfilled_occurrences(schedule, range, max)?;
    let jobstore = found.store.jobstore();
    // Runs that may overlap all start at once; the others one after another, oldest first.
    let at_once = !schedule.target.has_duration() || schedule.policy.overlap == Overlap::AllowAll;
    let claimed_at = now.trunc_subsecs(3);
    let runs: Vec<RunRecord> = occurrences
        .iter()
        .map(|at| {
            let status = if at_once {
                RunStatus::Pending
            } else {
                RunStatus::Buffered
            };
            RunRecord {
                claimed_at,
                lease_until: at_once.then_some(claimed_at),
                ..run_of(schedule, jobstore, *at, status)
            }
        })
        .collect();
    let queued = found
        .store
        .queue_runs(&runs, now)
        .await
        .map_err(storage_error)? as u32;
    app.wake.notify_one();
    let changes = json!({"backfill": {"start": start, "end": end, "queued": queued}});
    let key = (jobstore, id, schedule.owner.as_str());
    audit::record(
        &app.stores,
        &Actor::of(extensions),
        "backfill",
        key,
        changes,
    )
    .await;
    tracing::info!(schedule_id = %id, %owner, queued, in_range = runs.len(), "schedule backfilled");
    Ok(Backfill {
        queued,
        already_in_ledger: runs.len() as u32 - queued,
    })
}

/// Checks what a backfill is asked: `max` within its bounds, and a range that has passed.
fn check_backfill(
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    max: u32,
    now: DateTime<Utc>,
) -> Result<(), SchedulerError> {
    if !(1..=MAX_BACKFILL).contains(&max) {
        return Err(SchedulerError::Value(format!(
            "max must be between 1 and {MAX_BACKFILL}, got {max}"
        )));
    }
    if end < start {
        return Err(SchedulerError::Value(format!(
            "end {end} is before start {start}"
        )));
    }
    if end > now {
        return Err(SchedulerError::Value(format!(
            "end {end} is in the future: a backfill runs occurrences that have passed"
        )));
    }
    Ok(())
}

/// The occurrences of `schedule`'s trigger in `[start, end]`, oldest first, at most `max`
/// (more is an error naming the bound). A backfill runs what the schedule would have run: not
/// the dates its calendars exclude.
fn backfilled_occurrences(
    schedule: &Schedule,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    max: u32,
) -> Result<Vec<DateTime<Utc>>, SchedulerError> {
    let trigger = schedule
        .trigger
        .compile_for(&schedule.id)
        .map_err(|e| SchedulerError::Value(e.to_string()))?;
    let mut occurrences = Vec::new();
    let mut cursor = start.trunc_subsecs(3) - TimeDelta::milliseconds(1);
    while let Some(at) = trigger.next_included_after(cursor).filter(|at| *at <= end) {
        if occurrences.len() as u32 == max {
            return Err(SchedulerError::Value(format!(
                "the range holds more than max = {max} occurrences; narrow it or raise max \
                 (at most {MAX_BACKFILL})"
            )));
        }
        occurrences.push(at.trunc_subsecs(3));
        cursor = at;
    }
    Ok(occurrences)
}

pub(super) async fn list_runs(
    app: &App,
    extensions: &Extensions,
    schedule_id: &str,
    owner: &str,
    listing: Valid<RunQuery>,
) -> Result<RunPage, SchedulerError> {
    let limit = listing.page();
    let before = listing.before()?;
    let store = ledger_of(app, schedule_id, owner, extensions).await?;
    let filter = RunFilter {
        status: listing.status,
        since: listing.since,
        before,
        limit: limit + 1,
    };
    let mut runs = store
        .runs(schedule_id, &filter)
        .await
        .map_err(storage_error)?;
    let more = runs.len() > limit;
    runs.truncate(limit);
    let next_cursor = more
        .then(|| {
            runs.last().map(|run| {
                run.scheduled_time
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            })
        })
        .flatten();
    Ok(RunPage {
        runs: runs.iter().map(views::run).collect(),
        next_cursor,
    })
}

/// A ledger row for an occurrence of `schedule` started outside a claim.
fn run_of(
    schedule: &Schedule,
    jobstore: StoreName,
    at: DateTime<Utc>,
    status: RunStatus,
) -> RunRecord {
    RunRecord {
        schedule_id: schedule.id.clone(),
        scheduled_time: at,
        jobstore,
        owner: schedule.owner.clone(),
        target: schedule.target.clone(),
        policy: schedule.policy,
        status,
        detail: None,
        attempts: 0,
        claimed_at: at,
        lease_until: None,
        finished_at: None,
    }
}

/// The schedule `id` in whichever store holds it.
async fn find(app: &App, id: &str) -> Result<Option<Found>, SchedulerError> {
    for store in app.stores.all() {
        if let Some(schedule) = store.get(id).await.map_err(storage_error)? {
            return Ok(Some(Found {
                store: store.clone(),
                schedule,
            }));
        }
    }
    Ok(None)
}

/// The store holding the ledger rows of schedule `id`, once `owner` (or the admin token) may
/// read them: the schedule's; for a watch that has ended (its schedule gone with its end), the
/// `execution` store, where its attempts were; for a deleted schedule, the store whose ledger
/// still holds its runs (until retention removes them), read by the owner the rows carry.
async fn ledger_of(
    app: &App,
    id: &str,
    owner: &str,
    extensions: &Extensions,
) -> Result<Arc<dyn JobStore>, SchedulerError> {
    let caller = access::caller_of(extensions);
    access::acting_for(owner, caller).map_err(|_| Denied::out_of_scope(owner, caller))?;
    if let Some(found) = find(app, id).await? {
        authorize(&found.schedule, owner, extensions, Access::Read)?;
        return Ok(found.store);
    }
    let who = Who::of(owner, extensions);
    let watch = match app.stores.watches() {
        Some(watches) => watches.watch(id).await.map_err(storage_error)?,
        None => None,
    };
    if let Some(watch) = watch {
        access::owner(&watch.user_id, who).map_err(|denied| match denied {
            Denied::OutOfScope => Denied::out_of_scope(owner, who.caller),
            _ => SchedulerError::NotAuthorized(format!("watch '{id}' belongs to another user")),
        })?;
        return Ok(app.execution()?.clone());
    }
    for store in app.stores.all() {
        let newest = store
            .runs(id, &RunFilter::latest(1))
            .await
            .map_err(storage_error)?;
        let Some(run) = newest.first() else {
            continue;
        };
        access::runs_of_deleted(&run.owner, who).map_err(|denied| match denied {
            Denied::OutOfScope => Denied::out_of_scope(owner, who.caller),
            _ => SchedulerError::NotAuthorized(format!(
                "the runs of deleted schedule '{id}' belong to another owner"
            )),
        })?;
        return Ok(store.clone());
    }
    Err(not_found(id))
}

/// The schedule `id`, once `owner` (or the admin token) may do `access` with it.
async fn owned(
    app: &App,
    id: &str,
    owner: &str,
    extensions: &Extensions,
    access: Access,
) -> Result<Found, SchedulerError> {
    // An owner the client may not act for is refused whether the schedule exists or not.
    let caller = access::caller_of(extensions);
    access::acting_for(owner, caller).map_err(|_| Denied::out_of_scope(owner, caller))?;
    let found = find(app, id).await?.ok_or_else(|| not_found(id))?;
    authorize(&found.schedule, owner, extensions, access)?;
    Ok(found)
}

/// The general API's access rule ([`access::schedule`]) for a call acting for `owner`.
fn authorize(
    schedule: &Schedule,
    owner: &str,
    extensions: &Extensions,
    access: Access,
) -> Result<(), SchedulerError> {
    let who = Who::of(owner, extensions);
    access::schedule(schedule, who, access).map_err(|denied| denied.of_schedule(&schedule.id, who))
}

/// Checks a target given through the API: its fields, the services it names (configured
/// endpoints only, never a raw URL), and what those services say of it (a device runner
/// judges its job).
async fn check_target(app: &App, target: &Target) -> Result<(), SchedulerError> {
    let targets = &app.dispatcher.targets;
    targets::check(target, Origin::Api, &targets.configured).map_err(SchedulerError::Value)?;
    kind_of(target)
        .admit(targets)
        .await
        .map_err(SchedulerError::Value)
}

/// `base` with the fields a caller gave, checked.
fn merge_policy(base: Policy, given: Option<SchedulePolicy>) -> Result<Policy, SchedulerError> {
    let Some(given) = given else {
        return Ok(base);
    };
    let policy = Policy {
        coalesce: given.coalesce.unwrap_or(base.coalesce),
        misfire_grace_secs: given.misfire_grace_secs.or(base.misfire_grace_secs),
        overlap: given.overlap.unwrap_or(base.overlap),
        jitter_secs: given.jitter_secs.unwrap_or(base.jitter_secs),
        attempts: given.attempts.or(base.attempts),
        backoff_ms: given.backoff_ms.or(base.backoff_ms),
        placement_timeout_secs: given.placement_timeout_secs.or(base.placement_timeout_secs),
        alerts: given.alerts.unwrap_or(base.alerts),
    };
    policy.validate().map_err(SchedulerError::Value)?;
    Ok(policy)
}

/// The next fire after `now` of the trigger of schedule `id`, once it compiles.
fn next_run(
    trigger: &TriggerSpec,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, SchedulerError> {
    let compiled = trigger
        .compile_for(id)
        .map_err(|e| SchedulerError::Value(format!("trigger: {e}")))?;
    Ok(compiled.next_after(now))
}

/// The store a listing names, or every store when it names none.
pub(super) fn stores_named<'a>(
    app: &'a App,
    jobstore: Option<&str>,
) -> Result<Vec<&'a Arc<dyn JobStore>>, SchedulerError> {
    Ok(match jobstore {
        Some(name) => app
            .stores
            .get(jobstore_name(Some(name))?)
            .into_iter()
            .collect(),
        None => app.stores.all().collect(),
    })
}

fn jobstore_name(name: Option<&str>) -> Result<StoreName, SchedulerError> {
    match name.unwrap_or("execution") {
        "execution" => Ok(StoreName::Execution),
        "batched_notifications" => Ok(StoreName::BatchedNotifications),
        other => Err(SchedulerError::Value(format!(
            "jobstore '{other}' is not one of execution, batched_notifications"
        ))),
    }
}

fn not_found(id: &str) -> SchedulerError {
    SchedulerError::NotFound(format!("schedule '{id}' not found"))
}

fn already_exists(id: &str) -> SchedulerError {
    SchedulerError::AlreadyExists(format!(
        "a schedule with id '{id}' already exists; pass replace_existing to replace it"
    ))
}
