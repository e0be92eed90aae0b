//! The schedule model: trigger + target + policy + owner, and the run ledger's records.

use chrono::{DateTime, Utc};
pub use scheduler_api::{
    AlertPolicy, DeviceJobTarget, DeviceSelector, ExpectedStatus, GraphExecutionTarget, HttpTarget,
    Origin, Overlap, RedisPublishTarget, RpcTarget, RunStatus, SystemTaskTarget, Target,
    WatchTarget, http_method,
};
use serde::{Deserialize, Serialize};
use service_kit::auth::Owners;
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
    /// What an occurrence meeting a run in progress does.
    #[serde(default)]
    pub overlap: Overlap,
    /// Each occurrence is sent this many seconds late at most: a delay in `[0, jitter)`
    /// derived from its idempotency key, so every replica computes the same one.
    #[serde(default)]
    pub jitter_secs: u64,
    /// Attempts per occurrence, the first included; `None` for the service's default
    /// (`executor.retries` + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The delay before the second attempt, doubling after each; `None` for the service's
    /// default (`executor.retry_delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// How long an occurrence of a device job placed by tags waits for a phone to take it
    /// before it fails with the reason; `None` for the default,
    /// [`Policy::DEFAULT_PLACEMENT_TIMEOUT_SECS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_timeout_secs: Option<u64>,
    /// When incidents open; unset checks take the service's `[alerts]` defaults.
    #[serde(default, skip_serializing_if = "AlertPolicy::is_empty")]
    pub alerts: AlertPolicy,
}

impl Policy {
    /// How long an occurrence waits for a phone by default: ten minutes.
    pub const DEFAULT_PLACEMENT_TIMEOUT_SECS: u64 = 600;
    /// The longest wait for a phone: one day.
    pub const MAX_PLACEMENT_TIMEOUT_SECS: u64 = 86_400;

    /// How long an occurrence waits for a phone.
    pub fn placement_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.placement_timeout_secs
                .unwrap_or(Self::DEFAULT_PLACEMENT_TIMEOUT_SECS),
        )
    }

    /// The longest misfire grace accepted: 100 years, longer than any outage; `None` is the
    /// way to say "no limit".
    pub const MAX_MISFIRE_GRACE_SECS: u64 = triggers::MAX_INTERVAL_SECS;
    /// The widest jitter accepted: one day.
    pub const MAX_JITTER_SECS: u64 = 86_400;
    /// The most attempts per occurrence.
    pub const MAX_ATTEMPTS: u32 = 20;
    /// The longest first backoff: one hour.
    pub const MAX_BACKOFF_MS: u64 = 3_600_000;

    /// Checks the values a caller gave, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(secs) = self.misfire_grace_secs
            && secs > Self::MAX_MISFIRE_GRACE_SECS
        {
            return Err(format!(
                "policy.misfire_grace_secs must be at most {} (100 years), got {secs}; leave it \
                 out or null for no limit",
                Self::MAX_MISFIRE_GRACE_SECS
            ));
        }
        if self.jitter_secs > Self::MAX_JITTER_SECS {
            return Err(format!(
                "policy.jitter_secs must be at most {} (one day), got {}",
                Self::MAX_JITTER_SECS,
                self.jitter_secs
            ));
        }
        if let Some(attempts) = self.attempts
            && !(1..=Self::MAX_ATTEMPTS).contains(&attempts)
        {
            return Err(format!(
                "policy.attempts must be 1 to {}, got {attempts}",
                Self::MAX_ATTEMPTS
            ));
        }
        if let Some(ms) = self.backoff_ms
            && ms > Self::MAX_BACKOFF_MS
        {
            return Err(format!(
                "policy.backoff_ms must be at most {} (one hour), got {ms}",
                Self::MAX_BACKOFF_MS
            ));
        }
        if let Some(secs) = self.placement_timeout_secs
            && !(1..=Self::MAX_PLACEMENT_TIMEOUT_SECS).contains(&secs)
        {
            return Err(format!(
                "policy.placement_timeout_secs must be 1 to {} (one day), got {secs}",
                Self::MAX_PLACEMENT_TIMEOUT_SECS
            ));
        }
        self.alerts.validate("policy.alerts")?;
        Ok(())
    }

    /// The delay of an occurrence under the jitter: in `[0, jitter_secs)` seconds, the same
    /// for the same key on every replica and in every life of the process.
    pub fn jitter_for(&self, key: &str) -> std::time::Duration {
        if self.jitter_secs == 0 {
            return std::time::Duration::ZERO;
        }
        // FNV-1a: stable across builds and platforms, unlike the standard library's hasher.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        std::time::Duration::from_millis(hash % (self.jitter_secs * 1000))
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
            overlap: Overlap::default(),
            jitter_secs: 0,
            attempts: None,
            backoff_ms: None,
            placement_timeout_secs: None,
            alerts: AlertPolicy::default(),
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
    /// Labels for filtering listings.
    #[serde(default)]
    pub tags: Vec<String>,
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
    /// Only this owner's schedules; with [`ListFilter::tenancy`], this owner's beside the
    /// organisation's.
    pub owner: Option<String>,
    /// AutoGPT's organisation visibility (`get_execution_schedules`).
    pub tenancy: Option<Tenancy>,
    /// Only schedules whose owner is within these (a scoped client's listing).
    pub owners: Option<Owners>,
    pub graph_id: Option<String>,
    /// Paused schedules and those with no next run are left out unless this is set.
    pub include_inactive: bool,
    /// Only targets of this kind (`http`, `rpc`, ...).
    pub target_type: Option<String>,
    /// Only paused (true) or only unpaused (false) schedules.
    pub paused: Option<bool>,
    /// Only schedules carrying this tag.
    pub tag: Option<String>,
    /// Pages by id: only ids after this one, in id order, at most `limit`. Without it the
    /// listing is every match, oldest first.
    pub page: Option<Page>,
}

