//! The schedule model: trigger + target + policy + owner, and the run ledger's records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use triggers::TriggerSpec;

/// The name of one of the AutoGPT scheduler's jobstores (a [`JobStore`](crate::JobStore) is
/// the store itself). The first two are persisted, each in its own table;
/// `weekly_notifications` lives in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreName {
    Execution,
    BatchedNotifications,
    WeeklyNotifications,
}

impl StoreName {
    pub const ALL: [StoreName; 3] = [
        StoreName::Execution,
        StoreName::BatchedNotifications,
        StoreName::WeeklyNotifications,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreName::Execution => "execution",
            StoreName::BatchedNotifications => "batched_notifications",
            StoreName::WeeklyNotifications => "weekly_notifications",
        }
    }

    /// The table that holds this jobstore's schedules in a database backend.
    pub(crate) fn table(self) -> &'static str {
        match self {
            StoreName::Execution => "schedules_execution",
            StoreName::BatchedNotifications => "schedules_batched_notifications",
            StoreName::WeeklyNotifications => "schedules_weekly_notifications",
        }
    }
}

/// What a fire does. Stored as JSON with a `type` tag so new targets add variants, not columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    /// JSON-RPC `add_graph_execution` on the execution service, for the schedule's owner.
    GraphExecution {
        graph_id: String,
        graph_version: i64,
        input_data: Value,
        input_credentials: Value,
    },
    /// One of the scheduler's own system tasks, named by `task`, with its keyword arguments.
    SystemTask {
        task: String,
        #[serde(default)]
        kwargs: Value,
    },
}

impl Target {
    /// The graph this target runs, for filtering listings.
    pub fn graph_id(&self) -> Option<&str> {
        match self {
            Target::GraphExecution { graph_id, .. } => Some(graph_id),
            Target::SystemTask { .. } => None,
        }
    }

    /// Whether this is a system task rather than a user's schedule.
    pub fn is_system_task(&self) -> bool {
        matches!(self, Target::SystemTask { .. })
    }
}

/// How late and missed occurrences are handled. The defaults are AutoGPT's: coalesce, and no
/// limit on how late a run may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// After downtime, run once for all missed occurrences instead of once for each.
    #[serde(default = "default_coalesce")]
    pub coalesce: bool,
    /// An occurrence later than this many seconds is skipped; `None` means no limit. At most
    /// [`Policy::MAX_MISFIRE_GRACE_SECS`].
    #[serde(default)]
    pub misfire_grace_secs: Option<u64>,
}

impl Policy {
    /// The longest misfire grace accepted: 100 years, longer than any outage; `None` is the
    /// way to say "no limit".
    pub const MAX_MISFIRE_GRACE_SECS: u64 = triggers::MAX_INTERVAL_SECS;

    /// Checks the values a caller gave, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        match self.misfire_grace_secs {
            Some(secs) if secs > Self::MAX_MISFIRE_GRACE_SECS => Err(format!(
                "policy.misfire_grace_secs must be at most {} (100 years), got {secs}; leave it \
                 out or null for no limit",
                Self::MAX_MISFIRE_GRACE_SECS
            )),
            _ => Ok(()),
        }
    }
}

fn default_coalesce() -> bool {
    true
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            coalesce: true,
            misfire_grace_secs: None,
        }
    }
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    /// The user who owns the schedule; only they may change or delete it.
    pub owner: String,
    pub trigger: TriggerSpec,
    pub target: Target,
    pub policy: Policy,
    pub paused: bool,
    /// Why it is paused, when it was paused with a reason: the error that parked it when the
    /// engine could not plan or dispatch it.
    pub paused_reason: Option<String>,
    /// The next occurrence in UTC; `None` once a trigger is exhausted or while paused.
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Which schedules a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub owner: Option<String>,
    pub graph_id: Option<String>,
    /// Paused schedules and those with no next run are left out unless this is set.
    pub include_inactive: bool,
}

impl ListFilter {
    pub(crate) fn accepts(&self, schedule: &Schedule) -> bool {
        self.owner
            .as_ref()
            .is_none_or(|owner| *owner == schedule.owner)
            && self
                .graph_id
                .as_deref()
                .is_none_or(|g| schedule.target.graph_id() == Some(g))
            && (self.include_inactive || (!schedule.paused && schedule.next_run_at.is_some()))
    }
}

/// The state of one occurrence in the run ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Claimed and not yet dispatched; owned by whoever holds the lease.
    Pending,
    Dispatched,
    Failed,
    Skipped,
    /// Missed during downtime and folded into a later run.
    Coalesced,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Dispatched => "dispatched",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
            RunStatus::Coalesced => "coalesced",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => RunStatus::Pending,
            "dispatched" => RunStatus::Dispatched,
            "failed" => RunStatus::Failed,
            "skipped" => RunStatus::Skipped,
            "coalesced" => RunStatus::Coalesced,
            _ => return None,
        })
    }
}

/// One occurrence in the run ledger, unique on `(schedule_id, scheduled_time)`. It carries a
/// copy of the owner and target so a claimed run can be dispatched even if its schedule is
/// deleted or changed meanwhile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub schedule_id: String,
    pub scheduled_time: DateTime<Utc>,
    pub jobstore: StoreName,
    pub owner: String,
    pub target: Target,
    pub status: RunStatus,
    /// The error, the reason for a skip, or what was coalesced.
    pub detail: Option<String>,
    pub attempts: u32,
    pub claimed_at: DateTime<Utc>,
    pub lease_until: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    /// The idempotency key sent with the dispatch: the ledger's unique key.
    pub fn idempotency_key(&self) -> String {
        format!(
            "{}@{}",
            self.schedule_id,
            self.scheduled_time
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// The end of a pending run, recorded after dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub schedule_id: String,
    pub scheduled_time: DateTime<Utc>,
    pub status: RunStatus,
    pub detail: Option<String>,
    pub attempts: u32,
    pub finished_at: DateTime<Utc>,
}
