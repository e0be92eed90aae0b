//! `add_watch`, `list_watches`, `cancel_watch`, `cancel_workflow`: the agent's monitoring jobs.
//! A watch is stored with the schedule of its attempts (same id, a `watch` target), which the
//! engine fires like any other.

use std::sync::Arc;

use chrono::{SubsecRound, TimeDelta, Utc};
use jobstore::{
    Overlap, Policy, Schedule, StoreError, Target, WatchFilter, WatchStore, WatchTarget,
};
use scheduler_api::{
    Check, MAX_WATCH_ATTEMPTS, MAX_WATCH_INTERVAL_SECS, OnComplete, SchedulerError, Watch,
    WatchPage, WatchStatus,
};
use serde_json::Value;
use triggers::{TriggerKind, TriggerSpec};

use crate::app::{App, storage_error};
use scheduler_api::{check_id, page_limit};

/// The seed's defaults: a check every 30 s, 120 of them (about an hour).
const DEFAULT_INTERVAL_SECS: i64 = 30;
const DEFAULT_MAX_ATTEMPTS: i64 = 120;
/// The longest message kept.
const MAX_MESSAGE_LEN: usize = 10_000;

/// What `add_watch` was given.
pub(super) struct AddWatch {
    pub job_type: String,
    pub check_config: Value,
    pub on_success_message: String,
    pub on_failure_message: Option<String>,
    pub on_complete: Option<String>,
    pub workflow_id: Option<String>,
    pub interval_seconds: Option<i64>,
    pub max_attempts: Option<i64>,
    pub user_id: String,
    pub conversation_id: Option<String>,
    pub platform: Option<String>,
    pub platform_channel_id: Option<String>,
    pub platform_thread_id: Option<String>,
}

fn store(app: &App) -> Result<Arc<dyn WatchStore>, SchedulerError> {
    app.stores
        .watches()
        .ok_or_else(|| SchedulerError::Runtime("this scheduler keeps no watches".into()))
}

/// `add_watch`: checks what was given, then stores the watch and the schedule of its attempts
/// together and wakes the engine.
pub(super) async fn add(app: &App, request: AddWatch) -> Result<Watch, SchedulerError> {
    let Checked {
        check,
        on_complete,
        interval,
        max_attempts,
    } = checked(app, &request)?;
    let store = store(app)?;

    let now = Utc::now().trunc_subsecs(3);
    let id = uuid::Uuid::now_v7().to_string();
    // The first check one interval from now; a delay's only one after the delay.
    let (trigger, first) = match &check {
        Check::Delay { delay_seconds } => {
            let at = now + TimeDelta::seconds(*delay_seconds as i64);
            (TriggerKind::Once { at }, at)
        }
        _ => {
            let at = now + TimeDelta::seconds(interval);
            let every_secs = interval as u64;
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
        job_type: request.job_type,
        check_config: request.check_config,
        interval_seconds: interval as u64,
        max_attempts: max_attempts as u32,
        attempts: 0,
        on_success_message: request.on_success_message,
        on_failure_message: request.on_failure_message,
        on_complete,
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

/// A watch's settings as `add_watch` checked them.
struct Checked {
    check: Check,
    on_complete: OnComplete,
    interval: i64,
    max_attempts: i64,
}

/// Checks what `add_watch` was given, naming the field at fault: the ids, the check, how and
/// how often it runs, the messages, and that the configuration can carry it out (its module
/// or URL, the core for `resume_conversation`, Redis for a notification).
fn checked(app: &App, request: &AddWatch) -> Result<Checked, SchedulerError> {
    check_id("user_id", &request.user_id)?;
    for (field, value) in [
        ("workflow_id", &request.workflow_id),
        ("conversation_id", &request.conversation_id),
        ("platform", &request.platform),
        ("platform_channel_id", &request.platform_channel_id),
        ("platform_thread_id", &request.platform_thread_id),
    ] {
        if let Some(value) = value {
            check_id(field, value)?;
        }
    }
    let check =
        Check::parse(&request.job_type, &request.check_config).map_err(SchedulerError::Value)?;
    let on_complete = match request.on_complete.as_deref() {
        None => OnComplete::Notify,
        Some(text) => OnComplete::parse(text).map_err(SchedulerError::Value)?,
    };
    let interval = request.interval_seconds.unwrap_or(DEFAULT_INTERVAL_SECS);
    if !(1..=MAX_WATCH_INTERVAL_SECS as i64).contains(&interval) {
        return Err(SchedulerError::Value(format!(
            "interval_seconds must be 1 to {MAX_WATCH_INTERVAL_SECS}, got {interval}"
        )));
    }
    let max_attempts = request.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=i64::from(MAX_WATCH_ATTEMPTS)).contains(&max_attempts) {
        return Err(SchedulerError::Value(format!(
            "max_attempts must be 1 to {MAX_WATCH_ATTEMPTS}, got {max_attempts}"
        )));
    }
    for (field, message) in [
        ("on_success_message", Some(&request.on_success_message)),
        ("on_failure_message", request.on_failure_message.as_ref()),
    ] {
        if message.is_some_and(|m| m.len() > MAX_MESSAGE_LEN) {
            return Err(SchedulerError::Value(format!(
                "{field} is longer than {MAX_MESSAGE_LEN} bytes"
            )));
        }
    }
    if request.on_success_message.trim().is_empty() {
        return Err(SchedulerError::Value(
            "on_success_message must not be empty".into(),
        ));
    }
    app.dispatcher
        .targets
        .watches
        .admit(&check, on_complete)
        .map_err(SchedulerError::Value)?;
    if on_complete == OnComplete::Notify || request.platform.is_some() {
        // The notification (or the fallback to it) goes through Redis.
        if !app.dispatcher.targets.configured.redis {
            return Err(SchedulerError::Value(
                "watches notify through Redis: the scheduler needs redis.url in its \
                 configuration"
                    .into(),
            ));
        }
    }
    Ok(Checked {
        check,
        on_complete,
        interval,
        max_attempts,
    })
}

pub(super) async fn list(
    app: &App,
    status_filter: Option<String>,
    user_id: Option<String>,
    workflow_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<WatchPage, SchedulerError> {
    let status = match status_filter.as_deref() {
        None => None,
        Some(text) => Some(WatchStatus::parse(text).ok_or_else(|| {
            SchedulerError::Value(format!(
                "status_filter must be one of active, completed, failed, cancelled; got '{text}'"
            ))
        })?),
    };
    let limit = page_limit(limit, 100)?;
    let filter = WatchFilter {
        status,
        user_id,
        workflow_id,
        before_id: cursor,
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

pub(super) async fn cancel(app: &App, job_id: &str) -> Result<Watch, SchedulerError> {
    check_id("job_id", job_id)?;
    let watch = store(app)?
        .cancel_watch(job_id, Utc::now())
        .await
        .map_err(storage_error)?
        .ok_or_else(|| SchedulerError::NotFound(format!("watch '{job_id}' not found")))?;
    tracing::info!(watch_id = %job_id, status = watch.status.as_str(), "watch cancel asked");
    Ok(watch)
}

pub(super) async fn cancel_workflow(app: &App, workflow_id: &str) -> Result<u64, SchedulerError> {
    check_id("workflow_id", workflow_id)?;
    let cancelled = store(app)?
        .cancel_workflow(workflow_id, Utc::now())
        .await
        .map_err(storage_error)?;
    tracing::info!(%workflow_id, cancelled, "workflow's watches cancelled");
    Ok(cancelled)
}
