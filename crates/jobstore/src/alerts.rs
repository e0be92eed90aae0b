//! Alerts: incidents of schedules whose work did not happen, and their messages to the
//! configured channels ([`crate::AlertLog`] keeps both). One log per database, beside the
//! `execution` jobstore, like the audit log; what the ledger says of a schedule's runs, as the
//! checks read it, comes from each jobstore ([`crate::Ledger::alerting`]).

use chrono::{DateTime, Utc};
pub use scheduler_api::{Alert, AlertKind, AlertState};
use service_kit::auth::Owners;

use crate::model::Schedule;

/// A schedule whose alerts are checked, with what its runs tell.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    pub schedule: Schedule,
    pub runs: RunFacts,
}

/// What the run ledger says of one schedule, as the alert checks read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFacts {
    /// The scheduled time of the newest run that succeeded (`dispatched`).
    pub last_success: Option<DateTime<Utc>>,
    /// The runs that failed after it (all of them when none succeeded).
    pub failed_since: u32,
    /// The newest failed run's error.
    pub last_error: Option<String>,
    /// The scheduled time of the oldest occurrence waiting in line (`buffered`) behind a run in
    /// progress.
    pub oldest_waiting: Option<DateTime<Utc>>,
}

/// Which incidents a listing returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub state: Option<AlertState>,
    pub owner: Option<String>,
    /// Only incidents of owners within these (a scoped client's listing).
    pub owners: Option<Owners>,
    pub schedule_id: Option<String>,
    pub limit: usize,
}

impl AlertFilter {
    /// Every open incident, up to `limit`.
    pub fn open(limit: usize) -> Self {
        AlertFilter {
            state: Some(AlertState::Open),
            limit,
            ..AlertFilter::default()
        }
    }

    pub(crate) fn accepts(&self, alert: &Alert) -> bool {
        self.state.is_none_or(|state| state == alert.state)
            && self.owner.as_ref().is_none_or(|o| *o == alert.owner)
            && self
                .owners
                .as_ref()
                .is_none_or(|owners| owners.allows(&alert.owner))
            && self
                .schedule_id
                .as_ref()
                .is_none_or(|id| *id == alert.schedule_id)
    }
}

/// Which message about an incident: the one sent when it opened, or when it resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Opened,
    Resolved,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Opened => "opened",
            Phase::Resolved => "resolved",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [Phase::Opened, Phase::Resolved]
            .into_iter()
            .find(|phase| phase.as_str() == text)
    }
}

/// One message to send: an incident, as it is now, to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub alert: Alert,
    pub phase: Phase,
    pub channel: String,
    /// The attempts made before this one.
    pub attempts: u32,
}