/// AutoGPT's organisation visibility: a schedule is seen when it is the listing's owner's, or
/// when it belongs to the organisation without a team or with one of `team_ids`, unless it is
/// an expert's (those only their owner sees).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenancy {
    pub organization_id: String,
    pub team_ids: Vec<String>,
}

impl Tenancy {
    /// Whether the organisation sees `target` (its owner aside).
    pub fn admits(&self, target: &Target) -> bool {
        let Some(graph) = target.graph() else {
            return false;
        };
        graph.expert_id.is_none()
            && graph.organization_id.as_deref() == Some(self.organization_id.as_str())
            && graph
                .team_id
                .as_ref()
                .is_none_or(|team| self.team_ids.contains(team))
    }
}

/// A page of a listing ordered by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub after_id: Option<String>,
    pub limit: usize,
}

impl ListFilter {
    pub(crate) fn accepts(&self, schedule: &Schedule) -> bool {
        let owned = self
            .owner
            .as_ref()
            .is_none_or(|owner| *owner == schedule.owner);
        let seen = match &self.tenancy {
            None => owned,
            Some(tenancy) => (self.owner.is_some() && owned) || tenancy.admits(&schedule.target),
        };
        seen && self
            .owners
            .as_ref()
            .is_none_or(|owners| owners.allows(&schedule.owner))
            && self
                .graph_id
                .as_deref()
                .is_none_or(|g| schedule.target.graph_id() == Some(g))
            && (self.include_inactive || (!schedule.paused && schedule.next_run_at.is_some()))
            && self
                .target_type
                .as_deref()
                .is_none_or(|kind| schedule.target.kind() == kind)
            && self.paused.is_none_or(|paused| schedule.paused == paused)
            && self
                .tag
                .as_ref()
                .is_none_or(|tag| schedule.tags.contains(tag))
            && self.page.as_ref().is_none_or(|page| {
                page.after_id
                    .as_ref()
                    .is_none_or(|after| schedule.id > *after)
            })
    }
}

/// Which ledger rows of a schedule [`Ledger::runs`](crate::Ledger::runs) returns, newest
/// scheduled time first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    /// Only occurrences scheduled at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only occurrences scheduled before this instant (the cursor of the next page).
    pub before: Option<DateTime<Utc>>,
    pub limit: usize,
}

impl RunFilter {
    /// The newest `limit` rows.
    pub fn latest(limit: usize) -> Self {
        RunFilter {
            status: None,
            since: None,
            before: None,
            limit,
        }
    }

