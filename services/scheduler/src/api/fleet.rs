//! The fleet: every device runner's phones (`list_fleet`), and their quarantine through the
//! runner that owns them (admin).

use jsonrpsee::Extensions;
use scheduler_api::{Fleet, FleetPhone, PhoneState, SchedulerError};

use crate::app::App;

pub(super) async fn list(
    app: &App,
    runner: Option<String>,
    tags: Option<Vec<String>>,
    state: Option<PhoneState>,
) -> Result<Fleet, SchedulerError> {
    let devices = &app.dispatcher.targets.devices;
    if let Some(runner) = &runner {
        known_runner(app, runner)?;
    }
    let tags = tags.unwrap_or_default();
    Ok(devices.fleet.view(runner.as_deref(), &tags, state).await)
}

/// Quarantines (`reason` given, possibly `None`) or releases (`quarantine` `None`) a phone.
pub(super) async fn set_quarantine(
    app: &App,
    extensions: &Extensions,
    method: &str,
    runner: &str,
    serial: &str,
    quarantine: Option<Option<String>>,
) -> Result<FleetPhone, SchedulerError> {
    app.auth
        .check_admin(method, extensions)
        .map_err(SchedulerError::Unauthorized)?;
    known_runner(app, runner)?;
    let devices = &app.dispatcher.targets.devices;
    devices
        .set_quarantine(runner, serial, quarantine)
        .await
        .map_err(SchedulerError::Value)?;
    devices.fleet.phone(runner, serial).await.ok_or_else(|| {
        SchedulerError::NotFound(format!("device runner '{runner}' has no phone '{serial}'"))
    })
}

fn known_runner(app: &App, runner: &str) -> Result<(), SchedulerError> {
    let known = &app.dispatcher.targets.configured.runners;
    if known.contains(runner) {
        return Ok(());
    }
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    Err(SchedulerError::Value(format!(
        "device runner '{runner}' is not configured (configured: {})",
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    )))
}
