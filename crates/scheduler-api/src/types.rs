//! The values the API exchanges.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::alerts::AlertPolicy;
use crate::target::{Overlap, Target};
use triggers::TriggerSpec;

/// A graph execution schedule as AutoGPT's `GraphExecutionJobInfo` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphExecutionJobInfo {
    /// Always `graph`, the kind of schedule this service holds (AutoGPT's discriminator).
    #[serde(default = "graph_kind")]
    pub kind: String,
    pub id: String,
    /// The schedule's id again, as AutoGPT's job arguments carry it.
    #[serde(default)]
    pub schedule_id: Option<String>,
    pub name: String,
    /// The name given when the schedule was added; null when none was.
    #[serde(default)]
    pub agent_name: Option<String>,
    pub user_id: String,
    pub graph_id: String,
    pub graph_version: i64,
    pub cron: String,
    pub input_data: Value,
    pub input_credentials: Value,
    /// The next fire, RFC 3339 with the offset of the schedule's zone; null while paused.
    pub next_run_time: Option<DateTime<FixedOffset>>,
    /// The IANA zone the cron expression is evaluated in.
    pub timezone: String,
    /// The organisation the schedule belongs to; `""` for none, as AutoGPT stores it.
    #[serde(default)]
    pub organization_id: String,
    /// The team within the organisation; null for the organisation's home.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The hired expert the schedule belongs to, if any.
    #[serde(default)]
    pub expert_id: Option<String>,
    /// Why the schedule is paused, when the engine parked it (it could not plan or dispatch
    /// it): the error. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
}

fn graph_kind() -> String {
    GRAPH_KIND.to_string()
}

/// The kind of AutoGPT schedule this service holds: `get_execution_schedules` lists it, and
/// lists nothing for AutoGPT's other kind (`copilot_turn`).
pub const GRAPH_KIND: &str = "graph";

/// AutoGPT's schedule kind that is not scheduling of this service's (a copilot turn).
pub const COPILOT_TURN_KIND: &str = "copilot_turn";

/// Per-schedule policy; absent fields keep the defaults. On the wire it is a JSON
/// object and nothing else: serde would take an array as the fields in order, which the API
/// does not document and refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct SchedulePolicy {
    /// After downtime run once for all missed occurrences (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalesce: Option<bool>,
    /// Skip an occurrence later than this many seconds (default: no limit; at most 100 years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire_grace_secs: Option<u64>,
    /// An occurrence due while a run is in progress: `skip` (default), `buffer_one` or
    /// `allow_all`. Applies to targets whose runs last (`rpc`, `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    /// Delay each occurrence by up to this many seconds (0-86400, default 0), the same delay
    /// for the same occurrence on every replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_secs: Option<u64>,
    /// Attempts per occurrence, the first included (1-20; default the service's
    /// `executor.retries` + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The delay before the second attempt in milliseconds, doubling after each (default the
    /// service's `executor.retry_delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// How long an occurrence of a `device_job` placed by tags (`select`) waits for a phone
    /// before it fails with the reason (1-86400 seconds, default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_timeout_secs: Option<u64>,
    /// When incidents open (`late_after_secs`, `failed_in_a_row`, `missing_after_secs`);
    /// unset checks take the service's `[alerts]` defaults, 0 turns one off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertPolicy>,
}

impl Serialize for SchedulePolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SchedulePolicy::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for SchedulePolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let fields = Map::<String, Value>::deserialize(deserializer).map_err(|error| {
            D::Error::custom(format!(
                "policy must be an object {{coalesce, misfire_grace_secs, overlap, jitter_secs, \
                 attempts, backoff_ms, placement_timeout_secs, alerts}}: {error}"
            ))
        })?;
        SchedulePolicy::deserialize(Value::Object(fields.clone())).map_err(|error| {
            // Name the field at fault: serde's message about a value does not.
            let culprit = fields.iter().find(|(name, value)| {
                let alone = Map::from_iter([((*name).clone(), (*value).clone())]);
                SchedulePolicy::deserialize(Value::Object(alone)).is_err()
            });
            match culprit {
                Some((name, _)) => D::Error::custom(format!("policy.{name}: {error}")),
                None => D::Error::custom(format!("policy: {error}")),
            }
        })
    }
}

/// The state of one occurrence in the run ledger: one type for the ledger, the API and the
/// metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Claimed; dispatch under way (or, for a target that lasts, waiting for its answer). Owned
    /// by whoever holds the lease.
    Pending,
    /// Waiting for the schedule's run in progress to end (overlap `buffer_one`, a backfill);
    /// it becomes `pending` then.
    Buffered,
    Dispatched,
    Failed,
    Skipped,
    /// Missed during downtime and folded into a later run.
    Coalesced,
}

