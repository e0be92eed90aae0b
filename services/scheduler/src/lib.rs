//! The scheduler service: holds schedules and fires them.
//!
//! [`run`] wires the parts: the jobstores ([`jobstore`]), the engine ([`engine`]) that claims
//! due runs and dispatches them ([`dispatch`]), and the server ([`server`]) that exposes the
//! JSON-RPC API ([`rpc`]) and the AutoGPT routes ([`compat`]) on one port.

pub mod app;
pub mod auth;
pub mod body_limit;
pub mod compat;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod leader;
pub mod openrpc;
pub mod rpc;
pub mod server;
pub mod tasks;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobstore::{DatabaseUrl, Jobstore, MemoryStore};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{App, Stores};
use crate::config::Config;
use crate::engine::Engine;

/// What the process may take beyond `server.shutdown_timeout` to release runs and close.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(10);

/// Runs the service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let url = DatabaseUrl::parse(&config.database.url)?;
    let sole = match &url {
        DatabaseUrl::Sqlite { path } => Some(leader::SoleProcess::acquire(path)?),
        DatabaseUrl::Postgres { .. } => None,
    };
    let db = jobstore::connect(&url, config.database.max_connections)
        .await
        .with_context(|| format!("opening database {}", url.redacted()))?;
    let stores = Stores::new([
        db.store(Jobstore::Execution),
        db.store(Jobstore::BatchedNotifications),
        Arc::new(MemoryStore::new(Jobstore::WeeklyNotifications)),
    ]);
    let metrics = telemetry::install()?;
    let upkeep = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(telemetry::UPKEEP_EVERY);
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        })
    };
    let tasks = tasks::register(&stores, &config.system_tasks, chrono::Utc::now())
        .await
        .context("registering the system tasks")?;
    let (stop, stopped) = watch::channel(false);
    let (leading, election) = leader::elect(&url, config.engine.leader_poll, stopped.clone())?;
    let app = App::new(
        stores.clone(),
        leading.clone(),
        url.backend(),
        &config,
        tasks,
    )?;
    let address = (config.server.host, config.server.port);
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {}:{}", address.0, address.1))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        database = %url.redacted(),
        executor = %config.executor.url,
        "scheduler listening"
    );

    let exclusive = sole.is_some();
    if let Some(sole) = &sole {
        tracing::info!(lock = %sole.path().display(), "sole process on this SQLite store");
    }
    let engine = Engine::new(
        stores,
        app.targets.clone(),
        app.wake.clone(),
        config.engine.clone(),
        exclusive,
        leading,
    );
    let grace = config.server.shutdown_timeout;
    let engine = tokio::spawn(engine.run(stopped.clone(), grace));
    let server = tokio::spawn(server::serve(
        listener,
        app,
        config.server.clone(),
        metrics,
        stopped,
    ));

    shutdown_signal().await;
    tracing::info!(deadline = ?grace, "shutdown requested; no more claims");
    let _ = stop.send(true);
    let stopping = async {
        engine.await.context("engine task")?;
        server.await.context("server task")??;
        if let Some(election) = election {
            let _ = election.await;
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(grace + SHUTDOWN_SLACK, stopping).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!("shutdown deadline passed; exiting with connections still open"),
    }
    upkeep.abort();
    db.close().await;
    drop(sole);
    tracing::info!("scheduler stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
