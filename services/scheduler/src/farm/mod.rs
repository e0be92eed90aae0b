//! The phone farm's REST API, served on the scheduler's port: `/api/schedules` (its recurring
//! device jobs, with the farm's field names) as thin routes over the general schedule API, and
//! `/api/scheduler/*` forwarded to the farm's device runner. Auth is the rest of the API's.
//!
//! A farm schedule is a general schedule of owner `farm.owner` whose target is a `device_job`
//! on `farm.runner`: `interval_minutes` is an `interval` trigger, `daily_times` a `daily_times`
//! trigger in `farm.timezone`, `enabled = false` a paused schedule.

use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient, RunnerError};
use jsonrpsee::RpcModule;
use jsonrpsee::core::server::MethodsError;
use scheduler_api::{SchedulerError, codes};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use service_kit::auth::Caller;

use crate::autogpt::routes::ObjectParams;
use crate::config::Config;

#[derive(Clone)]
struct Farm {
    module: RpcModule<()>,
    owner: String,
    timezone: String,
    /// The runner's name and a client for it; `None` without a device runner.
    runner: Option<(String, DeviceRunnerClient)>,
}

/// The farm's routes, calling the JSON-RPC `module` as the API's own routes do.
pub(crate) fn routes(module: RpcModule<()>, config: &Config) -> anyhow::Result<Router> {
    let farm = &config.farm;
    let runner = match farm.runner_name(config) {
        Some(name) => {
            let runner = &config.device_runners[name];
            let client = DeviceRunnerClient::with_options(
                &runner.url,
                runner.timeout,
                runner.token.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("device_runners.{name}: {e}"))?;
            Some((name.to_string(), client))
        }
        None => None,
    };
    let state = Farm {
        module,
        owner: farm.owner.clone(),
        timezone: farm.timezone.clone(),
        runner,
    };
    Ok(Router::new()
        .route("/api/schedules", get(list).post(create))
        .route("/api/schedules/{id}", put(update).delete(delete))
        .route("/api/schedules/{id}/toggle", post(toggle))
        .route("/api/schedules/{id}/run-now", post(run_now))
        .route("/api/scheduler/status", get(runner_status))
        .route("/api/scheduler/queue", get(queue))
        .route("/api/scheduler/queue/{id}/logs", get(logs))
        .route("/api/scheduler/queue/{id}/logs/follow", get(follow_logs))
        .route("/api/scheduler/queue/{id}/kill", post(kill))
        .route("/api/scheduler/runs/{id}/restart", post(restart))
        .route("/api/scheduler/history", get(history))
        .route("/api/scheduler/history/{id}/logs", get(logs))
        .route("/api/scheduler/timeline", get(timeline))
        .with_state(state))
}

/// A schedule as the farm writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FarmSchedule {
    name: Option<String>,
    job_type: Option<String>,
    device: Option<String>,
    interval_minutes: Option<u64>,
    daily_times: Option<Vec<String>>,
    params: Option<Map<String, Value>>,
    max_duration_minutes: Option<u64>,
    priority: Option<u8>,
    enabled: Option<bool>,
}

/// An answer: 2xx with JSON, or a [`Refusal`].
type Answer = Result<(StatusCode, Json<Value>), Refusal>;

/// An error status with `{"error": message}`.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

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