impl RunStatus {
    /// Every status, in the order of the ledger's life.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Pending,
        RunStatus::Buffered,
        RunStatus::Dispatched,
        RunStatus::Failed,
        RunStatus::Skipped,
        RunStatus::Coalesced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Buffered => "buffered",
            RunStatus::Dispatched => "dispatched",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
            RunStatus::Coalesced => "coalesced",
        }
    }

    /// Whether a row with this status has not ended: in progress (`pending`) or waiting
    /// (`buffered`). Such rows hold a lease or a place in line and are never pruned.
    pub fn is_open(self) -> bool {
        matches!(self, RunStatus::Pending | RunStatus::Buffered)
    }

    pub fn parse(text: &str) -> Option<Self> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// One occurrence of a schedule, from the run ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRun {
    pub schedule_id: String,
    pub scheduled_time: DateTime<Utc>,
    pub status: RunStatus,
    /// The error, the reason for a skip, or what was coalesced.
    pub detail: Option<String>,
    pub attempts: u32,
    pub claimed_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Sent to the target with the dispatch: `<schedule_id>@<scheduled_time>`.
    pub idempotency_key: String,
    /// Where an occurrence of a `device_job` that selects by tags was placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// The phone an occurrence was placed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub runner: String,
    pub device: String,
    /// How often its job was taken back from a quarantined phone and placed again.
    pub moves: u32,
}

/// A schedule of the general API: any trigger, any target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    /// The user who owns it, or `system` for a schedule declared in the configuration.
    pub owner: String,
    /// The jobstore it lives in (`execution`, `batched_notifications`).
    pub jobstore: String,
    pub trigger: TriggerSpec,
    pub target: Target,
    /// The policy in effect: every field set except `attempts`, `backoff_ms` and
    /// `placement_timeout_secs` when they follow the service's defaults.
    pub policy: SchedulePolicy,
    pub tags: Vec<String>,
    pub paused: bool,
    /// Why it is paused: the reason given, or the error that parked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// The IANA zone its times are shown in.
    pub timezone: String,
    /// The next fire, with the offset of the schedule's zone; null while paused or exhausted.
    pub next_run_time: Option<DateTime<FixedOffset>>,
    /// The next fires (up to 5), with the offset of the schedule's zone.
    pub next_fire_times: Vec<DateTime<FixedOffset>>,
    pub created_at: DateTime<Utc>,
    /// Declared in the configuration: read-only through the API.
    pub declared: bool,
    /// Its latest occurrence in the ledger (`get_schedule` and `list_schedules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<ScheduleRun>,
}

/// `preview_fires`: what falls due in a window, and where the bursts are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirePreview {
    /// The occurrences in time order (then by schedule id), the first `limit` of them.
    pub fires: Vec<PreviewFire>,
    /// How many occurrences the window holds in all, listed or not.
    pub total: u64,
    /// Whether `fires` stops at `limit` before the window's end.
    pub truncated: bool,
    /// Each minute of the window that has occurrences, in time order, with how many.
    pub per_minute: Vec<MinuteCount>,
    /// The busiest minutes, the most occurrences first (up to 10).
    pub busiest: Vec<MinuteCount>,
}

/// One occurrence `preview_fires` foresees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewFire {
    pub at: DateTime<Utc>,
    pub schedule_id: String,
    pub name: String,
    pub owner: String,
    pub jobstore: String,
    /// Its target's kind (`http`, `device_job`, ...).
    pub target_type: String,
}

/// How many occurrences fall due in the minute that starts at `minute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCount {
    pub minute: DateTime<Utc>,
    pub count: u64,
}

/// One change of a schedule or watch, as the audit log (`list_changes`) shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleChange {
    /// Its place in the log; a page's cursor.
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub jobstore: String,
    pub schedule_id: String,
    pub owner: String,
    /// Who: the client's name (`[[auth.clients]]`, `user`, `admin`, `anonymous`), or
    /// `engine`, `config`, `import` for the product itself.
    pub actor: String,
    /// Through which route: `jsonrpc`, `autogpt`, `farm`, or the actor's own for the product.
    pub route: String,
    /// `create`, `replace`, `update`, `pause`, `resume`, `delete`, `trigger`, `backfill`,
    /// `sync`, `import`, `park`, `cancel`.
    pub action: String,
    /// What changed: `{"field": {"before": …, "after": …}}`, or what the action did.
    pub changes: serde_json::Value,
}

/// One page of `list_changes`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePage {
    pub changes: Vec<ScheduleChange>,
    /// Pass as `cursor` for the next (older) page; absent on the last.
    pub next_cursor: Option<String>,
}

