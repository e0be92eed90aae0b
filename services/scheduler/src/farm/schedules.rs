//! The farm's schedules: its recurring device jobs, in its field names, each route a call of
//! the general API's handler with typed values (the handler checks, authorizes and stores, as
//! for any caller).

use std::time::Duration;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, FixedOffset, Utc};
use jsonrpsee::Extensions;
use scheduler_api::{
    DeviceJobTarget, DeviceSelector, NewSchedule, Schedule, ScheduleQuery, ScheduleRun,
    ScheduleUpdate, Target, TriggerKind, TriggerSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use service_kit::auth::Caller;

use super::{Answer, Farm, Refusal, error};

/// The farm's schedule routes.
pub(super) fn routes() -> Router<Farm> {
    Router::new()
        .route("/api/schedules", get(list).post(create))
        .route("/api/schedules/{id}", put(update).delete(delete))
        .route("/api/schedules/{id}/toggle", post(toggle))
        .route("/api/schedules/{id}/run-now", post(run_now))
}
use crate::api::general;

/// A schedule as the farm writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FarmSchedule {
    name: Option<String>,
    job_type: Option<String>,
    /// A phone's serial, or `any` with `tags`: each run on a phone of any runner that carries
    /// them.
    device: Option<String>,
    tags: Option<Vec<String>>,
    interval_minutes: Option<u64>,
    daily_times: Option<Vec<String>>,
    params: Option<Map<String, Value>>,
    max_duration_minutes: Option<u64>,
    priority: Option<u8>,
    enabled: Option<bool>,
}

/// A schedule as the farm reads it.
#[derive(Debug, Serialize)]
struct FarmView {
    id: String,
    name: String,
    job_type: String,
    device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
    interval_minutes: Option<u64>,
    daily_times: Option<Vec<String>>,
    params: Map<String, Value>,
    max_duration_minutes: Option<u64>,
    priority: u8,
    enabled: bool,
    next_run: Option<DateTime<FixedOffset>>,
    last_run: Option<ScheduleRun>,
    created_at: DateTime<Utc>,
}

/// The farm's word for a schedule whose runs go to any phone with its `tags`.
const ANY: &str = "any";

/// The farm's whole-number fields and the values each takes (a job runs at most 30 days on
/// the runner; priorities are the runner's 1 to 5).
const WHOLE_NUMBERS: [(&str, u64, u64); 3] = [
    ("interval_minutes", 1, triggers::MAX_INTERVAL_SECS / 60),
    ("max_duration_minutes", 1, 30 * 24 * 60),
    ("priority", 1, 5),
];

fn body(text: &[u8]) -> Result<FarmSchedule, Refusal> {
    let bad = |message: String| error(StatusCode::BAD_REQUEST, message);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("a JSON object is required".into()));
    }
    let given: Value =
        serde_json::from_slice(text).map_err(|e| bad(format!("invalid schedule: {e}")))?;
    for (field, min, max) in WHOLE_NUMBERS {
        let value = &given[field];
        let within = value.as_u64().is_some_and(|n| (min..=max).contains(&n));
        if !value.is_null() && !within {
            return Err(bad(format!(
                "{field} must be a whole number from {min} to {max}, got {value}"
            )));
        }
    }
    serde_json::from_value(given).map_err(|e| bad(format!("invalid schedule: {e}")))
}

/// A general schedule's device job, or `None` for one that is not a farm schedule.
fn device_job(schedule: &Schedule) -> Option<&DeviceJobTarget> {
    match &schedule.target {
        Target::DeviceJob(job) => Some(job),
        _ => None,
    }
}

/// A general schedule in the farm's shape, or `None` for one that is not a farm schedule.
fn farm_view(schedule: &Schedule) -> Option<FarmView> {
    let job = device_job(schedule)?;
    let (interval_minutes, daily_times) = match &schedule.trigger.kind {
        TriggerKind::Interval { every_secs, .. } => (Some(every_secs / 60), None),
        TriggerKind::DailyTimes { times, .. } => (None, Some(times.clone())),
        _ => (None, None),
    };
    let max_duration_minutes = job
        .max_duration
        .as_deref()
        .and_then(|text| {
            humantime::parse_duration(text)
                .ok()
                .or_else(|| text.parse::<u64>().ok().map(Duration::from_secs))
        })
        .map(|d| d.as_secs().div_ceil(60));
    Some(FarmView {
        id: schedule.id.clone(),
        name: schedule.name.clone(),
        job_type: job.job_type.clone(),
        device: match &job.select {
            Some(_) => Some(ANY.into()),
            None => job.device.clone(),
        },
        tags: job.select.as_ref().map(|select| select.tags.clone()),
        interval_minutes,
        daily_times,
        params: job.params.clone(),
        max_duration_minutes,
        priority: job.priority,
        enabled: !schedule.paused,
        next_run: schedule.next_run_time,
        last_run: schedule.last_run.clone(),
        created_at: schedule.created_at,
    })
}