    pub(crate) fn accepts(&self, run: &RunRecord) -> bool {
        self.status.is_none_or(|status| run.status == status)
            && self.since.is_none_or(|since| run.scheduled_time >= since)
            && self.before.is_none_or(|before| run.scheduled_time < before)
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
    /// The schedule's policy when the occurrence was planned (jitter, retries).
    pub policy: Policy,
    pub status: RunStatus,
    /// The error, the reason for a skip, or what was coalesced.
    pub detail: Option<String>,
    pub attempts: u32,
    pub claimed_at: DateTime<Utc>,
    pub lease_until: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    /// When the run is to go: its scheduled time plus its jitter, the same on every replica.
    pub fn goes_at(&self) -> DateTime<Utc> {
        if self.policy.jitter_secs == 0 {
            return self.scheduled_time;
        }
        let jitter = chrono::TimeDelta::from_std(self.policy.jitter_for(&self.idempotency_key()))
            .unwrap_or_default();
        self.scheduled_time
            .checked_add_signed(jitter)
            .unwrap_or(self.scheduled_time)
    }

    /// The idempotency key sent with the dispatch: the ledger's unique key, the scheduled time
    /// exactly as stored. A whole-second occurrence keeps the form it always had
    /// (`id@2026-01-01T10:00:00Z`); one with milliseconds (a run by hand) carries them
    /// (`id@2026-01-01T10:00:00.605Z`), so no two occurrences share a key.
    pub fn idempotency_key(&self) -> String {
        format!(
            "{}@{}",
            self.schedule_id,
            self.scheduled_time
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )
    }
}

/// What a pending run waits for (the job a device runner queued for it), written into its
/// detail ([`crate::Ledger::annotate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RunNote {
    pub schedule_id: String,
    pub scheduled_time: DateTime<Utc>,
    pub detail: String,
}

/// Where a pending run goes, to write to its ledger row ([`crate::Ledger::place`]): the placed
/// target, if the row is still placed as `expected` says (`placement()` of the target it was
/// read with; `None` before the first placement).
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlacement {
    pub schedule_id: String,
    pub scheduled_time: DateTime<Utc>,
    pub expected: Option<String>,
    pub target: Target,
    pub detail: String,
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
    /// Whether a buffered run of the same schedule may be waiting for this one to end (its
    /// target lasts, [`Target::has_duration`]); only then does recording it look for one.
    pub may_release: bool,
}

impl RunOutcome {
    /// How `run` ended.
    pub fn of(
        run: &RunRecord,
        status: RunStatus,
        detail: Option<String>,
        attempts: u32,
        finished_at: DateTime<Utc>,
    ) -> Self {
        RunOutcome {
            schedule_id: run.schedule_id.clone(),
            scheduled_time: run.scheduled_time,
            status,
            detail,
            attempts,
            finished_at,
            may_release: run.target.has_duration(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_at(scheduled_time: &str) -> RunRecord {
        let at = DateTime::parse_from_rfc3339(scheduled_time)
            .unwrap()
            .with_timezone(&Utc);
        RunRecord {
            schedule_id: "s".into(),
            scheduled_time: at,
            jobstore: StoreName::Execution,
            owner: "u".into(),
            target: Target::SystemTask(SystemTaskTarget {
                task: "t".into(),
                kwargs: serde_json::Value::Null,
            }),
            policy: Policy::default(),
            status: RunStatus::Pending,
            detail: None,
            attempts: 0,
            claimed_at: at,
            lease_until: None,
            finished_at: None,
        }
    }

    #[test]
    fn idempotency_keys_keep_whole_seconds_as_they_were_and_carry_milliseconds() {
        assert_eq!(
            run_at("2026-12-06T01:20:51Z").idempotency_key(),
            "s@2026-12-06T01:20:51Z",
            "the form of every key written before, unchanged"
        );
        let first = run_at("2026-12-06T01:20:51.605Z").idempotency_key();
        let second = run_at("2026-12-06T01:20:51.618Z").idempotency_key();
        assert_eq!(first, "s@2026-12-06T01:20:51.605Z");
        assert_eq!(second, "s@2026-12-06T01:20:51.618Z");
        assert_eq!(
            run_at("2026-12-06T01:20:51.600Z").idempotency_key(),
            "s@2026-12-06T01:20:51.600Z"
        );
    }

    #[test]
    fn jitter_is_within_bounds_the_same_for_a_key_and_spread_over_keys() {
        let policy = Policy {
            jitter_secs: 10,
            ..Policy::default()
        };
        let mut seconds = std::collections::BTreeSet::new();
        for i in 0..1000 {
            let key = format!("schedule-{i}@2026-01-01T00:00:00Z");
            let delay = policy.jitter_for(&key);
            assert!(
                delay < std::time::Duration::from_secs(10),
                "{key}: {delay:?}"
            );
            // Another replica, or this one after a restart, computes it from the key alone.
            assert_eq!(policy.jitter_for(&key), delay);
            seconds.insert(delay.as_secs());
        }
        assert_eq!(seconds.len(), 10, "every second of the window is used");
        // The values are fixed: the function must not change between versions, or replicas
        // of two versions would disagree.
        assert_eq!(
            policy.jitter_for("a@2026-01-01T00:00:00Z"),
            std::time::Duration::from_millis(2984)
        );
        assert_eq!(
            Policy::default().jitter_for("anything"),
            std::time::Duration::ZERO
        );
    }
}
