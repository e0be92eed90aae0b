//! `schedctl fleet`: every runner's phones as the scheduler sees them; and quarantining or
//! releasing a phone, through the scheduler (`--runner NAME`) or the device runner itself.

use clap::Args;
use device_runner_client::DeviceRunnerApiClient;
use scheduler_client::{Fleet, FleetQuery, PhoneState};

use crate::output::{Format, Table, cut, json, or_dash, time};
use crate::{Context, Failure};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  schedctl fleet\n  schedctl fleet --tag tiktok --state idle")]
pub(crate) struct FleetArgs {
    /// Only this runner's phones (its name in [device_runners.<name>]).
    #[arg(long)]
    runner: Option<String>,
    /// Only phones carrying this tag (repeat: every one).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// idle, busy, held, quarantined, offline or unreachable.
    #[arg(long, value_parser = parse_state)]
    state: Option<PhoneState>,
}

fn parse_state(text: &str) -> Result<PhoneState, String> {
    PhoneState::ALL
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| {
            let known: Vec<&str> = PhoneState::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown state '{text}' (one of {})", known.join(", "))
        })
}

pub(crate) async fn fleet(context: &Context, args: FleetArgs) -> Result<(), Failure> {
    let query = FleetQuery {
        runner: args.runner,
        tags: args.tags,
        state: args.state,
    };
    let fleet = context.scheduler()?.list_fleet(query).await?;
    match context.format {
        Format::Json => json(&fleet),
        Format::Table => print!("{}", fleet_tables(&fleet)),
    }
    Ok(())
}

fn fleet_tables(fleet: &Fleet) -> String {
    let mut runners = Table::new(&[
        "RUNNER",
        "HOST",
        "REACHABLE",
        "LAST SEEN",
        "PHONES",
        "ERROR",
    ]);
    for runner in &fleet.runners {
        runners.row(vec![
            runner.name.clone(),
            or_dash(runner.reports_as.clone()),
            if runner.reachable { "yes" } else { "NO" }.into(),
            time(runner.last_seen.as_ref()),
            runner.phones.to_string(),
            cut(runner.error.as_deref().unwrap_or("-"), 50),
        ]);
    }
    let mut phones = Table::new(&[
        "RUNNER", "PHONE", "TAGS", "STATE", "BATTERY", "TEMP", "RUNNING", "QUEUED", "WHY",
    ]);
    for phone in &fleet.phones {
        let health = phone.health.as_ref();
        let battery = health.and_then(|h| h.battery_percent).map(|level| {
            let charging = health.and_then(|h| h.charging) == Some(true);
            format!("{level}%{}", if charging { "+" } else { "" })
        });
        let why = match &phone.quarantine {
            Some(q) => Some(format!("{} (by {})", q.reason, q.by)),
            None => phone.held.clone(),
        };
        phones.row(vec![
            phone.runner.clone(),
            phone.serial.clone(),
            phone.tags.join(","),
            phone.state.as_str().into(),
            or_dash(battery),
            or_dash(
                health
                    .and_then(|h| h.temperature_celsius)
                    .map(|t| format!("{t:.1}°C")),
            ),
            or_dash(phone.running.as_ref().map(|job| job.job_type.clone())),
            phone.queued.to_string(),
            cut(why.as_deref().unwrap_or("-"), 50),
        ]);
    }
    format!("{}\n{}", runners.render(), phones.render())
}

/// Quarantines (`reason` given) or releases a phone: through the scheduler with its admin
/// token when `runner` names one of its runners, else on the device runner of
/// `--runner-url` with its admin token (`--runner-token`).
pub(crate) async fn set_quarantine(
    context: &Context,
    serial: String,
    runner: Option<String>,
    quarantine: Option<Option<String>>,
) -> Result<(), Failure> {
    match runner {
        Some(runner) => {
            let scheduler = context.scheduler()?;
            let phone = match quarantine {
                Some(reason) => {
                    scheduler
                        .quarantine_device(&runner, &serial, reason.as_deref())
                        .await?
                }
                None => scheduler.release_device(&runner, &serial).await?,
            };
            match context.format {
                Format::Json => json(&phone),
                Format::Table => println!(
                    "{} on {}: {}{}",
                    phone.serial,
                    phone.runner,
                    phone.state.as_str(),
                    phone
                        .quarantine
                        .map(|q| format!(" ({})", q.reason))
                        .unwrap_or_default()
                ),
            }
        }
        None => {
            let runner = context.runner()?;
            let rpc = runner.rpc();
            let device = match quarantine {
                Some(reason) => rpc.quarantine_device(serial, reason).await,
                None => rpc.release_device(serial).await,
            }
            .map_err(device_runner_client::Error::from)?;
            match context.format {
                Format::Json => json(&device),
                Format::Table => println!(
                    "{}: {}",
                    device.serial,
                    device
                        .quarantine
                        .map(|q| format!("quarantined ({})", q.reason))
                        .unwrap_or_else(|| "not quarantined".into())
                ),
            }
        }
    }
    Ok(())
}
