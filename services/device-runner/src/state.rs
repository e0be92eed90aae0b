//! The state every part shares: configuration, store, the devices with their supervisors, and
//! the logs being written.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use device_runner_api::{DeviceInfo, Job, Quarantine, RunnerError};
use service_kit::subscriptions::Accepting;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::output::LogProgress;
use crate::store::{Store, StoreError};

/// What a device's supervisor is told.
#[derive(Debug)]
pub enum Command {
    /// The queue changed: look again.
    Wake,
    /// Stop the running job `job_id` as `killed`.
    Kill {
        job_id: String,
        reply: oneshot::Sender<Result<Job, RunnerError>>,
    },
    /// The device became usable or not (from adb).
    Usable(bool, String),
    /// The phone is outside a health gate (why), or inside them all (`None`).
    Gate(Option<String>),
    /// The phone was quarantined, or released (`None`).
    Quarantine(Option<Quarantine>),
    /// The phone is too hot to go on: stop its running job.
    Overheat(String),
    /// Stop the running job as `interrupted` and end.
    Shutdown(oneshot::Sender<()>),
}

/// What a supervisor shows of its running jobs (at most one on a device): id and pid, in
/// start order.
#[derive(Debug, Clone, Default)]
pub struct RunningView {
    pub jobs: Vec<(String, i32)>,
    /// When its last job ended (from the store at start, then as they end): a scheduler
    /// placing a job gives it to the phone idle the longest among equals.
    pub last_ended: Option<DateTime<Utc>>,
}

/// A device or a pool and the handle of its supervisor.
pub struct DeviceEntry {
    pub info: DeviceInfo,
    /// The health gate it is outside of, from its last facts.
    pub gate: Option<String>,
    pub commands: mpsc::UnboundedSender<Command>,
    pub running: Arc<Mutex<RunningView>>,
}

/// The logs being written, by job id, for followers.
pub type LogFollowers = Arc<Mutex<HashMap<String, watch::Receiver<LogProgress>>>>;

pub struct RunnerState {
    pub config: Arc<Config>,
    pub store: Store,
    /// The name it reports ([`Config::runner_name`]), read once at start.
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub devices: RwLock<BTreeMap<String, DeviceEntry>>,
    /// Logs being written, for followers; finished logs are read from their files.
    pub logs: LogFollowers,
    /// Log subscriptions being accepted, so an unsubscribe that follows at once ends them.
    pub accepting: Accepting,
    /// Where supervisors tell of a phone they quarantined after failures in a row.
    pub quarantine_notices: mpsc::UnboundedSender<(String, Quarantine)>,
    notices: Mutex<Option<mpsc::UnboundedReceiver<(String, Quarantine)>>>,
    /// Quarantines stored for phones not registered yet (adb has not listed them since the
    /// start), applied when they are.
    stored_quarantines: Mutex<HashMap<String, Quarantine>>,
}

impl RunnerState {
    pub fn new(config: Arc<Config>, store: Store) -> Arc<RunnerState> {
        let (quarantine_notices, notices) = mpsc::unbounded_channel();
        Arc::new(RunnerState {
            quarantine_notices,
            notices: Mutex::new(Some(notices)),
            stored_quarantines: Mutex::default(),
            name: config.runner_name(),
            config,
            store,
            started_at: Utc::now(),
            devices: RwLock::default(),
            logs: LogFollowers::default(),
            accepting: Accepting::default(),
        })
    }

    /// Tells a device's supervisor something; false when there is no such device.
    pub fn send(&self, device: &str, command: Command) -> bool {
        let devices = self.devices.read().unwrap_or_else(|e| e.into_inner());
        devices
            .get(device)
            .is_some_and(|entry| entry.commands.send(command).is_ok())
    }

    /// Every phone (not the pools), in serial order.
    pub fn phones(&self) -> Vec<DeviceInfo> {
        let devices = self.devices.read().unwrap_or_else(|e| e.into_inner());
        devices
            .values()
            .filter(|entry| !entry.info.serial.starts_with(crate::config::POOL_PREFIX))
            .map(|entry| entry.info.clone())
            .collect()
    }

    pub fn device_info(&self, device: &str) -> Option<DeviceInfo> {
        let devices = self.devices.read().unwrap_or_else(|e| e.into_inner());
        devices.get(device).map(|entry| entry.info.clone())
    }

    /// What supervisors tell of the phones they quarantine; taken once, by the health task.
    pub fn take_quarantine_notices(&self) -> Option<mpsc::UnboundedReceiver<(String, Quarantine)>> {
        self.notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Keeps the quarantines read from the store at start, for phones registered later.
    pub fn keep_stored_quarantines(&self, quarantines: HashMap<String, Quarantine>) {
        *self
            .stored_quarantines
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = quarantines;
    }

    /// The stored quarantine of a phone being registered, if it has one.
    pub fn stored_quarantine(&self, serial: &str) -> Option<Quarantine> {
        self.stored_quarantines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(serial)
    }

    /// The phones in quarantine.
    pub fn quarantined(&self) -> Vec<(String, Quarantine)> {
        let devices = self.devices.read().unwrap_or_else(|e| e.into_inner());
        devices
            .values()
            .filter_map(|entry| Some((entry.info.serial.clone(), entry.info.quarantine.clone()?)))
            .collect()
    }
}

/// A store failure as the API reports it.
pub fn storage_error(error: StoreError) -> RunnerError {
    tracing::error!(%error, "store failure");
    RunnerError::Runtime(format!("storage failure: {error}"))
}