/// An exclusion calendar (`[calendars.<name>]`), as `list_calendars` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarView {
    pub name: String,
    /// The IANA zone its dates are local to.
    pub zone: String,
    /// Dates (`2026-12-25`) and ranges (`2026-12-24..2026-12-26`, both ends included).
    pub dates: Vec<String>,
    /// Days of the week, `mon` … `sun`.
    pub weekdays: Vec<String>,
}

/// One page of `list_schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulePage {
    pub schedules: Vec<Schedule>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// One page of `list_runs`, newest occurrence first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPage {
    pub runs: Vec<ScheduleRun>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// The answer of `backfill_schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    /// Occurrences written to the ledger to run, oldest first.
    pub queued: u32,
    /// Occurrences of the range already in the ledger, left as they are.
    pub already_in_ledger: u32,
}

/// The answer of `get_scheduler_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerStatus {
    pub started_at: DateTime<Utc>,
    pub uptime_secs: f64,
    /// Whether this replica leads (fires the in-memory jobstores). A sole process on SQLite
    /// always leads.
    pub leader: bool,
    /// `postgres` or `sqlite`.
    pub database: String,
    /// Whether the database answers now.
    pub database_ok: bool,
    pub jobstores: Vec<JobstoreStatus>,
    /// The earliest next run over the jobstores this replica fires.
    pub next_run_time: Option<DateTime<Utc>>,
}

/// One jobstore in `get_scheduler_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobstoreStatus {
    pub name: String,
    /// `postgres`, `sqlite` or `memory`.
    pub backend: String,
    /// How many schedules it holds, as counted at most 10 s before (a count is made again in
    /// the background, so a call never waits for a count of a large table after the first);
    /// null when the store cannot be read.
    pub schedules: Option<u64>,
    /// Its earliest next run, or lease expiry of a run in flight.
    pub next_run_time: Option<DateTime<Utc>>,
    /// Whether this replica fires it now (in-memory stores: only the leader).
    pub active: bool,
}

/// The answer of `get_registry`: everything this replica would fire, so an operator can check
/// that a deploy dropped nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Whether this replica leads; the in-memory jobstore listed is this replica's own.
    pub leader: bool,
    /// Every schedule in every jobstore, system tasks included, paused ones too.
    pub schedules: Vec<RegistryEntry>,
    /// Every declared system task, registered or not.
    pub system_tasks: Vec<SystemTaskEntry>,
}

/// One schedule in `get_registry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryEntry {
    pub id: String,
    pub jobstore: String,
    pub name: String,
    /// The owning user, or `system` for a system task.
    pub owner: String,
    /// The trigger as stored: `{"type": "cron", "expression": ..., "timezone": ...}`,
    /// `{"type": "interval", ...}` or `{"type": "once", ...}`.
    pub trigger: Value,
    /// What a fire does, as stored (`{"type": "graph_execution", ...}` or
    /// `{"type": "system_task", ...}`).
    pub target: Value,
    pub paused: bool,
    /// Why it is paused, when it was parked by the engine.
    #[serde(default)]
    pub paused_reason: Option<String>,
    pub next_run_time: Option<DateTime<Utc>>,
}

/// One declared system task in `get_registry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemTaskEntry {
    /// Its schedule id.
    pub id: String,
    /// Which task: `process_weekly_summary`, `report_late_executions`, ...
    pub task: String,
    pub jobstore: String,
    /// The trigger it is declared with; null for a task run only by hand.
    pub trigger: Option<Value>,
    /// Whether it can run: false when the service it calls is not configured.
    pub enabled: bool,
    /// Why it cannot run, when it cannot.
    pub disabled_reason: Option<String>,
    /// Its next scheduled run, from its jobstore.
    pub next_run_time: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_policy_is_an_object_and_nothing_else() {
        let policy: SchedulePolicy =
            serde_json::from_value(json!({"coalesce": false, "misfire_grace_secs": 5})).unwrap();
        assert_eq!(
            policy,
            SchedulePolicy {
                coalesce: Some(false),
                misfire_grace_secs: Some(5),
                ..SchedulePolicy::default()
            }
        );
        assert_eq!(
            serde_json::to_value(policy).unwrap(),
            json!({"coalesce": false, "misfire_grace_secs": 5})
        );
        for refused in [
            json!([false, 5]),
            json!([]),
            json!("x"),
            json!(1),
            json!({"coalesce": 1}),
            json!({"misfire_grace_secs": -1}),
            json!({"misfire_grace_secs": 18446744073709551616.0}),
            json!({"other": true}),
        ] {
            let error = serde_json::from_value::<SchedulePolicy>(refused.clone())
                .expect_err(&refused.to_string());
            assert!(error.to_string().contains("policy"), "{refused}: {error}");
        }
    }
}
