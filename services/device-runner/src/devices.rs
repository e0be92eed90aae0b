//! Devices: the configured ones, and, when adb is in use, what `adb devices -l` lists, read
//! every poll interval and believed once `debounce` reads in a row agree. Only the adb state
//! `device` is usable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use device_runner_api::DeviceInfo;
use tokio::sync::mpsc;

use crate::config::{PoolConfig, pool_queue};
use crate::state::{Command, DeviceEntry, RunnerState};
use crate::supervisor::{self, Supervisor};

/// A device line of `adb devices -l`: serial, state and the `model:` field when present.
pub fn parse_adb_devices(output: &str) -> Vec<(String, String, Option<String>)> {
    output
        .lines()
        .filter(|line| !line.starts_with("List of devices") && !line.starts_with('*'))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let serial = words.next()?.to_string();
            let state = words.next()?.to_string();
            let model = words
                .find_map(|w| w.strip_prefix("model:"))
                .map(|m| m.replace('_', " "));
            Some((serial, state, model))
        })
        .collect()
}

/// The adb binary to use, if adb is in use.
pub fn adb_binary(enabled: Option<bool>, path: &str) -> Option<PathBuf> {
    let found = if path.contains('/') {
        Some(PathBuf::from(path)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH").and_then(|dirs| {
            std::env::split_paths(&dirs)
                .map(|dir| dir.join(path))
                .find(|candidate| candidate.is_file())
        })
    };
    match enabled {
        Some(false) => None,
        Some(true) => Some(found.unwrap_or_else(|| PathBuf::from(path))),
        None => found,
    }
}

/// A phone as it is registered: known by the configuration or by adb, with no facts yet, in
/// the quarantine stored for it, if any.
pub fn phone(
    runner: &RunnerState,
    serial: &str,
    label: Option<String>,
    state: &str,
    configured: bool,
    tags: Vec<String>,
) -> DeviceInfo {
    let quarantine = runner.stored_quarantine(serial);
    DeviceInfo {
        serial: serial.to_string(),
        label,
        state: state.to_string(),
        usable: matches!(state, "device" | "configured"),
        configured,
        tags,
        health: None,
        held: crate::health::held(quarantine.as_ref(), None),
        quarantine,
    }
}

/// Registers a device and starts its supervisor.
pub fn add_device(runner: &Arc<RunnerState>, info: DeviceInfo) {
    crate::telemetry::device_quarantined(&info.serial, info.quarantine.is_some());
    add_queue(runner, info, 1);
}

/// Registers a pool (under its queue name, `pool:<name>`) and starts its supervisor.
pub fn add_pool(runner: &Arc<RunnerState>, pool: &PoolConfig) {
    let info = DeviceInfo {
        serial: pool_queue(&pool.name),
        label: Some(format!("pool of {}", pool.concurrency)),
        state: "pool".into(),
        usable: true,
        configured: true,
        tags: Vec::new(),
        health: None,
        quarantine: None,
        held: None,
    };
    add_queue(runner, info, pool.concurrency as usize);
}

fn add_queue(runner: &Arc<RunnerState>, info: DeviceInfo, slots: usize) {
    let (commands, receiver) = mpsc::unbounded_channel();
    let running = Arc::default();
    // The supervisor is handed what it uses, not the whole shared state.
    let context = supervisor::Context {
        store: runner.store.clone(),
        config: runner.config.clone(),
        logs: runner.logs.clone(),
        quarantine_notices: runner.quarantine_notices.clone(),
    };
    let supervisor = Supervisor::new(context, &info, slots, receiver, Arc::clone(&running));
    tracing::info!(serial = %info.serial, state = %info.state, usable = info.usable, slots, "queue registered");
    runner
        .devices
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            info.serial.clone(),
            DeviceEntry {
                info,
                gate: None,
                commands,
                running,
            },
        );
    tokio::spawn(supervisor.run());
}

/// Reads adb until `shutdown` turns true.
pub async fn watch_adb(
    runner: Arc<RunnerState>,
    adb: PathBuf,
    mut shutdown: service_kit::Shutdown,
) {
    let settings = runner.config.adb.clone();
    // serial → (state seen, reads in a row, model)
    let mut candidates: HashMap<String, (String, u32)> = HashMap::new();
    let mut interval = tokio::time::interval(settings.poll_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.requested() => return,
        }
        let listed = match read_adb(&adb).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, adb = %adb.display(), "cannot read adb devices");
                continue;
            }
        };
        let mut seen: BTreeMap<String, (String, Option<String>)> = listed
            .into_iter()
            .map(|(serial, state, model)| (serial, (state, model)))
            .collect();
        for serial in runner.phones().into_iter().map(|phone| phone.serial) {
            seen.entry(serial)
                .or_insert_with(|| ("absent".into(), None));
        }
        for (serial, (state, model)) in seen {
            let count = match candidates.get(&serial) {
                Some((previous, count)) if *previous == state => count + 1,
                _ => 1,
            };
            candidates.insert(serial.clone(), (state.clone(), count));
            if count < settings.debounce {
                continue;
            }
            apply_state(&runner, &serial, &state, model);
        }
    }
}

fn apply_state(runner: &Arc<RunnerState>, serial: &str, state: &str, model: Option<String>) {
    let usable = state == "device";
    let existing = runner.device_info(serial);
    match existing {
        None if state == "absent" => {}
        None => add_device(
            runner,
            phone(runner, serial, model, state, false, Vec::new()),
        ),
        Some(info) if info.state == state => {}
        Some(_) => {
            {
                let mut devices = runner.devices.write().unwrap_or_else(|e| e.into_inner());
                if let Some(entry) = devices.get_mut(serial) {
                    entry.info.state = state.to_string();
                    entry.info.usable = usable;
                }
            }
            tracing::info!(serial, state, usable, "device state changed");
            runner.send(
                serial,
                Command::Usable(usable, format!("adb state: {state}")),
            );
        }
    }
}

async fn read_adb(adb: &Path) -> std::io::Result<Vec<(String, String, Option<String>)>> {
    let listing = crate::process::spawn::adb_devices(adb).await?;
    Ok(parse_adb_devices(&listing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adb_listing_is_parsed() {
        let output = "* daemon started successfully\nList of devices attached\n\
            L9AIB7603188953        device usb:1-1 product:x model:Pixel_7 device:panther transport_id:1\n\
            emulator-5554 offline\n\
            R58M unauthorized usb:1-2 transport_id:2\n\n";
        assert_eq!(
            parse_adb_devices(output),
            [
                (
                    "L9AIB7603188953".into(),
                    "device".into(),
                    Some("Pixel 7".into())
                ),
                ("emulator-5554".into(), "offline".into(), None),
                ("R58M".into(), "unauthorized".into(), None),
            ]
        );
    }
}
