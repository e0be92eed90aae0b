//! Alerts: when a schedule's work did not happen. A schedule's `policy.alerts` (or the
//! service's `[alerts]` defaults) says when an incident opens; the leader evaluates them and
//! sends each incident once when it opens and once when it resolves.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// When a schedule's incidents open. Each field is optional: unset takes the service's
/// default (`[alerts]`), and 0 turns the check off even where a default is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertPolicy {
    /// An occurrence not dispatched this many seconds after its scheduled time opens a `late`
    /// incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_after_secs: Option<u64>,
    /// This many runs failed in a row open a `failing` incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_in_a_row: Option<u32>,
    /// No run succeeded for this many seconds opens a `missing` incident (a dead man's
    /// switch: the schedule parked by the engine counts, a pause by a caller does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_after_secs: Option<u64>,
}

impl AlertPolicy {
    /// The longest wait a check takes: 100 years, like the misfire grace.
    pub const MAX_SECS: u64 = triggers::MAX_INTERVAL_SECS;
    /// The longest run of failures a check counts.
    pub const MAX_FAILED_IN_A_ROW: u32 = 100;

    /// Whether no check is set (the service's defaults apply to every one).
    pub fn is_empty(&self) -> bool {
        *self == AlertPolicy::default()
    }

    /// This policy with `defaults` where it leaves a check unset; a check set to 0 is off.
    pub fn over(self, defaults: AlertPolicy) -> AlertPolicy {
        AlertPolicy {
            late_after_secs: self
                .late_after_secs
                .or(defaults.late_after_secs)
                .filter(|s| *s > 0),
            failed_in_a_row: self
                .failed_in_a_row
                .or(defaults.failed_in_a_row)
                .filter(|n| *n > 0),
            missing_after_secs: self
                .missing_after_secs
                .or(defaults.missing_after_secs)
                .filter(|s| *s > 0),
        }
    }

    /// Checks the values, naming the field at fault under `within` (`policy.alerts`,
    /// `alerts`).
    pub fn validate(&self, within: &str) -> Result<(), String> {
        for (name, secs) in [
            ("late_after_secs", self.late_after_secs),
            ("missing_after_secs", self.missing_after_secs),
        ] {
            if let Some(secs) = secs
                && secs > Self::MAX_SECS
            {
                return Err(format!(
                    "{within}.{name} must be at most {} (100 years), got {secs}",
                    Self::MAX_SECS
                ));
            }
        }
        if let Some(n) = self.failed_in_a_row
            && n > Self::MAX_FAILED_IN_A_ROW
        {
            return Err(format!(
                "{within}.failed_in_a_row must be at most {}, got {n}",
                Self::MAX_FAILED_IN_A_ROW
            ));
        }
        Ok(())
    }
}

/// What an incident is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An occurrence was not dispatched `late_after_secs` after its time.
    Late,
    /// `failed_in_a_row` runs in a row failed.
    Failing,
    /// No run succeeded for `missing_after_secs`.
    Missing,
}

impl AlertKind {
    pub const ALL: [AlertKind; 3] = [AlertKind::Late, AlertKind::Failing, AlertKind::Missing];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Late => "late",
            AlertKind::Failing => "failing",
            AlertKind::Missing => "missing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Whether an incident is still going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [AlertState::Open, AlertState::Resolved]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One incident: a schedule's work that did not happen, from when it was seen until it was
/// seen to happen again (or the schedule went away).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub kind: AlertKind,
    pub state: AlertState,
    pub jobstore: String,
    pub schedule_id: String,
    /// The schedule's name when the incident opened.
    pub schedule_name: String,
    pub owner: String,
    pub opened_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// What happened, in a sentence.
    pub summary: String,
    /// The last run's error, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_sets_what_it_gives_and_zero_turns_a_default_off() {
        let defaults = AlertPolicy {
            late_after_secs: Some(60),
            failed_in_a_row: Some(3),
            missing_after_secs: None,
        };
        let own = AlertPolicy {
            late_after_secs: Some(0),
            failed_in_a_row: None,
            missing_after_secs: Some(3600),
        };
        assert_eq!(
            own.over(defaults),
            AlertPolicy {
                late_after_secs: None,
                failed_in_a_row: Some(3),
                missing_after_secs: Some(3600),
            }
        );
        assert!(
            AlertPolicy::default()
                .over(AlertPolicy::default())
                .is_empty()
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let policy = AlertPolicy {
            failed_in_a_row: Some(101),
            ..AlertPolicy::default()
        };
        let error = policy.validate("policy.alerts").unwrap_err();
        assert!(error.contains("policy.alerts.failed_in_a_row"), "{error}");
        let unknown = serde_json::from_value::<AlertPolicy>(serde_json::json!({"late": 1}));
        assert!(unknown.is_err());
    }
}
