//! The phone farm's REST API, served on the scheduler's port: `/api/schedules` (its recurring
//! device jobs, with the farm's field names) as thin routes over the general schedule API's
//! handlers, called with typed values ([`schedules`]), and `/api/scheduler/*` forwarded to the
//! farm's device runner ([`runner`]). Auth is the rest of the API's.
//!
//! A farm schedule is a general schedule of owner `farm.owner` whose target is a `device_job`
//! on `farm.runner`: `interval_minutes` is an `interval` trigger, `daily_times` a `daily_times`
//! trigger in `farm.timezone`, `enabled = false` a paused schedule.

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

use crate::app::App;
use crate::config::Config;

#[derive(Clone)]
struct Farm {
    app: Arc<App>,
    owner: String,
    timezone: String,
    /// The runner's name and a client for it; `None` without a device runner.
    runner: Option<(String, DeviceRunnerClient)>,
}

/// The farm's routes, calling the general API's handlers of `app`.
pub(crate) fn routes(app: Arc<App>, config: &Config) -> anyhow::Result<Router> {
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
        app,
        owner: farm.owner.clone(),
        timezone: farm.timezone.clone(),
        runner,
    };
    Ok(Router::new()
        .merge(schedules::routes())
        .merge(runner::routes())
        .with_state(state))
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
    fn runner(&self) -> Result<&(String, DeviceRunnerClient), Refusal> {
        self.runner.as_ref().ok_or_else(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no device runner: configure [device_runners.<name>] (and farm.runner when \
                 there are several)",
            )
        })
    }
}