impl Farm {
    async fn call(&self, caller: Caller, method: &str, params: Value) -> Result<Value, Refusal> {
        let Value::Object(params) = params else {
            return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "bad call"));
        };
        let mut module = self.module.clone();
        module.extensions_mut().insert(caller);
        match module.call::<_, Value>(method, ObjectParams(params)).await {
            Ok(result) => Ok(result),
            Err(MethodsError::JsonRpc(e)) => {
                let status = match SchedulerError::from_error_object(&e).map(|e| e.code()) {
                    Some(codes::VALUE_ERROR) => StatusCode::BAD_REQUEST,
                    Some(codes::NOT_FOUND) => StatusCode::NOT_FOUND,
                    Some(codes::NOT_AUTHORIZED) => StatusCode::FORBIDDEN,
                    Some(codes::ALREADY_EXISTS) => StatusCode::CONFLICT,
                    Some(codes::UNAUTHORIZED) => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                Err(error(status, e.message()))
            }
            Err(other) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())),
        }
    }

    fn runner(&self) -> Result<&(String, DeviceRunnerClient), Refusal> {
        self.runner.as_ref().ok_or_else(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no device runner: configure [device_runners.<name>] (and farm.runner when \
                 there are several)",
            )
        })
    }

    /// The trigger and target of `given`, over `current` (a farm schedule as stored) for an
    /// update.
    fn plan(
        &self,
        given: &FarmSchedule,
        current: Option<&Value>,
    ) -> Result<(Value, Value), Refusal> {
        let (runner, _) = self.runner()?;
        let bad = |message: String| error(StatusCode::BAD_REQUEST, message);
        let trigger = match (&given.interval_minutes, &given.daily_times) {
            (Some(_), Some(_)) => {
                return Err(bad("give interval_minutes or daily_times, not both".into()));
            }
            (Some(minutes), None) => {
                json!({"type": "interval", "every_secs": minutes.saturating_mul(60)})
            }
            (None, Some(times)) if times.is_empty() => {
                return Err(bad("daily_times must hold at least one time".into()));
            }
            (None, Some(times)) => {
                json!({"type": "daily_times", "times": times, "timezone": self.timezone})
            }
            (None, None) => match current {
                Some(current) => current["trigger"].clone(),
                None => {
                    return Err(bad("interval_minutes or daily_times is required".into()));
                }
            },
        };
        let old = current.map(|c| &c["target"]);
        let pick = |given: Option<Value>, field: &str| -> Option<Value> {
            given.or_else(|| old.map(|t| t[field].clone()).filter(|v| !v.is_null()))
        };
        let job_type = pick(given.job_type.clone().map(Value::from), "job_type")
            .ok_or_else(|| bad("job_type is required".into()))?;
        let device = pick(given.device.clone().map(Value::from), "device")
            .ok_or_else(|| bad("device is required".into()))?;
        let mut target = json!({
            "type": "device_job",
            "runner": runner,
            "device": device,
            "job_type": job_type,
            "params": pick(given.params.clone().map(Value::Object), "params").unwrap_or(json!({})),
            "priority": pick(given.priority.map(Value::from), "priority").unwrap_or(json!(5)),
        });
        let minutes = given
            .max_duration_minutes
            .map(|m| Value::from(format!("{m}m")));
        if let Some(duration) = pick(minutes, "max_duration") {
            target["max_duration"] = duration;
        }
        Ok((trigger, target))
    }

    /// Pauses or resumes `id` so that it is as `enabled` says; the schedule as it is then.
    async fn enable(
        &self,
        caller: Caller,
        id: &str,
        enabled: bool,
        schedule: Value,
    ) -> Result<Value, Refusal> {
        if schedule["paused"].as_bool() == Some(!enabled) {
            return Ok(schedule);
        }
        let (method, reason) = if enabled {
            ("resume_schedule", Value::Null)
        } else {
            ("pause_schedule", json!("disabled"))
        };
        let params = json!({"id": id, "owner": self.owner, "reason": reason});
        self.call(caller, method, params).await
    }
}

/// A general schedule in the farm's shape, or `None` for one that is not a farm schedule.
fn farm_view(schedule: &Value) -> Option<Value> {
    let target = &schedule["target"];
    if target["type"] != "device_job" {
        return None;
    }
    let trigger = &schedule["trigger"];
    let interval_minutes = (trigger["type"] == "interval")
        .then(|| trigger["every_secs"].as_u64().map(|s| s / 60))
        .flatten();
    let daily_times = (trigger["type"] == "daily_times").then(|| trigger["times"].clone());
    let max_duration_minutes = target["max_duration"]
        .as_str()
        .and_then(|text| {
            humantime::parse_duration(text)
                .ok()
                .or_else(|| text.parse::<u64>().ok().map(Duration::from_secs))
        })
        .map(|d| d.as_secs().div_ceil(60));
    Some(json!({
        "id": schedule["id"],
        "name": schedule["name"],
        "job_type": target["job_type"],
        "device": target.get("device").cloned().unwrap_or(Value::Null),
        "interval_minutes": interval_minutes,
        "daily_times": daily_times,
        "params": target["params"],
        "max_duration_minutes": max_duration_minutes,
        "priority": target["priority"],
        "enabled": !schedule["paused"].as_bool().unwrap_or(false),
        "next_run": schedule["next_run_time"],
        "last_run": schedule.get("last_run").cloned().unwrap_or(Value::Null),
        "created_at": schedule["created_at"],
    }))
}

