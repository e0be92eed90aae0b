//! `add_watch`, `list_watches`, `cancel_watch`, `cancel_workflow`: the agent's monitoring jobs.
//! A watch is stored with the schedule of its attempts (same id, a `watch` target), which the
//! engine fires like any other.

use std::sync::Arc;

use chrono::{SubsecRound, TimeDelta, Utc};
use jobstore::{
    Overlap, Policy, Schedule, StoreError, StoreName, Target, WatchFilter, WatchStore, WatchTarget,
};
use scheduler_api::{
    Check, NewWatch, OnComplete, SchedulerError, Valid, Watch, WatchPage, WatchQuery, WatchStatus,
    check_id,
};
use serde_json::{Value, json};
use triggers::{TriggerKind, TriggerSpec};

use jsonrpsee::Extensions;

use crate::api::access::{self, Denied};
use crate::app::{App, storage_error};
use crate::audit::{self, Actor};

fn store(app: &App) -> Result<Arc<dyn WatchStore>, SchedulerError> {
    app.stores
        .watches()
        .ok_or_else(|| SchedulerError::Runtime("this scheduler keeps no watches".into()))
}

/// `add_watch`: checks what the request needs of the configuration, then stores the watch
/// and the schedule of its attempts together and wakes the engine. The watch keeps
/// `check_config` as the caller wrote it.
pub(super) async fn add(
    app: &App,
    extensions: &Extensions,
    request: Valid<NewWatch>,
    check_config: Value,
) -> Result<Watch, SchedulerError> {
    let caller = access::caller_of(extensions);
    access::acting_for(&request.user_id, caller)
        .map_err(|_| Denied::out_of_scope(&request.user_id, caller))?;
    admit(app, &request)?;
    let store = store(app)?;
    let (interval, max_attempts) = (request.interval(), request.attempts());
    let request = request.into_inner();
    let check = request.check;
    let now = Utc::now().trunc_subsecs(3);
    let id = uuid::Uuid::now_v7().to_string();
    // The first check one interval from now; a delay's only one after the delay.
    let (trigger, first) = match &check {
        Check::Delay { delay_seconds } => {
            let at = now + TimeDelta::seconds(*delay_seconds as i64);
            (TriggerKind::Once { at }, at)
        }
        _ => {
            let at = now + TimeDelta::seconds(interval as i64);
            let every_secs = interval;
            let anchor = Some(at);
            (TriggerKind::Interval { every_secs, anchor }, at)
        }
    };
    let watch = Watch {
        id: id.clone(),
        user_id: request.user_id,
        conversation_id: request.conversation_id,
        platform: request.platform,
        platform_channel_id: request.platform_channel_id,
        platform_thread_id: request.platform_thread_id,
        workflow_id: request.workflow_id,
        job_type: check.kind().to_string(),
        check_config,
        interval_seconds: interval,
        max_attempts,
        attempts: 0,
        on_success_message: request.on_success_message,
        on_failure_message: request.on_failure_message,
        on_complete: request.on_complete,
        status: WatchStatus::Active,
        next_run_at: Some(first),
        created_at: now,
        completed_at: None,
        last_result: None,
        message: None,
        delivery: None,
    };
    let schedule = schedule_of(&watch, check, trigger);
    store
        .add_watch(&watch, &schedule)
        .await
        .map_err(|error| match error {
            StoreError::Conflict(id) => {
                SchedulerError::AlreadyExists(format!("a watch with id '{id}' already exists"))
            }
            other => storage_error(other),
        })?;
    app.wake.notify_one();
    let changes = json!({"watch": {"before": null, "after": &watch}});
    let key = (
        StoreName::Execution,
        watch.id.as_str(),
        watch.user_id.as_str(),
    );
    audit::record(&app.stores, &Actor::of(extensions), "create", key, changes).await;
    tracing::info!(watch_id = %watch.id, user_id = %watch.user_id, job_type = %watch.job_type, next_run_at = %first, "watch added");
    Ok(watch)
}

/// The schedule whose occurrences are a watch's attempts: one check per attempt (a check that
/// errs is an attempt), a check still running when the next is due not doubled, and after
/// downtime one check for all that were missed.
fn schedule_of(watch: &Watch, check: Check, trigger: TriggerKind) -> Schedule {
    Schedule {
        id: watch.id.clone(),
        name: format!("watch: {}", check.describe()),
        owner: watch.user_id.clone(),
        trigger: TriggerSpec::from(trigger),
        target: Target::Watch(WatchTarget { check }),
        policy: Policy {
            attempts: Some(1),
            overlap: Overlap::Skip,
            coalesce: true,
            ..Policy::default()
        },
        tags: watch.workflow_id.iter().cloned().collect(),
        paused: false,
        paused_reason: None,
        next_run_at: watch.next_run_at,
        created_at: watch.created_at,
    }
}

