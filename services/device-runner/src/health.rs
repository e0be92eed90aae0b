//! Phones' health: the facts adb tells of each online phone (model, Android version, battery,
//! temperature), read every `health.poll`; the gates a phone must be inside to start a job;
//! and quarantine, a phone out of service by an operator's word or after jobs failed in a
//! row, kept across restarts, with its recovery by a reboot.
//!
//! What a phone's supervisor is told comes from here: its gate ([`Command::Gate`]), its
//! quarantine ([`Command::Quarantine`]) and an overheat ([`Command::Overheat`]). The one
//! exception is a quarantine after failures, which the supervisor puts in place itself, at
//! the end of the job that made the count, so that it starts nothing more; it tells this
//! task through [`RunnerState::quarantine_notices`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use device_runner_api::{DeviceEvent, DeviceHealth, DeviceInfo, Quarantine, RunnerError};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::config::{HealthConfig, POOL_PREFIX, Recovery};
use crate::state::{Command, RunnerState, storage_error};
use crate::telemetry;

/// Who quarantined a phone: an operator through `quarantine_device`.
pub const BY_OPERATOR: &str = "operator";
/// Who quarantined a phone: the runner after `health.quarantine_after` failures in a row.
pub const BY_FAILURES: &str = "failures";

/// How many phones are read at once.
const READS_AT_ONCE: usize = 8;

/// Reads what `adb shell` answered to [`crate::process::spawn::adb_facts`]: `model=` and
/// `android=` lines, then `dumpsys battery`'s `level`, `scale`, `temperature` (tenths of a
/// degree), `status` (2 charging, 5 full) and what powers it.
pub fn parse_facts(output: &str, read_at: DateTime<Utc>) -> DeviceHealth {
    let mut health = DeviceHealth {
        model: None,
        android_version: None,
        battery_percent: None,
        charging: None,
        temperature_celsius: None,
        read_at,
    };
    let (mut level, mut scale, mut status, mut powered) = (None, None, None, None);
    let given = |value: &str| Some(value.trim().to_string()).filter(|v| !v.is_empty());
    for line in output.lines().map(str::trim) {
        if let Some(model) = line.strip_prefix("model=") {
            health.model = given(model);
        } else if let Some(release) = line.strip_prefix("android=") {
            health.android_version = given(release);
        } else if let Some((key, value)) = line.split_once(':') {
            let value = value.trim();
            match key.trim() {
                "level" => level = value.parse::<u32>().ok(),
                "scale" => scale = value.parse::<u32>().ok().filter(|s| *s > 0),
                "temperature" => {
                    health.temperature_celsius = value.parse::<i32>().ok().map(|t| t as f64 / 10.0)
                }
                "status" => status = value.parse::<u32>().ok(),
                "AC powered" | "USB powered" | "Wireless powered" | "Dock powered" => {
                    powered = Some(powered.unwrap_or(false) || value == "true")
                }
                _ => {}
            }
        }
    }
    health.battery_percent = level
        .map(|level| level * 100 / scale.unwrap_or(100))
        .and_then(|percent| u8::try_from(percent.min(100)).ok());
    health.charging = match status {
        Some(2) => Some(true),
        Some(5) => Some(powered.unwrap_or(true)),
        Some(_) => Some(false),
        None => powered,
    };
    health
}

/// Why a phone with these facts starts no job, if it does not: a battery below
/// `min_battery`, or a temperature above `max_temperature` (or `stop_above_temperature`,
/// whichever is lower). Without facts, no gate holds it.
pub fn gate(health: Option<&DeviceHealth>, limits: &HealthConfig) -> Option<String> {
    let health = health?;
    if let (Some(min), Some(level)) = (limits.min_battery, health.battery_percent)
        && level < min
    {
        return Some(format!("battery {level} % < {min} %"));
    }
    let hottest = [limits.max_temperature, limits.stop_above_temperature]
        .into_iter()
        .flatten()
        .min_by(f64::total_cmp);
    if let (Some(max), Some(temperature)) = (hottest, health.temperature_celsius)
        && temperature > max
    {
        return Some(format!("temperature {temperature:.1} °C > {max:.1} °C"));
    }
    None
}

/// Why a phone's running job is stopped, when it is hotter than `stop_above_temperature`.
pub fn overheated(health: Option<&DeviceHealth>, limits: &HealthConfig) -> Option<String> {
    let (stop, temperature) = (limits.stop_above_temperature?, health?.temperature_celsius?);
    (temperature > stop).then(|| {
        format!("the phone overheated: {temperature:.1} °C > {stop:.1} °C (health.stop_above_temperature)")
    })
}