async fn list(State(farm): State<Farm>, Extension(caller): Extension<Caller>) -> Answer {
    let mut found = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let params = json!({"owner": farm.owner, "target_type": "device_job", "limit": 1000,
                            "cursor": cursor});
        let page = farm.call(caller, "list_schedules", params).await?;
        if let Some(schedules) = page["schedules"].as_array() {
            found.extend(schedules.iter().filter_map(farm_view));
        }
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    Ok((StatusCode::OK, Json(Value::Array(found))))
}

async fn create(
    State(farm): State<Farm>,
    Extension(caller): Extension<Caller>,
    text: axum::body::Bytes,
) -> Answer {
    let given = body(&text)?;
    let (trigger, target) = farm.plan(&given, None)?;
    let name = given.name.clone().unwrap_or_else(|| {
        format!(
            "{} on {}",
            target["job_type"].as_str().unwrap_or("job"),
            target["device"].as_str().unwrap_or("?")
        )
    });
    let params = json!({"owner": farm.owner, "name": name, "trigger": trigger, "target": target,
                        "tags": ["farm"]});
    let mut schedule = farm.call(caller, "create_schedule", params).await?;
    if given.enabled == Some(false) {
        let id = schedule["id"].as_str().unwrap_or_default().to_string();
        schedule = farm.enable(caller, &id, false, schedule).await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(farm_view(&schedule).unwrap_or_default()),
    ))
}

async fn current(farm: &Farm, caller: Caller, id: &str) -> Result<Value, Refusal> {
    let schedule = farm
        .call(
            caller,
            "get_schedule",
            json!({"id": id, "owner": farm.owner}),
        )
        .await?;
    if farm_view(&schedule).is_none() {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("schedule '{id}' is not a farm schedule"),
        ));
    }
    Ok(schedule)
}

async fn update(
    State(farm): State<Farm>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    text: axum::body::Bytes,
) -> Answer {
    let given = body(&text)?;
    let stored = current(&farm, caller, &id).await?;
    let (trigger, target) = farm.plan(&given, Some(&stored))?;
    let changes_trigger = given.interval_minutes.is_some() || given.daily_times.is_some();
    let params = json!({"id": id, "owner": farm.owner, "name": given.name,
                        "trigger": if changes_trigger { trigger } else { Value::Null },
                        "target": target});
    let mut schedule = farm.call(caller, "update_schedule", params).await?;
    if let Some(enabled) = given.enabled {
        schedule = farm.enable(caller, &id, enabled, schedule).await?;
    }
    Ok((
        StatusCode::OK,
        Json(farm_view(&schedule).unwrap_or_default()),
    ))
}

/// Calls `method` of the general API on farm schedule `id` (any other schedule is not found).
async fn on_farm_schedule(
    farm: &Farm,
    caller: Caller,
    id: &str,
    method: &str,
) -> Result<Value, Refusal> {
    current(farm, caller, id).await?;
    let params = json!({"id": id, "owner": farm.owner});
    farm.call(caller, method, params).await
}

async fn delete(
    State(farm): State<Farm>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let schedule = on_farm_schedule(&farm, caller, &id, "delete_schedule").await?;
    let deleted = json!({"deleted": farm_view(&schedule)});
    Ok((StatusCode::OK, Json(deleted)))
}

async fn toggle(
    State(farm): State<Farm>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let stored = current(&farm, caller, &id).await?;
    let enabled = stored["paused"].as_bool().unwrap_or(false);
    let schedule = farm.enable(caller, &id, enabled, stored).await?;
    Ok((
        StatusCode::OK,
        Json(farm_view(&schedule).unwrap_or_default()),
    ))
}

