//! The phone farm's REST API, served on the scheduler's port: `/api/schedules` (its recurring
//! device jobs, with the farm's field names) as thin routes over the general schedule API's
//! handlers, called with typed values ([`schedules`]), and `/api/scheduler/*` forwarded to the
//! device runners ([`runner`]): every runner's status, queue, history and timeline merged,
//! each device and job with its runner, and a job's routes sent to the runner that has it.
//! Auth is the rest of the API's; a client must be allowed to act for `farm.owner`.
//!
//! A farm schedule is a general schedule of owner `farm.owner` whose target is a `device_job`
//! on the runner that has its phone (`farm.runner` when set), or placed by tags on any
//! (`"device": "any"`): `interval_minutes` is an `interval` trigger, `daily_times` a
//! `daily_times` trigger in `farm.timezone`, `enabled = false` a paused schedule.

mod runner;
mod schedules;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use device_runner_client::DeviceRunnerClient;
use scheduler_api::{SchedulerError, codes};
use serde_json::{Value, json};
use service_kit::auth::Caller;

use crate::app::App;
use crate::config::Config;

#[derive(Clone)]
struct Farm {
    app: Arc<App>,
    owner: String,
    timezone: String,
    /// Every device runner, by name, `farm.runner` (the default) first.
    runners: Vec<(String, DeviceRunnerClient)>,
    /// `farm.runner`, or the only runner.
    default: Option<String>,
}

/// The farm's routes, calling the general API's handlers of `app`.
pub(crate) fn routes(app: Arc<App>, config: &Config) -> anyhow::Result<Router> {
    let farm = &config.farm;
    let default = farm.runner_name(config).map(str::to_string);
    let mut runners = Vec::new();
    for (name, runner) in &config.device_runners {
        let client =
            DeviceRunnerClient::with_options(&runner.url, runner.timeout, runner.token.as_deref())
                .map_err(|e| anyhow::anyhow!("device_runners.{name}: {e}"))?;
        runners.push((name.clone(), client));
    }
    runners.sort_by_key(|(name, _)| Some(name) != default.as_ref());
    let state = Farm {
        app,
        owner: farm.owner.clone(),
        timezone: farm.timezone.clone(),
        runners,
        default,
    };
    let owner: Arc<str> = state.owner.as_str().into();
    Ok(Router::new()
        .merge(schedules::routes())
        .merge(runner::routes())
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(owner, farm_clients)))
}

/// The farm's API is the farm owner's: a client whose owners leave it out gets 403 on every
/// route (its schedules, and the runners' queues, logs and history).
async fn farm_clients(
    axum::extract::State(owner): axum::extract::State<Arc<str>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let caller = request.extensions().get::<Caller>();
    if let Some(caller) = caller.filter(|caller| !caller.may_act_for(&owner)) {
        let message = format!(
            "client '{}' may not act for owner '{owner}', whose the farm's API is",
            caller.name()
        );
        return error(StatusCode::FORBIDDEN, message).into_response();
    }
    next.run(request).await
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

impl From<SchedulerError> for Refusal {
    /// The general API's error as the farm's status.
    fn from(e: SchedulerError) -> Self {
        let status = match e.code() {
            codes::VALUE_ERROR => StatusCode::BAD_REQUEST,
            codes::NOT_FOUND => StatusCode::NOT_FOUND,
            codes::NOT_AUTHORIZED => StatusCode::FORBIDDEN,
            codes::ALREADY_EXISTS => StatusCode::CONFLICT,
            codes::UNAUTHORIZED => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, e.to_string())
    }
}

impl Farm {
    /// Every runner, `farm.runner` first; refused when there is none.
    fn runners(&self) -> Result<&[(String, DeviceRunnerClient)], Refusal> {
        if self.runners.is_empty() {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no device runner: configure [device_runners.<name>]",
            ));
        }
        Ok(&self.runners)
    }

    /// The runner a schedule for phone `serial` goes to: `farm.runner` (or the only runner),
    /// else the one whose phones include it.
    async fn runner_of_phone(&self, serial: &str) -> Result<String, Refusal> {
        self.runners()?;
        if let Some(name) = &self.default {
            return Ok(name.clone());
        }
        let fleet = &self.app.dispatcher.targets.devices.fleet;
        let fleet = fleet.view(None, &[], None).await;
        let owners: Vec<&str> = fleet
            .phones
            .iter()
            .filter(|phone| phone.serial == serial)
            .map(|phone| phone.runner.as_str())
            .collect();
        match owners.as_slice() {
            [runner] => Ok(runner.to_string()),
            [] => Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "device '{serial}' is on none of the device runners that answer; set \
                     farm.runner, or use \"device\": \"any\" with tags"
                ),
            )),
            several => Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "device '{serial}' is on several device runners ({}): set farm.runner",
                    several.join(", ")
                ),
            )),
        }
    }
}