/// Why a phone starts no new job, for people and for its waiting jobs' rows: quarantined
/// first, then a gate.
pub fn held(quarantine: Option<&Quarantine>, gate: Option<&str>) -> Option<String> {
    match quarantine {
        Some(quarantine) => Some(format!("quarantined: {}", quarantine.reason)),
        None => gate.map(str::to_string),
    }
}

/// The task that reads facts (with adb), applies gates and follows quarantines, until
/// `shutdown`.
pub async fn watch(
    runner: Arc<RunnerState>,
    adb: Option<PathBuf>,
    mut notices: mpsc::UnboundedReceiver<(String, Quarantine)>,
    mut shutdown: service_kit::Shutdown,
) {
    // A phone quarantined after failures before the restart is recovered again.
    for (serial, quarantine) in runner.quarantined() {
        follow_quarantine(&runner, adb.as_deref(), &serial, &quarantine);
    }
    let mut interval = tokio::time::interval(runner.config.health.poll);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick(), if adb.is_some() => {
                if let Some(adb) = &adb {
                    read_all(&runner, adb).await;
                }
            }
            Some((serial, quarantine)) = notices.recv() => {
                tracing::warn!(serial, reason = %quarantine.reason, "device quarantined");
                apply_quarantine(&runner, &serial, Some(quarantine.clone()));
                follow_quarantine(&runner, adb.as_deref(), &serial, &quarantine);
            }
            () = shutdown.requested() => return,
        }
    }
}

/// Reads every online phone's facts, then applies what they tell.
async fn read_all(runner: &Arc<RunnerState>, adb: &Path) {
    let online: Vec<String> = runner
        .phones()
        .into_iter()
        .filter(|phone| phone.state == "device")
        .map(|phone| phone.serial)
        .collect();
    let mut reads = futures::stream::iter(online)
        .map(|serial| async move {
            let facts = crate::process::spawn::adb_facts(adb, &serial).await;
            (serial, facts)
        })
        .buffer_unordered(READS_AT_ONCE);
    while let Some((serial, facts)) = reads.next().await {
        match facts {
            Ok(output) => apply_facts(runner, &serial, parse_facts(&output, Utc::now())),
            Err(error) => tracing::warn!(serial, %error, "cannot read the phone's health"),
        }
    }
}

/// Keeps a phone's facts and tells its supervisor what they mean: its gate, and an overheat.
pub fn apply_facts(runner: &RunnerState, serial: &str, health: DeviceHealth) {
    let limits = &runner.config.health;
    telemetry::device_health(serial, &health);
    let gate = gate(Some(&health), limits);
    let overheated = overheated(Some(&health), limits);
    let changed = {
        let mut devices = runner.devices.write().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = devices.get_mut(serial) else {
            return;
        };
        entry.info.health = Some(health);
        let changed = entry.gate != gate;
        if changed {
            entry.gate = gate.clone();
            entry.info.held = held(entry.info.quarantine.as_ref(), gate.as_deref());
        }
        changed
    };
    if changed {
        match &gate {
            Some(reason) => tracing::warn!(serial, %reason, "device outside its health gates"),
            None => tracing::info!(serial, "device inside its health gates again"),
        }
        runner.send(serial, Command::Gate(gate));
    }
    if let Some(reason) = overheated {
        runner.send(serial, Command::Overheat(reason));
    }
}

/// Applies a phone's quarantine (stored already) or its release: its view, its metric, and
/// its supervisor.
fn apply_quarantine(runner: &RunnerState, serial: &str, quarantine: Option<Quarantine>) {
    {
        let mut devices = runner.devices.write().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = devices.get_mut(serial) else {
            return;
        };
        entry.info.held = held(quarantine.as_ref(), entry.gate.as_deref());
        entry.info.quarantine = quarantine.clone();
    }
    telemetry::device_quarantined(serial, quarantine.is_some());
    runner.send(serial, Command::Quarantine(quarantine));
}