/// A farm schedule's view as an answer.
fn shown(status: StatusCode, schedule: &Schedule) -> Answer {
    Ok((status, Json(json!(farm_view(schedule)))))
}

/// The extensions of a call of the general API's handlers made by `caller`.
fn as_caller(caller: Caller) -> Extensions {
    let mut extensions = Extensions::new();
    extensions.insert(caller);
    extensions.insert(crate::audit::FARM);
    extensions
}

impl Farm {
    /// The trigger and target of `given`, over `current` (a farm schedule as stored) for an
    /// update.
    async fn plan(
        &self,
        given: &FarmSchedule,
        current: Option<&Schedule>,
    ) -> Result<(TriggerSpec, DeviceJobTarget), Refusal> {
        self.runners()?;
        let bad = |message: &str| error(StatusCode::BAD_REQUEST, message);
        let trigger = match (&given.interval_minutes, &given.daily_times) {
            (Some(_), Some(_)) => {
                return Err(bad("give interval_minutes or daily_times, not both"));
            }
            (Some(minutes), None) => TriggerSpec::from(TriggerKind::Interval {
                every_secs: minutes.saturating_mul(60),
                anchor: None,
            }),
            (None, Some(times)) if times.is_empty() => {
                return Err(bad("daily_times must hold at least one time"));
            }
            (None, Some(times)) => TriggerSpec::from(TriggerKind::DailyTimes {
                times: times.clone(),
                timezone: self.timezone.clone(),
            }),
            (None, None) => match current {
                Some(current) => current.trigger.clone(),
                None => return Err(bad("interval_minutes or daily_times is required")),
            },
        };
        let old = current.and_then(device_job);
        let job_type = given
            .job_type
            .clone()
            .or_else(|| old.map(|job| job.job_type.clone()))
            .ok_or_else(|| bad("job_type is required"))?;
        let old_place = old.map(|job| match &job.select {
            Some(select) => (ANY.to_string(), Some(select.tags.clone())),
            None => (job.device.clone().unwrap_or_default(), None),
        });
        let device = given
            .device
            .clone()
            .or_else(|| old_place.as_ref().map(|(device, _)| device.clone()))
            .ok_or_else(|| bad("device is required"))?;
        let tags = given
            .tags
            .clone()
            .or_else(|| old_place.and_then(|(_, tags)| tags));
        let (runner, device, select) = match (device.as_str(), tags) {
            (ANY, Some(tags)) => (
                String::new(),
                None,
                Some(DeviceSelector { tags, runner: None }),
            ),
            (ANY, None) => return Err(bad("device \"any\" needs tags: the phones it may run on")),
            (_, Some(_)) => {
                return Err(bad(
                    "tags go with device \"any\"; a named device needs none",
                ));
            }
            (_, None) => {
                // An update keeps the runner of a phone that stays.
                let kept = old
                    .filter(|job| job.device.as_deref() == Some(device.as_str()))
                    .map(|job| job.runner.clone());
                let runner = match kept {
                    Some(runner) if !runner.is_empty() => runner,
                    _ => self.runner_of_phone(&device).await?,
                };
                (runner, Some(device), None)
            }
        };
        let target = DeviceJobTarget {
            runner,
            device,
            pool: None,
            select,
            moves: 0,
            job_type,
            params: given
                .params
                .clone()
                .or_else(|| old.map(|job| job.params.clone()))
                .unwrap_or_default(),
            priority: given
                .priority
                .or_else(|| old.map(|job| job.priority))
                .unwrap_or(5),
            max_duration: given
                .max_duration_minutes
                .map(|minutes| format!("{minutes}m"))
                .or_else(|| old.and_then(|job| job.max_duration.clone())),
        };
        Ok((trigger, target))
    }