/// Checks that the configuration can carry out what a watch asks: its module or URL, the core
/// for `resume_conversation`, Redis for a notification.
fn admit(app: &App, request: &NewWatch) -> Result<(), SchedulerError> {
    app.dispatcher
        .targets
        .watches
        .admit(&request.check, request.on_complete)
        .map_err(SchedulerError::Value)?;
    if request.on_complete == OnComplete::Notify || request.platform.is_some() {
        // The notification (or the fallback to it) goes through Redis.
        if !app.dispatcher.targets.configured.redis {
            return Err(SchedulerError::Value(
                "watches notify through Redis: the scheduler needs redis.url in its \
                 configuration"
                    .into(),
            ));
        }
    }
    Ok(())
}

pub(super) async fn list(
    app: &App,
    extensions: &Extensions,
    query: Valid<WatchQuery>,
) -> Result<WatchPage, SchedulerError> {
    let limit = query.page();
    let query = query.into_inner();
    let users = access::listing_scope_naming(query.user_id.as_deref(), extensions)?;
    let filter = WatchFilter {
        status: query.status,
        user_id: query.user_id,
        users,
        workflow_id: query.workflow_id,
        before_id: query.cursor,
        limit,
    };
    let watches = store(app)?.watches(&filter).await.map_err(storage_error)?;
    let next_cursor = (watches.len() == limit)
        .then(|| watches.last().map(|w| w.id.clone()))
        .flatten();
    Ok(WatchPage {
        watches,
        next_cursor,
    })
}

pub(super) async fn cancel(
    app: &App,
    extensions: &Extensions,
    job_id: &str,
) -> Result<Watch, SchedulerError> {
    check_id("job_id", job_id)?;
    let store = store(app)?;
    let caller = access::caller_of(extensions);
    let before = store.watch(job_id).await.map_err(storage_error)?;
    if let Some(watch) = &before {
        access::acting_for(&watch.user_id, caller).map_err(|_| {
            SchedulerError::NotAuthorized(format!(
                "watch '{job_id}' belongs to a user client '{}' may not act for",
                caller.name()
            ))
        })?;
    }
    let watch = store
        .cancel_watch(job_id, Utc::now())
        .await
        .map_err(storage_error)?
        .ok_or_else(|| SchedulerError::NotFound(format!("watch '{job_id}' not found")))?;
    if let Some(before) = before.filter(|before| before.status != watch.status) {
        let changes = json!({"status": {"before": before.status, "after": watch.status}});
        let key = (StoreName::Execution, job_id, watch.user_id.as_str());
        audit::record(&app.stores, &Actor::of(extensions), "cancel", key, changes).await;
    }
    tracing::info!(watch_id = %job_id, status = watch.status.as_str(), "watch cancel asked");
    Ok(watch)
}

pub(super) async fn cancel_workflow(
    app: &App,
    extensions: &Extensions,
    workflow_id: &str,
) -> Result<u64, SchedulerError> {
    check_id("workflow_id", workflow_id)?;
    let store = store(app)?;
    let caller = access::caller_of(extensions);
    // The workflow's active watches: a scoped client cancels them only when every one is its
    // owners', and each cancelled one goes to the audit log.
    let active = WatchFilter {
        workflow_id: Some(workflow_id.to_string()),
        status: Some(WatchStatus::Active),
        limit: usize::MAX >> 1,
        ..WatchFilter::default()
    };
    let watches = store.watches(&active).await.map_err(storage_error)?;
    if let Some(other) = watches.iter().find(|w| !caller.may_act_for(&w.user_id)) {
        return Err(SchedulerError::NotAuthorized(format!(
            "workflow '{workflow_id}' has watch '{}' of a user client '{}' may not act for",
            other.id,
            caller.name()
        )));
    }
    let cancelled = store
        .cancel_workflow(workflow_id, Utc::now())
        .await
        .map_err(storage_error)?;
    let actor = Actor::of(extensions);
    for watch in &watches {
        let changes = json!({"status": {"before": "active", "after": "cancelled"}, "workflow_id": workflow_id});
        let key = (
            StoreName::Execution,
            watch.id.as_str(),
            watch.user_id.as_str(),
        );
        audit::record(&app.stores, &actor, "cancel", key, changes).await;
    }
    tracing::info!(%workflow_id, cancelled, "workflow's watches cancelled");
    Ok(cancelled)
}
