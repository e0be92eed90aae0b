//! The scheduler service: holds schedules and fires them.
//!
//! [`run`] wires the parts: the jobstores ([`jobstore`]), the engine ([`engine`]) that claims
//! due runs and dispatches them ([`dispatch`]), and the server ([`server`]) that exposes the
//! JSON-RPC API ([`rpc`]) and the AutoGPT routes ([`compat`]) on one port.

pub mod app;
pub mod apscheduler;
pub mod compat;
pub mod config;
pub mod console;
pub mod declared;
pub mod dispatch;
pub mod endpoint;
pub mod engine;
pub mod farm;
pub mod health;
pub mod leader;
pub mod openrpc;
pub mod outbound;
pub mod retention;
pub mod rpc;
pub mod server;
pub mod stores;
pub mod targets;
pub mod tasks;
pub mod telemetry;
pub mod watches;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobstore::{DatabaseUrl, MemoryStore, StoreName};
use tokio::sync::watch;

use crate::app::App;
use crate::config::Config;
use crate::engine::Engine;
use crate::stores::Stores;

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
        jobstore::persisted(&db, StoreName::Execution),
        jobstore::persisted(&db, StoreName::BatchedNotifications),
        Arc::new(MemoryStore::new(StoreName::WeeklyNotifications)),
    ]);
    let metrics = telemetry::install()?;
    let tasks = declared::register(
        &stores,
        &config.system_tasks,
        &config.schedules,
        chrono::Utc::now(),
    )
    .await
    .context("registering the declared schedules and system tasks")?;
    let (stop, stopped) = service_kit::shutdown::channel();
    let election = leader::elect(&url, config.engine.leader_poll, stopped.clone())?;
    let leading = election.leading.clone();
    let (engine_down, engine_stopped) = watch::channel(None);
    let app = App::new(
        stores.clone(),
        leading.clone(),
        url.backend(),
        &config,
        tasks,
        engine_stopped,
    )?;
    let listener = service_kit::serve::listen(&config.server).await?;
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
    let pruner = tokio::spawn(retention::run(
        stores.clone(),
        config.ledger.clone(),
        leading.clone(),
        stopped.clone(),
    ));
    // Completions of watches are sent by every replica; a lease gives each to one of them.
    let sender = stores.watches().map(|store| {
        tokio::spawn(watches::deliver(
            store,
            app.dispatcher.targets.watches.clone(),
            app.dispatcher.targets.outbound.clone(),
            stopped.clone(),
        ))
    });
    let engine = Engine::new(
        stores,
        app.dispatcher.clone(),
        app.wake.clone(),
        config.engine.clone(),
        exclusive,
        leading,
        election.present.clone(),
    );
    let grace = config.server.shutdown_timeout;
    let mut engine = tokio::spawn(engine.run(stopped.clone(), grace));
    let server = tokio::spawn(server::serve(
        listener,
        app,
        config.clone(),
        metrics,
        stopped,
    ));

    let engine_failure =
        until_shutdown_or_engine_end(&mut engine, service_kit::shutdown::signal(), &engine_down)
            .await;
    if engine_failure.is_none() {
        tracing::info!(deadline = ?grace, "shutdown requested; no more claims");
    }
    stop.request();
    let stopping = async {
        if engine_failure.is_none() {
            engine_end(engine.await)?;
        }
        server.await.context("server task")??;
        if let Some(election) = election.task {
            let _ = election.await;
        }
        let _ = pruner.await;
        if let Some(sender) = sender {
            let _ = sender.await;
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(grace + SHUTDOWN_SLACK, stopping).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!("shutdown deadline passed; exiting with connections still open"),
    }
    db.close().await;
    drop(sole);
    if let Some(reason) = engine_failure {
        anyhow::bail!("the engine stopped: {reason}");
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

/// The engine's task, which ends with `Err(reason)` when it stops by itself.
type EngineTask = tokio::task::JoinHandle<Result<(), String>>;

/// Waits for `shutdown` or for the engine to end by itself, whichever comes first. A scheduler
/// whose engine has stopped must not go on serving as if it fired: the reason is published to
/// `engine_down` (so `/ready` fails) and returned, and the caller stops the server and exits
/// non-zero, so that a supervisor restarts the process.
async fn until_shutdown_or_engine_end(
    engine: &mut EngineTask,
    shutdown: impl Future<Output = ()>,
    engine_down: &watch::Sender<Option<String>>,
) -> Option<String> {
    let reason = tokio::select! {
        () = shutdown => return None,
        ended = engine => engine_end_reason(ended),
    };
    tracing::error!(%reason, "the engine stopped by itself; shutting down");
    engine_down.send_replace(Some(reason.clone()));
    Some(reason)
}

/// Why the engine task ended when nobody asked it to.
fn engine_end_reason(ended: Result<Result<(), String>, tokio::task::JoinError>) -> String {
    match ended {
        Ok(Ok(())) => "it returned without being asked to stop".to_string(),
        Ok(Err(reason)) => reason,
        Err(error) if error.is_panic() => format!(
            "it panicked: {}",
            jobstore::plan::panic_message(&*error.into_panic())
        ),
        Err(error) => format!("its task was cancelled: {error}"),
    }
}

/// The engine's end after a requested shutdown.
fn engine_end(ended: Result<Result<(), String>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match ended {
        Ok(Ok(())) => Ok(()),
        other => anyhow::bail!("the engine stopped: {}", engine_end_reason(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_engine_that_panics_is_published_and_reported() {
        let (down, watching) = watch::channel(None);
        let mut engine: EngineTask = tokio::spawn(async { panic!("claim loop broke") });
        let reason = until_shutdown_or_engine_end(&mut engine, std::future::pending(), &down).await;
        let reason = reason.expect("the engine's end is reported");
        assert!(reason.contains("panicked: claim loop broke"), "{reason}");
        assert_eq!(watching.borrow().as_deref(), Some(reason.as_str()));
    }

    #[tokio::test]
    async fn an_engine_that_returns_by_itself_is_a_failure_too() {
        let (down, watching) = watch::channel(None);
        let mut engine: EngineTask =
            tokio::spawn(async { Err("its outcome recorder ended".into()) });
        let reason = until_shutdown_or_engine_end(&mut engine, std::future::pending(), &down).await;
        assert_eq!(reason.as_deref(), Some("its outcome recorder ended"));
        assert!(watching.borrow().is_some());
    }

    #[tokio::test]
    async fn a_requested_shutdown_is_not_a_failure() {
        let (down, watching) = watch::channel(None);
        let mut engine: EngineTask = tokio::spawn(std::future::pending());
        let reason = until_shutdown_or_engine_end(&mut engine, async {}, &down).await;
        assert_eq!(reason, None);
        assert!(watching.borrow().is_none());
        engine.abort();
    }
}