    /// Pauses or resumes `schedule` so that it is as `enabled` says; the schedule as it is
    /// then.
    async fn enable(
        &self,
        calls: &Extensions,
        schedule: Schedule,
        enabled: bool,
    ) -> Result<Schedule, Refusal> {
        if schedule.paused != enabled {
            return Ok(schedule);
        }
        let pause = (!enabled).then(|| Some("disabled".to_string()));
        Ok(general::set_paused(&self.app, calls, &schedule.id, &self.owner, pause).await?)
    }

    /// Farm schedule `id` as stored (any other schedule is not found).
    async fn current(&self, calls: &Extensions, id: &str) -> Result<Schedule, Refusal> {
        let schedule = general::get(&self.app, calls, id, &self.owner).await?;
        if device_job(&schedule).is_none() {
            return Err(error(
                StatusCode::NOT_FOUND,
                format!("schedule '{id}' is not a farm schedule"),
            ));
        }
        Ok(schedule)
    }
}

async fn list(State(farm): State<Farm>, Extension(caller): Extension<Caller>) -> Answer {
    let calls = &as_caller(caller);
    let mut found = Vec::new();
    let mut cursor = None;
    loop {
        let listing = ScheduleQuery {
            owner: Some(farm.owner.clone()),
            target_type: Some("device_job".into()),
            limit: Some(scheduler_api::MAX_LIMIT),
            cursor: cursor.take(),
            ..ScheduleQuery::default()
        }
        .validate()?;
        let page = general::list(&farm.app, calls, listing).await?;
        found.extend(page.schedules.iter().filter_map(farm_view));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    Ok((StatusCode::OK, Json(json!(found))))
}

async fn create(
    State(farm): State<Farm>,
    Extension(caller): Extension<Caller>,
    text: axum::body::Bytes,
) -> Answer {
    let calls = &as_caller(caller);
    let given = body(&text)?;
    let (trigger, target) = farm.plan(&given, None).await?;
    let name = given.name.clone().unwrap_or_else(|| {
        let device = target.device.as_deref().unwrap_or("?");
        format!("{} on {device}", target.job_type)
    });
    let request = NewSchedule {
        name: Some(name),
        tags: vec!["farm".into()],
        ..NewSchedule::new(farm.owner.clone(), trigger, Target::DeviceJob(target))
    }
    .validate()?;
    let mut schedule = general::create(&farm.app, calls, request).await?;
    if given.enabled == Some(false) {
        schedule = farm.enable(calls, schedule, false).await?;
    }
    shown(StatusCode::CREATED, &schedule)
}

async fn update(
    State(farm): State<Farm>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    text: axum::body::Bytes,
) -> Answer {
    let calls = &as_caller(caller);
    let given = body(&text)?;
    let stored = farm.current(calls, &id).await?;
    let (trigger, target) = farm.plan(&given, Some(&stored)).await?;
    let changes_trigger = given.interval_minutes.is_some() || given.daily_times.is_some();
    let update = ScheduleUpdate {
        name: given.name.clone(),
        trigger: changes_trigger.then_some(trigger),
        target: Some(Target::DeviceJob(target)),
        ..ScheduleUpdate::default()
    }
    .validate()?;
    let mut schedule = general::update(&farm.app, calls, &id, &farm.owner, update).await?;
    if let Some(enabled) = given.enabled {
        schedule = farm.enable(calls, schedule, enabled).await?;
    }
    shown(StatusCode::OK, &schedule)
}

async fn delete(
    State(farm): State<Farm>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let calls = &as_caller(caller);
    farm.current(calls, &id).await?;
    let deleted = general::delete(&farm.app, calls, &id, &farm.owner).await?;
    Ok((
        StatusCode::OK,
        Json(json!({"deleted": farm_view(&deleted)})),
    ))
}

async fn toggle(
    State(farm): State<Farm>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let calls = &as_caller(caller);
    let stored = farm.current(calls, &id).await?;
    let enabled = stored.paused;
    let schedule = farm.enable(calls, stored, enabled).await?;
    shown(StatusCode::OK, &schedule)
}

async fn run_now(
    State(farm): State<Farm>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let calls = &as_caller(caller);
    farm.current(calls, &id).await?;
    let run = general::trigger(&farm.app, calls, &id, &farm.owner).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(run))))
}
