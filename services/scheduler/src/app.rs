//! State shared by the RPC handlers and the engine.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use jobstore::{JobStore, StoreError, StoreName};
use scheduler_api::SchedulerError;
use service_kit::auth::Auth;
use tokio::sync::{Notify, watch};

use crate::autogpt::tasks::DeclaredTask;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::stores::Stores;

/// What every handler needs.
pub struct App {
    pub stores: Stores,
    /// Wakes the engine when schedules change.
    pub wake: Arc<Notify>,
    pub started_at: Instant,
    pub started_at_utc: DateTime<Utc>,
    /// Whether this replica leads (see `leader.rs`).
    pub leader: watch::Receiver<bool>,
    /// The database backend's name.
    pub database: &'static str,
    /// Where runs go: the execution service and the system tasks' services.
    pub dispatcher: Arc<Dispatcher>,
    /// The declared system tasks, as registered at start.
    pub tasks: Vec<DeclaredTask>,
    /// The lease of a run started by hand (`execute_<task>`).
    pub lease: TimeDelta,
    pub auth: Auth,
    /// Set, with the reason, once the engine has stopped firing.
    pub engine_stopped: watch::Receiver<Option<String>>,
    /// Due work overdue beyond this makes `/ready` fail: the engine is stuck.
    pub max_overdue: TimeDelta,
    /// The last count of each jobstore's schedules, for `get_scheduler_status`.
    pub counts: Arc<crate::stores::Counts>,
}

impl App {
    pub fn new(
        stores: Stores,
        leader: watch::Receiver<bool>,
        database: &'static str,
        config: &Config,
        tasks: Vec<DeclaredTask>,
        engine_stopped: watch::Receiver<Option<String>>,
    ) -> anyhow::Result<Arc<Self>> {
        let dispatcher = Arc::new(Dispatcher::new(config, &stores)?);
        Ok(Arc::new(App {
            stores,
            wake: Arc::new(Notify::new()),
            started_at: Instant::now(),
            started_at_utc: Utc::now(),
            leader,
            database,
            dispatcher,
            tasks,
            lease: config.engine.lease_delta(),
            auth: Auth::new(&config.auth)?,
            engine_stopped,
            max_overdue: TimeDelta::from_std(config.engine.max_overdue).unwrap_or(TimeDelta::MAX),
            counts: Arc::default(),
        }))
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// The store graph execution schedules live in.
    pub fn execution(&self) -> Result<&Arc<dyn JobStore>, SchedulerError> {
        self.stores.get(StoreName::Execution).ok_or_else(|| {
            SchedulerError::Runtime("the execution jobstore is not configured".into())
        })
    }
}

/// Storage failures reach callers as `RuntimeError` without internal detail; the detail is logged.
pub fn storage_error(error: StoreError) -> SchedulerError {
    tracing::error!(%error, "storage operation failed");
    SchedulerError::Runtime(format!("storage unavailable: {error}"))
}
