//! The device runner: one queue per phone, at most one job running per phone, each job a
//! supervised subprocess in its own process group. See ARCHITECTURE.md for the map.

pub mod config;
pub mod devices;
pub mod health;
pub mod output;
pub mod process;
pub mod recover;
pub mod rpc;
pub mod server;
mod spans;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod telemetry;

use std::sync::Arc;

use anyhow::Context;
use service_kit::DatabaseUrl;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::state::{Command, RunnerState};
use crate::store::Store;

/// Runs the service until SIGTERM or SIGINT, then stops every job (recorded `interrupted`).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let url = DatabaseUrl::parse(&config.database.url)?;
    let store = Store::connect(&url, config.database.max_connections)
        .await
        .with_context(|| format!("opening the store at {}", url.redacted()))?;
    process::become_subreaper();
    // Installed before the reconciliation, so the jobs it settles are counted too.
    let metrics = service_kit::metrics::install()?;
    telemetry::describe();
    telemetry::register(&config);
    recover::reconcile(&store, &config)
        .await
        .context("reconciling jobs left running by a previous start")?;

    let listener = service_kit::serve::listen(&config.server).await?;
    let addr = listener.local_addr()?;
    let adb = devices::adb_binary(config.adb.enabled, &config.adb.path);
    let grace = config.server.shutdown_timeout;
    let state = RunnerState::new(Arc::new(config), store.clone());
    let quarantines = store
        .quarantines()
        .await
        .context("reading the quarantined devices")?;
    state.keep_stored_quarantines(quarantines.into_iter().collect());
    for device in &state.config.devices {
        let device_state = if adb.is_some() {
            "absent"
        } else {
            "configured"
        };
        let info = devices::phone(
            &state,
            &device.serial,
            device.label.clone(),
            device_state,
            true,
            device.tags.clone(),
        );
        devices::add_device(&state, info);
    }
    for pool in &state.config.pools {
        devices::add_pool(&state, pool);
    }
    let (trigger, shutdown) = service_kit::shutdown::channel();
    if let Some(adb) = &adb {
        tracing::info!(adb = %adb.display(), "watching adb for devices");
        tokio::spawn(devices::watch_adb(
            state.clone(),
            adb.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(notices) = state.take_quarantine_notices() {
        tokio::spawn(health::watch(state.clone(), adb, notices, shutdown.clone()));
    }
    tracing::info!(%addr, database = %url.redacted(), devices = state.config.devices.len(), "device-runner listening");

    let server = tokio::spawn(server::serve(listener, state.clone(), metrics, shutdown));
    service_kit::shutdown::signal().await;
    tracing::info!(deadline = ?grace, "shutdown requested; stopping running jobs");
    if tokio::time::timeout(grace, stop_supervisors(&state))
        .await
        .is_err()
    {
        tracing::warn!("shutdown deadline passed with jobs still stopping");
    }
    trigger.request();
    server.await??;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn stop_supervisors(state: &RunnerState) {
    let serials: Vec<String> = state
        .devices
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    let mut waits = Vec::new();
    for serial in serials {
        let (done, wait) = oneshot::channel();
        if state.send(&serial, Command::Shutdown(done)) {
            waits.push(wait);
        }
    }
    for wait in waits {
        let _ = wait.await;
    }
}
