//! The device runner: one queue per phone, at most one job running per phone, each job a
//! supervised subprocess in its own process group. See ARCHITECTURE.md for the map.

pub mod config;
pub mod devices;
pub mod openrpc;
pub mod output;
pub mod process;
pub mod recover;
pub mod rpc;
pub mod runner;
pub mod server;
pub mod store;
pub mod subscriptions;
pub mod supervisor;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use device_runner_api::DeviceInfo;
use tokio::sync::{oneshot, watch};

use crate::config::Config;
use crate::runner::{Command, Runner};
use crate::store::Store;

/// Runs the service until SIGTERM or SIGINT, then stops every job (recorded `interrupted`).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let url = jobstore::DatabaseUrl::parse(&config.database.url)?;
    let store = Store::connect(&url, config.database.max_connections)
        .await
        .with_context(|| format!("opening the store at {}", url.redacted()))?;
    process::become_subreaper();
    recover::reconcile(&store, &config)
        .await
        .context("reconciling jobs left running by a previous start")?;

    let addr = SocketAddr::new(config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let adb = devices::adb_binary(config.adb.enabled, &config.adb.path);
    let runner = Runner::new(Arc::new(config), store.clone());
    for device in &runner.config.devices {
        let (state, usable) = match adb {
            Some(_) => ("absent", false),
            None => ("configured", true),
        };
        devices::add_device(
            &runner,
            DeviceInfo {
                serial: device.serial.clone(),
                label: device.label.clone(),
                state: state.into(),
                usable,
                configured: true,
            },
        );
    }
    let (shutdown_tx, shutdown) = watch::channel(false);
    if let Some(adb) = adb {
        tracing::info!(adb = %adb.display(), "watching adb for devices");
        tokio::spawn(devices::watch_adb(runner.clone(), adb, shutdown.clone()));
    }
    tracing::info!(%addr, database = %url.redacted(), devices = runner.config.devices.len(), "device-runner listening");

    let server = tokio::spawn(server::serve(listener, runner.clone(), shutdown.clone()));
    wait_for_signal().await;
    tracing::info!("shutdown requested; stopping running jobs");
    stop_supervisors(&runner).await;
    let _ = shutdown_tx.send(true);
    server.await??;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn stop_supervisors(runner: &Runner) {
    let serials: Vec<String> = runner
        .devices
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    let mut waits = Vec::new();
    for serial in serials {
        let (done, wait) = oneshot::channel();
        if runner.send(&serial, Command::Shutdown(done)) {
            waits.push(wait);
        }
    }
    for wait in waits {
        let _ = wait.await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