/// Quarantines a phone at an operator's word: persisted, then applied. A phone already
/// quarantined keeps its start and takes the new reason.
pub async fn quarantine(
    runner: &RunnerState,
    serial: &str,
    reason: Option<String>,
) -> Result<DeviceInfo, RunnerError> {
    let info = phone(runner, serial)?;
    let quarantine = Quarantine {
        since: info.quarantine.map_or_else(Utc::now, |q| q.since),
        reason: reason
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "quarantined by an operator".into()),
        by: BY_OPERATOR.into(),
    };
    if quarantine.reason.len() > 500 {
        return Err(RunnerError::Value(
            "reason must be at most 500 characters".into(),
        ));
    }
    runner
        .store
        .quarantine(serial, &quarantine)
        .await
        .map_err(storage_error)?;
    tracing::warn!(serial, reason = %quarantine.reason, "device quarantined by an operator");
    apply_quarantine(runner, serial, Some(quarantine));
    phone(runner, serial)
}

/// Ends a phone's quarantine: persisted with `message` in its history, then applied. A phone
/// that is not quarantined is answered as it is.
pub async fn release(
    runner: &RunnerState,
    serial: &str,
    message: &str,
) -> Result<DeviceInfo, RunnerError> {
    phone(runner, serial)?;
    let released = runner
        .store
        .release(serial, Utc::now(), message)
        .await
        .map_err(storage_error)?;
    if released {
        tracing::info!(serial, message, "device released from quarantine");
        apply_quarantine(runner, serial, None);
    }
    phone(runner, serial)
}

/// A phone's history, newest first.
pub async fn history(
    runner: &RunnerState,
    serial: &str,
    limit: Option<i64>,
) -> Result<Vec<DeviceEvent>, RunnerError> {
    phone(runner, serial)?;
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(RunnerError::Value(format!(
            "limit must be 1 to 1000, got {limit}"
        )));
    }
    runner
        .store
        .device_history(serial, limit)
        .await
        .map_err(storage_error)
}

