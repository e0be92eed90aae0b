//! The scheduler service: holds schedules and fires them.
//!
//! [`run`] wires the parts: the jobstores ([`jobstore`]), the engine ([`engine`]) that claims
//! due runs and dispatches them ([`dispatch`]), and the server ([`server`]) that exposes the
//! JSON-RPC API ([`api`]) and the AutoGPT routes ([`autogpt`]) on one port.

// The core: when (the engine) and what (the targets), over the jobstores.
mod alerts;
mod audit;
mod calendars;
mod declared;
mod dispatch;
mod endpoint;
mod engine;
mod outbound;
mod retention;
mod signing;
mod spans;
mod targets;

// The surfaces: the JSON-RPC API and its server, and the integrations over it.
mod api;
pub mod autogpt;
mod console;
mod farm;
mod watches;

// What the parts share, and what tests and the binary reach.
pub mod app;
pub mod config;
pub mod health;
mod leader;
pub mod openrpc;
pub mod server;
pub mod stores;
mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobstore::{DatabaseUrl, MemoryStore, StoreName};
use service_kit::shutdown::Background;
use tokio::sync::watch;

use crate::app::App;
use crate::config::Config;
use crate::engine::Engine;
use crate::stores::Stores;

/// What the process may take beyond `server.shutdown_timeout` to release runs and close.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(10);

/// Runs the service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Before any trigger is compiled: the calendars they may name.
    calendars::of(&config.calendars)?.install();
    let opened = Opened::open(&config).await?;
    let running = start(&config, &opened).await?;
    let stopped = running.until_stopped().await;
    opened.close().await;
    stopped?;
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Registers the declared schedules, then starts what runs: the election, the ledger's
/// pruning, the alerts, the sender of watches' completions, the engine and the server.
async fn start(config: &Config, opened: &Opened) -> anyhow::Result<Running> {
    let stores = opened.stores.clone();
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
    let mut background = Background::new(stopped.clone());
    let election = leader::elect(&opened.url, config.engine.leader_poll, stopped.clone())?;
    let leading = election.leading.clone();
    let (engine_down, engine_stopped) = watch::channel(None);
    let app = App::new(
        stores.clone(),
        leading.clone(),
        opened.url.backend(),
        config,
        tasks,
        engine_stopped,
    )?;
    let listener = service_kit::serve::listen(&config.server).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        database = %opened.url.redacted(),
        executor = %config.executor.url,
        "scheduler listening"
    );

    if let Some(task) = election.task {
        background.adopt("election", task);
    }
    start_background(&mut background, config, &app, &leading);
    let engine = Engine::new(
        stores,
        app.dispatcher.clone(),
        app.wake.clone(),
        config.engine.clone(),
        opened.sole.is_some(),
        leading,
        election.present.clone(),
    );
    let grace = config.server.shutdown_timeout;
    let engine = tokio::spawn(engine.run(stopped.clone(), grace));
    let server = tokio::spawn(server::serve(
        listener,
        app,
        config.clone(),
        metrics,
        stopped,
    ));
    Ok(Running {
        stop,
        grace,
        engine,
        engine_down,
        server,
        background,
    })
}

/// Starts the work beside the engine and the server: the ledger's pruning and the alerts (while
/// this replica leads), and the sender of watches' completions.
fn start_background(
    background: &mut Background,
    config: &Config,
    app: &App,
    leading: &watch::Receiver<bool>,
) {
    let stores = &app.stores;
    background.start("retention", |stopped| {
        retention::run(
            stores.clone(),
            config.ledger.clone(),
            leading.clone(),
            stopped,
        )
    });
    let targets = &app.dispatcher.targets;
    if let Some(log) = stores.alerts() {
        let alerting = alerts::Alerting {
            stores: stores.clone(),
            log,
            outbound: targets.outbound.clone(),
            config: config.alerts.clone(),
            leading: leading.clone(),
        };
        background.start("alerts", |stopped| alerting.run(stopped));
    }
    // Completions of watches are sent by every replica; a lease gives each to one of them.
    if let Some(store) = stores.watches() {
        let (watches, outbound) = (targets.watches.clone(), targets.outbound.clone());
        background.start("watch completions", |stopped| {
            watches::deliver(store, watches, outbound, stopped)
        });
    }
}

/// What [`start`] started, to be stopped together.
struct Running {
    stop: service_kit::shutdown::ShutdownTrigger,
    /// How long the engine's dispatches may take to finish at shutdown.
    grace: Duration,
    engine: EngineTask,
    /// Where the reason goes when the engine stops by itself (so `/ready` fails).
    engine_down: watch::Sender<Option<String>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    background: Background,
}

impl Running {
    /// Waits for SIGTERM or SIGINT, or for the engine to end by itself, then stops everything
    /// within the engine's grace (and some slack). An engine that ended by itself is an error.
    async fn until_stopped(mut self) -> anyhow::Result<()> {
        let signal = service_kit::shutdown::signal();
        let engine_failure =
            until_shutdown_or_engine_end(&mut self.engine, signal, &self.engine_down).await;
        if engine_failure.is_none() {
            tracing::info!(deadline = ?self.grace, "shutdown requested; no more claims");
        }
        self.stop.request();
        let stopping = async {
            if engine_failure.is_none() {
                engine_end(self.engine.await)?;
            }
            self.server.await.context("server task")??;
            self.background.stopped().await;
            anyhow::Ok(())
        };
        match tokio::time::timeout(self.grace + SHUTDOWN_SLACK, stopping).await {
            Ok(result) => result?,
            Err(_) => {
                tracing::warn!("shutdown deadline passed; exiting with connections still open")
            }
        }
        match engine_failure {
            Some(reason) => anyhow::bail!("the engine stopped: {reason}"),
            None => Ok(()),
        }
    }
}

/// The database this process uses and the jobstores on it.
struct Opened {
    url: DatabaseUrl,
    /// On SQLite, the lock that keeps a second process off the file.
    sole: Option<leader::SoleProcess>,
    db: jobstore::Database,
    stores: Stores,
}

impl Opened {
    /// Opens (and migrates) the configured database, with the lock of a sole process on
    /// SQLite, and the three jobstores.
    async fn open(config: &Config) -> anyhow::Result<Self> {
        let url = DatabaseUrl::parse(&config.database.url)?;
        let sole = match &url {
            DatabaseUrl::Sqlite { path } => Some(leader::SoleProcess::acquire(path)?),
            DatabaseUrl::Postgres { .. } => None,
        };
        if let Some(sole) = &sole {
            tracing::info!(lock = %sole.path().display(), "sole process on this SQLite store");
        }
        let db = jobstore::connect(&url, config.database.max_connections)
            .await
            .with_context(|| format!("opening database {}", url.redacted()))?;
        let stores = Stores::new([
            jobstore::persisted(&db, StoreName::Execution),
            jobstore::persisted(&db, StoreName::BatchedNotifications),
            Arc::new(MemoryStore::new(StoreName::WeeklyNotifications)),
        ])
        .with_watches(jobstore::watches(&db))
        .with_changes(jobstore::change_log(&db))
        .with_alerts(jobstore::alert_log(&db));
        Ok(Opened {
            url,
            sole,
            db,
            stores,
        })
    }

    /// Closes the pool, then lets go of the SQLite lock.
    async fn close(self) {
        self.db.close().await;
        drop(self.sole);
    }
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
