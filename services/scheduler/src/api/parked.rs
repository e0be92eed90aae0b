//! AutoGPT's `get_parked_jobs` and `reconcile_parked_jobs`: the schedules the engine parked
//! (paused with the reason it could not plan or dispatch them), and checking them again.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use jobstore::{JobStore, ListFilter, Page, Schedule};
use jsonrpsee::Extensions;
use scheduler_api::{Origin, SYSTEM_OWNER, SchedulerError};

use crate::api::access;
use crate::app::{App, storage_error};
use crate::audit::{self, Actor};
use crate::stores::Stores;
use crate::targets;

/// Paused schedules read per page while looking for the parked ones among them.
const PAGE: usize = 500;

/// The most ids `get_parked_jobs` answers per jobstore.
const MAX_LIMIT: u32 = 1_000_000;

/// Per jobstore, the ids of the schedules the engine parked, at most `limit` each.
pub(super) async fn list(
    app: &App,
    extensions: &Extensions,
    limit: Option<u32>,
) -> Result<BTreeMap<String, Vec<String>>, SchedulerError> {
    let limit = limit.unwrap_or(scheduler_api::PARKED_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(SchedulerError::Value(format!(
            "limit must be 1 to {MAX_LIMIT}, got {limit}"
        )));
    }
    let mut answer = BTreeMap::new();
    for store in app.stores.all() {
        let parked = parked(&app.stores, store, extensions, limit as usize).await?;
        let ids = parked.into_iter().map(|s| s.id).collect();
        answer.insert(store.jobstore().as_str().to_string(), ids);
    }
    Ok(answer)
}

/// Checks every parked schedule again: one whose trigger compiles and has a next occurrence,
/// and whose target the configuration serves, is resumed (from now, as a resume is); the
/// others stay parked, with the reason they still cannot be planned. Answers the resumed ids
/// per jobstore.
pub(super) async fn reconcile(
    app: &App,
    extensions: &Extensions,
) -> Result<BTreeMap<String, Vec<String>>, SchedulerError> {
    let actor = Actor::of(extensions);
    let mut answer = BTreeMap::new();
    for store in app.stores.all() {
        let mut resumed = Vec::new();
        for schedule in parked(&app.stores, store, extensions, usize::MAX).await? {
            match recheck(app, &schedule) {
                Ok(next_run_at) => {
                    let stored = store
                        .set_paused(&schedule.id, false, None, Some(next_run_at))
                        .await
                        .map_err(storage_error)?;
                    let jobstore = store.jobstore();
                    let after = stored.as_ref();
                    audit::schedule(
                        &app.stores,
                        &actor,
                        "resume",
                        jobstore,
                        Some(&schedule),
                        after,
                    )
                    .await;
                    tracing::info!(schedule_id = %schedule.id, "parked schedule resumed");
                    resumed.push(schedule.id);
                }
                Err(reason) if Some(&reason) != schedule.paused_reason.as_ref() => {
                    store
                        .set_paused(&schedule.id, true, Some(&reason), None)
                        .await
                        .map_err(storage_error)?;
                    tracing::warn!(schedule_id = %schedule.id, %reason, "parked schedule still cannot be planned");
                }
                Err(_) => {}
            }
        }
        if !resumed.is_empty() {
            app.wake.notify_one();
        }
        answer.insert(store.jobstore().as_str().to_string(), resumed);
    }
    Ok(answer)
}

/// The next run of a parked schedule if it can be planned again, else why not.
fn recheck(app: &App, schedule: &Schedule) -> Result<chrono::DateTime<Utc>, String> {
    let origin = match schedule.owner.as_str() {
        SYSTEM_OWNER => Origin::Configuration,
        _ => Origin::Api,
    };
    targets::check(&schedule.target, origin, &app.dispatcher.targets.configured)?;
    let trigger = schedule
        .trigger
        .compile_for(&schedule.id)
        .map_err(|e| format!("trigger: {e}"))?;
    trigger
        .next_after(Utc::now())
        .ok_or_else(|| "trigger: it has no occurrence after now".to_string())
}

/// The parked schedules of `store` a caller may see, at most `limit`: the paused ones that
/// carry a reason, read a page of paused schedules at a time.
async fn parked(
    stores: &Stores,
    store: &Arc<dyn JobStore>,
    extensions: &Extensions,
    limit: usize,
) -> Result<Vec<Schedule>, SchedulerError> {
    let owners = access::listing_scope_naming(None, extensions)?;
    let mut found = Vec::new();
    let mut after_id = None;
    loop {
        let filter = ListFilter {
            owners: owners.clone(),
            paused: Some(true),
            include_inactive: true,
            page: Some(Page {
                after_id: after_id.clone(),
                limit: PAGE,
            }),
            ..ListFilter::default()
        };
        let page = store.list(&filter).await.map_err(storage_error)?;
        let full = page.len() == PAGE;
        after_id = page.last().map(|s| s.id.clone());
        for schedule in page.into_iter().filter(|s| s.paused_reason.is_some()) {
            if audit::parked_by_engine(stores, &schedule)
                .await
                .map_err(storage_error)?
            {
                found.push(schedule);
            }
        }
        if found.len() >= limit {
            found.truncate(limit);
            return Ok(found);
        }
        if !full {
            return Ok(found);
        }
    }
}