/// The phone `serial` as the runner sees it, or the error naming the phones it has.
fn phone(runner: &RunnerState, serial: &str) -> Result<DeviceInfo, RunnerError> {
    match runner.device_info(serial) {
        Some(info) if !serial.starts_with(POOL_PREFIX) => Ok(info),
        _ => {
            let known: Vec<String> = runner.phones().into_iter().map(|p| p.serial).collect();
            Err(RunnerError::Value(format!(
                "unknown device '{serial}' (known: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )))
        }
    }
}

/// Starts the recovery a quarantine calls for: a reboot, when it came from failures and
/// `health.recovery` is `reboot`.
fn follow_quarantine(
    runner: &Arc<RunnerState>,
    adb: Option<&Path>,
    serial: &str,
    quarantine: &Quarantine,
) {
    if quarantine.by != BY_FAILURES || runner.config.health.recovery != Recovery::Reboot {
        return;
    }
    let Some(adb) = adb else {
        tracing::warn!(
            serial,
            "health.recovery is reboot but adb is not in use; the device stays quarantined"
        );
        return;
    };
    tokio::spawn(recover(
        runner.clone(),
        adb.to_path_buf(),
        serial.to_string(),
    ));
}

/// Reboots a quarantined phone, waits until adb lists it online again and its facts are
/// inside its gates, and releases it; each step is written to its history. Gives up after
/// `health.recovery_timeout`, the phone staying quarantined.
async fn recover(runner: Arc<RunnerState>, adb: PathBuf, serial: String) {
    let record = |kind: &str, message: String| {
        let event = DeviceEvent {
            serial: serial.clone(),
            at: Utc::now(),
            kind: kind.into(),
            message,
        };
        let runner = runner.clone();
        async move {
            if let Err(error) = runner.store.record_event(event).await {
                tracing::error!(%error, "cannot record a step of a device's recovery");
            }
        }
    };
    let timeout = runner.config.health.recovery_timeout;
    tracing::info!(serial, "rebooting a quarantined device to recover it");
    record("reboot", "rebooting to recover (adb reboot)".into()).await;
    if let Err(error) = crate::process::spawn::adb_reboot(&adb, &serial).await {
        record(
            "recovery_failed",
            format!("the reboot failed: {error}; stays quarantined"),
        )
        .await;
        return;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let poll = runner.config.adb.poll_interval.min(Duration::from_secs(5));
    let state = || runner.device_info(&serial).map(|info| info.state);
    // First adb sees it go (for at most a minute: a reboot it never saw is waited out
    // below as well), so that `device` below is the phone back from its reboot.
    let seen_going = tokio::time::Instant::now() + timeout.min(Duration::from_secs(60));
    while state().as_deref() == Some("device") && tokio::time::Instant::now() < seen_going {
        tokio::time::sleep(poll).await;
    }
    loop {
        let Some(info) = runner.device_info(&serial) else {
            return;
        };
        if info.quarantine.is_none() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let message = format!(
                "not back online and inside its gates within {}; stays quarantined",
                humantime::format_duration(timeout)
            );
            tracing::warn!(serial, %message, "device recovery gave up");
            record("recovery_failed", message).await;
            return;
        }
        if info.state == "device"
            && let Ok(output) = crate::process::spawn::adb_facts(&adb, &serial).await
        {
            let facts = parse_facts(&output, Utc::now());
            let outside = gate(Some(&facts), &runner.config.health);
            apply_facts(&runner, &serial, facts);
            if outside.is_none() {
                record(
                    "online",
                    "back online after the reboot, inside its gates".into(),
                )
                .await;
                if let Err(error) = release(&runner, &serial, "released after a reboot").await {
                    tracing::error!(serial, %error, "cannot release a recovered device");
                }
                return;
            }
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "model=Pixel 7\nandroid=14\nCurrent Battery Service state:\n  \
        AC powered: false\n  USB powered: true\n  Wireless powered: false\n  \
        Max charging current: 500000\n  status: 2\n  health: 2\n  present: true\n  \
        level: 85\n  scale: 100\n  voltage: 4291\n  temperature: 312\n  technology: Li-ion\n";

    #[test]
    fn facts_are_read_from_getprop_and_dumpsys_battery() {
        let at = Utc::now();
        let health = parse_facts(DUMP, at);
        assert_eq!(health.model.as_deref(), Some("Pixel 7"));
        assert_eq!(health.android_version.as_deref(), Some("14"));
        assert_eq!(health.battery_percent, Some(85));
        assert_eq!(health.charging, Some(true));
        assert_eq!(health.temperature_celsius, Some(31.2));
        assert_eq!(health.read_at, at);

        let discharging = parse_facts("level: 30\nscale: 50\nstatus: 3\nAC powered: false\n", at);
        assert_eq!(discharging.battery_percent, Some(60), "level over scale");
        assert_eq!(discharging.charging, Some(false));
        assert_eq!(
            discharging.model, None,
            "an empty or missing getprop is no fact"
        );
        let nothing = parse_facts("model=\nerror: device offline\n", at);
        assert_eq!(nothing.battery_percent, None);
        assert_eq!(nothing.temperature_celsius, None);
        assert_eq!(nothing.charging, None);
    }

    #[test]
    fn gates_hold_a_phone_outside_its_limits_and_name_why() {
        let limits = HealthConfig {
            min_battery: Some(20),
            max_temperature: Some(42.0),
            stop_above_temperature: Some(45.0),
            ..HealthConfig::default()
        };
        let facts = |battery, temperature| DeviceHealth {
            model: None,
            android_version: None,
            battery_percent: Some(battery),
            charging: None,
            temperature_celsius: Some(temperature),
            read_at: Utc::now(),
        };
        assert_eq!(gate(Some(&facts(80, 30.0)), &limits), None);
        assert_eq!(gate(None, &limits), None, "no facts, no gate");
        assert_eq!(
            gate(Some(&facts(12, 30.0)), &limits).as_deref(),
            Some("battery 12 % < 20 %")
        );
        assert_eq!(
            gate(Some(&facts(80, 44.5)), &limits).as_deref(),
            Some("temperature 44.5 °C > 42.0 °C")
        );
        assert_eq!(overheated(Some(&facts(80, 44.5)), &limits), None);
        assert!(
            overheated(Some(&facts(80, 46.0)), &limits)
                .unwrap()
                .contains("46.0 °C > 45.0 °C")
        );
        let stop_only = HealthConfig {
            stop_above_temperature: Some(45.0),
            ..HealthConfig::default()
        };
        assert!(
            gate(Some(&facts(80, 46.0)), &stop_only).is_some(),
            "a phone too hot to run a job starts none"
        );
        assert_eq!(
            gate(Some(&facts(5, 60.0)), &HealthConfig::default()),
            None,
            "off by default"
        );
        let quarantine = Quarantine {
            since: Utc::now(),
            reason: "3 jobs in a row failed".into(),
            by: BY_FAILURES.into(),
        };
        assert_eq!(
            held(Some(&quarantine), Some("battery 12 % < 20 %")).as_deref(),
            Some("quarantined: 3 jobs in a row failed")
        );
    }
}
