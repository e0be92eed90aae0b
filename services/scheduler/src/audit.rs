//! The audit log as the scheduler writes it: each change of a schedule or watch, recorded
//! once it is made, with who made it (the caller's client; `engine`, `config`, `import` for
//! the product itself) and the route it came through.

use chrono::Utc;
use jobstore::{Change, JobStore, RunRecord, Schedule, StoreError, StoreName};
use jsonrpsee::Extensions;
use serde_json::{Value, json};
use service_kit::auth::Caller;

use crate::stores::Stores;

/// Whether a paused schedule was parked by the engine (it could not plan or dispatch it)
/// rather than paused by a caller, who may give a reason too: the newest pause, park or
/// resume in the audit log says; without one (no audit log, or an older history), a pause with
/// a reason is taken for a park, since the engine always gives one.
pub(crate) async fn parked_by_engine(
    stores: &Stores,
    schedule: &Schedule,
) -> Result<bool, StoreError> {
    if !schedule.paused {
        return Ok(false);
    }
    if let Some(log) = stores.changes() {
        let filter = jobstore::ChangeFilter {
            schedule_id: Some(schedule.id.clone()),
            limit: 50,
            ..jobstore::ChangeFilter::default()
        };
        let changes = log.changes(&filter).await?;
        let newest = changes
            .iter()
            .find(|c| matches!(c.action.as_str(), "pause" | "park" | "resume"));
        if let Some(change) = newest {
            return Ok(change.action == "park");
        }
    }
    Ok(schedule.paused_reason.is_some())
}

/// The route of a call that reached the API's handlers through another surface than
/// JSON-RPC: the surface puts it in the call's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route(pub &'static str);

/// AutoGPT's routes (`POST /<method>`).
pub(crate) const AUTOGPT: Route = Route("autogpt");
/// The farm's REST API.
pub(crate) const FARM: Route = Route("farm");

/// Who made a change, and through which route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Actor {
    pub name: String,
    pub route: &'static str,
}

impl Actor {
    /// The caller of a call, by its client's name, and the route the call came through.
    pub(crate) fn of(extensions: &Extensions) -> Actor {
        Actor {
            name: Caller::of(extensions).name().to_string(),
            route: extensions.get::<Route>().map_or("jsonrpc", |route| route.0),
        }
    }

    /// The product itself: `engine`, `config` or `import`, which is its own route.
    pub(crate) fn product(name: &'static str) -> Actor {
        Actor {
            name: name.to_string(),
            route: name,
        }
    }
}

/// Records that `actor` did `action` to schedule `id` of `owner` in `jobstore`, `changes`
/// saying what. The change is made: a log that cannot be written is reported in the service's
/// log, and the call goes on.
pub(crate) async fn record(
    stores: &Stores,
    actor: &Actor,
    action: &str,
    (jobstore, id, owner): (StoreName, &str, &str),
    changes: Value,
) {
    let Some(log) = stores.changes() else {
        return;
    };
    let change = Change {
        seq: 0,
        at: Utc::now(),
        jobstore,
        schedule_id: id.to_string(),
        owner: owner.to_string(),
        actor: actor.name.clone(),
        route: actor.route.to_string(),
        action: action.to_string(),
        changes,
    };
    if let Err(error) = log.record_change(&change).await {
        tracing::error!(%error, schedule_id = %id, action, actor = %actor.name, "the audit log could not record a change");
    }
}

/// The creation of `schedule` by `actor`, for [`jobstore::Schedules::insert_recorded`], which
/// stores it in the same transaction as the schedule.
fn creation(actor: &Actor, jobstore: StoreName, schedule: &Schedule) -> Change {
    Change {
        seq: 0,
        at: Utc::now(),
        jobstore,
        schedule_id: schedule.id.clone(),
        owner: schedule.owner.clone(),
        actor: actor.name.clone(),
        route: actor.route.to_string(),
        action: "create".to_string(),
        changes: Change::diff(None, Some(schedule)),
    }
}

/// Stores a new schedule with the record of its creation by `actor`: in one transaction where
/// the store lives in the audit log's database, so the log misses no creation; an in-memory
/// jobstore's creation is recorded once it is stored.
pub(crate) async fn insert_created(
    stores: &Stores,
    store: &dyn JobStore,
    actor: &Actor,
    schedule: &Schedule,
) -> Result<(), StoreError> {
    let jobstore = store.jobstore();
    if store.backend() == "memory" {
        store.insert(schedule).await?;
        self::schedule(stores, actor, "create", jobstore, None, Some(schedule)).await;
        return Ok(());
    }
    store
        .insert_recorded(schedule, &creation(actor, jobstore, schedule))
        .await
}

/// Records a change of `schedule` from `before` to `after` (either absent: created, deleted).
pub(crate) async fn schedule(
    stores: &Stores,
    actor: &Actor,
    action: &str,
    jobstore: StoreName,
    before: Option<&Schedule>,
    after: Option<&Schedule>,
) {
    let Some(schedule) = after.or(before) else {
        return;
    };
    let changes = Change::diff(before, after);
    let key = (jobstore, schedule.id.as_str(), schedule.owner.as_str());
    record(stores, actor, action, key, changes).await;
}

/// Records that the engine parked a schedule: its run `run` failed with the reason.
pub(crate) async fn parked(stores: &Stores, run: &RunRecord) {
    let changes = json!({
        "paused": {"before": false, "after": true},
        "paused_reason": {"before": null, "after": run.detail},
    });
    let key = (run.jobstore, run.schedule_id.as_str(), run.owner.as_str());
    record(stores, &Actor::product("engine"), "park", key, changes).await;
}
