//! AutoGPT's request.

use serde_json::Value;
use triggers::TriggerKind;

use super::{Valid, check_id};
use crate::{SchedulePolicy, SchedulerError, check_object};

/// AutoGPT's `add_graph_execution_schedule`: a cron schedule that runs a graph for a user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewGraphSchedule {
    pub user_id: String,
    pub graph_id: String,
    pub graph_version: i64,
    pub cron: String,
    pub input_data: Value,
    /// `None` for `{}`.
    pub input_credentials: Option<Value>,
    pub name: Option<String>,
    /// An IANA zone; `None` (or blank) for UTC.
    pub user_timezone: Option<String>,
    /// Only `coalesce` and `misfire_grace_secs`, the policy APScheduler has.
    pub policy: Option<SchedulePolicy>,
    /// The organisation the schedule belongs to; `None` (or blank) for none.
    pub organization_id: Option<String>,
    /// The team within the organisation; `None` for the organisation's home.
    pub team_id: Option<String>,
    /// The hired expert the schedule belongs to; its owner alone sees it.
    pub expert_id: Option<String>,
}

impl NewGraphSchedule {
    /// Checks the ids, that the inputs are objects (credentials default to `{}`), that the
    /// cron expression compiles in its zone, and that the policy holds only what AutoGPT's
    /// method takes.
    pub fn validate(mut self) -> Result<Valid<Self>, SchedulerError> {
        check_id("user_id", &self.user_id)?;
        check_id("graph_id", &self.graph_id)?;
        // Blank is absent, as AutoGPT stores a graph schedule's missing organisation as "".
        for (field, id) in [
            ("organization_id", &mut self.organization_id),
            ("team_id", &mut self.team_id),
            ("expert_id", &mut self.expert_id),
        ] {
            if let Some(given) = id.take().filter(|i| !i.trim().is_empty()) {
                check_id(field, &given)?;
                *id = Some(given);
            }
        }
        check_object("input_data", &self.input_data).map_err(SchedulerError::Value)?;
        let credentials = self
            .input_credentials
            .take()
            .unwrap_or_else(|| Value::Object(Default::default()));
        check_object("input_credentials", &credentials).map_err(SchedulerError::Value)?;
        self.input_credentials = Some(credentials);
        self.trigger()
            .compile()
            .map_err(|e| SchedulerError::Value(e.to_string()))?;
        if let Some(policy) = &self.policy {
            refuse_general_policy(policy)?;
        }
        Ok(Valid(self))
    }

    /// The cron trigger in the user's zone.
    pub fn trigger(&self) -> TriggerKind {
        let timezone = match self.user_timezone.as_deref().map(str::trim) {
            None | Some("") => "UTC".to_string(),
            Some(zone) => zone.to_string(),
        };
        TriggerKind::Cron {
            expression: self.cron.trim().to_string(),
            timezone,
        }
    }
}

/// AutoGPT's method takes only the policy fields APScheduler has (`coalesce`,
/// `misfire_grace_secs`); the general policy's other fields belong to `create_schedule`, and
/// are refused here rather than dropped.
fn refuse_general_policy(policy: &SchedulePolicy) -> Result<(), SchedulerError> {
    let given = [
        ("overlap", policy.overlap.is_some()),
        ("jitter_secs", policy.jitter_secs.is_some()),
        ("attempts", policy.attempts.is_some()),
        ("backoff_ms", policy.backoff_ms.is_some()),
        (
            "placement_timeout_secs",
            policy.placement_timeout_secs.is_some(),
        ),
        ("alerts", policy.alerts.is_some()),
    ];
    match given.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(SchedulerError::Value(format!(
            "policy.{field} is not taken by add_graph_execution_schedule, whose policy holds \
             only coalesce and misfire_grace_secs; use create_schedule for the general policy"
        ))),
        None => Ok(()),
    }
}

/// What AutoGPT's `get_execution_schedules` (and `get_graph_execution_schedules`) list, with
/// its visibility rule: with `organization_id`, the user's own schedules, the organisation's
/// schedules without a team and those of the teams in `team_ids`; an expert's schedules only
/// to their owner; without `user_id` and `organization_id`, every schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionScheduleQuery {
    pub graph_id: Option<String>,
    pub user_id: Option<String>,
    /// A copilot turn's session: this service holds none, so a listing by session is empty.
    pub session_id: Option<String>,
    /// `graph`, `copilot_turn` (lists nothing here) or `None` for every kind.
    pub kind: Option<String>,
    pub organization_id: Option<String>,
    pub team_ids: Option<Vec<String>>,
    /// Paused schedules are left out unless this is set.
    pub include_paused: bool,
}

impl ExecutionScheduleQuery {
    /// Checks the kind, and whether the query can match a schedule this service holds at all
    /// (`false` for a copilot turn's kind or session).
    pub fn lists_graphs(&self) -> Result<bool, SchedulerError> {
        match self.kind.as_deref() {
            None | Some(crate::GRAPH_KIND) => Ok(self.session_id.is_none()),
            Some(crate::COPILOT_TURN_KIND) => Ok(false),
            Some(other) => Err(SchedulerError::Value(format!(
                "kind must be '{}' or '{}', got '{other}'",
                crate::GRAPH_KIND,
                crate::COPILOT_TURN_KIND
            ))),
        }
    }
}