async fn run_now(
    State(farm): State<Farm>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let run = on_farm_schedule(&farm, caller, &id, "trigger_schedule").await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// A runner's answer as the farm's API gives it.
fn forwarded<T: Serialize>(result: Result<T, jsonrpsee::core::ClientError>) -> Answer {
    match result.map_err(device_runner_client::Error::from) {
        Ok(value) => Ok((StatusCode::OK, Json(json!(value)))),
        Err(device_runner_client::Error::Runner(e)) => {
            let status = match e {
                RunnerError::Value(_) => StatusCode::BAD_REQUEST,
                RunnerError::NotFound(_) => StatusCode::NOT_FOUND,
                RunnerError::Conflict(_) => StatusCode::CONFLICT,
                RunnerError::Unauthorized(_) | RunnerError::Runtime(_) => StatusCode::BAD_GATEWAY,
            };
            Err(error(status, e.to_string()))
        }
        Err(e) => Err(error(
            StatusCode::BAD_GATEWAY,
            format!("the device runner: {e}"),
        )),
    }
}

async fn runner_status(State(farm): State<Farm>) -> Answer {
    forwarded(farm.runner()?.1.rpc().get_status().await)
}

async fn queue(State(farm): State<Farm>) -> Answer {
    forwarded(farm.runner()?.1.rpc().list_queue(None).await)
}

#[derive(Deserialize)]
struct LogQuery {
    offset: Option<u64>,
    limit: Option<u64>,
}

async fn logs(
    State(farm): State<Farm>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Answer {
    forwarded(farm.runner()?.1.rpc().get_logs(id, q.offset, q.limit).await)
}

/// A job's log from `offset`, followed while the job runs: the runner's subscription, as
/// one JSON chunk per line (`{"offset", "next_offset", "data", "eof"}`), ending after the
/// chunk that says `eof`. A failure after the first byte is a last line `{"error": …}`.
async fn follow_logs(
    State(farm): State<Farm>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, Refusal> {
    let follower = farm
        .runner()?
        .1
        .follow_logs(&id, q.offset.unwrap_or(0))
        .await
        .map_err(|e| match e {
            device_runner_client::Error::Runner(RunnerError::NotFound(m)) => {
                error(StatusCode::NOT_FOUND, m)
            }
            other => error(
                StatusCode::BAD_GATEWAY,
                format!("the device runner: {other}"),
            ),
        })?;
    let lines = futures::stream::unfold(Some(follower), |follower| async move {
        let mut follower = follower?;
        let (line, more) = match follower.next().await {
            Some(Ok(chunk)) => (json!(chunk), !chunk.eof),
            Some(Err(e)) => (json!({"error": format!("the device runner: {e}")}), false),
            None => return None,
        };
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        let next = more.then_some(follower);
        Some((Ok::<_, std::convert::Infallible>(bytes), next))
    });
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/x-ndjson"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

async fn kill(State(farm): State<Farm>, Path(id): Path<String>) -> Answer {
    forwarded(farm.runner()?.1.rpc().kill_job(id).await)
}

async fn restart(State(farm): State<Farm>, Path(id): Path<String>) -> Answer {
    forwarded(farm.runner()?.1.rpc().restart_run(id).await)
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<i64>,
    device: Option<String>,
    status: Option<String>,
    job_type: Option<String>,
    before: Option<String>,
}

async fn history(State(farm): State<Farm>, Query(q): Query<HistoryQuery>) -> Answer {
    let rpc = farm.runner()?.1.rpc();
    forwarded(
        rpc.list_runs(q.device, q.status, q.job_type, q.limit, q.before)
            .await,
    )
}

#[derive(Deserialize)]
struct TimelineQuery {
    hours: Option<f64>,
}

async fn timeline(State(farm): State<Farm>, Query(q): Query<TimelineQuery>) -> Answer {
    forwarded(farm.runner()?.1.rpc().get_timeline(q.hours).await)
}
