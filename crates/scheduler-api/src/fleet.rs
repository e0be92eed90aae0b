//! The fleet: every phone of every device runner the scheduler follows, as `list_fleet`
//! shows it.

use chrono::{DateTime, Utc};
use device_runner_api::{DeviceHealth, Quarantine};
use serde::{Deserialize, Serialize};

/// Where a phone of the fleet stands, for placing and for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneState {
    /// Online, inside its gates, running nothing.
    Idle,
    /// Running a job.
    Busy,
    /// Online but outside a health gate (`held` says which).
    Held,
    /// Out of service until released.
    Quarantined,
    /// Not usable: adb does not list it as `device`.
    Offline,
    /// Its runner does not answer: the phone as the runner last reported it.
    Unreachable,
}

impl PhoneState {
    pub const ALL: [PhoneState; 6] = [
        PhoneState::Idle,
        PhoneState::Busy,
        PhoneState::Held,
        PhoneState::Quarantined,
        PhoneState::Offline,
        PhoneState::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PhoneState::Idle => "idle",
            PhoneState::Busy => "busy",
            PhoneState::Held => "held",
            PhoneState::Quarantined => "quarantined",
            PhoneState::Offline => "offline",
            PhoneState::Unreachable => "unreachable",
        }
    }

    /// Whether a job may be placed on it (it is counted by its load then).
    pub fn takes_jobs(self) -> bool {
        matches!(self, PhoneState::Idle | PhoneState::Busy)
    }
}

/// The job a phone runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningJob {
    pub id: String,
    pub job_type: String,
    pub started_at: Option<DateTime<Utc>>,
    /// `schedule <id>` for a job the scheduler queued.
    pub source: Option<String>,
}

/// A phone of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetPhone {
    pub runner: String,
    pub serial: String,
    pub label: Option<String>,
    pub tags: Vec<String>,
    pub state: PhoneState,
    /// adb's state as the runner reports it (`device`, `offline`, `absent`, `configured`).
    pub adb_state: String,
    pub health: Option<DeviceHealth>,
    pub quarantine: Option<Quarantine>,
    /// Why it starts no new job, when it does not although it is online.
    pub held: Option<String>,
    pub running: Option<RunningJob>,
    /// Jobs waiting in its queue.
    pub queued: u64,
    pub last_ended_at: Option<DateTime<Utc>>,
}

/// A device runner the scheduler follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetRunner {
    /// Its name in `[device_runners.<name>]`.
    pub name: String,
    /// The name it reports (`name`, by default its host's).
    pub reports_as: Option<String>,
    pub reachable: bool,
    /// When it last answered; `None` if it never did.
    pub last_seen: Option<DateTime<Utc>>,
    /// Why it does not answer, while it does not.
    pub error: Option<String>,
    pub phones: usize,
}

/// The answer of `list_fleet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    /// Every runner, reachable or not.
    pub runners: Vec<FleetRunner>,
    /// The phones that match the filters, by runner then serial.
    pub phones: Vec<FleetPhone>,
}
