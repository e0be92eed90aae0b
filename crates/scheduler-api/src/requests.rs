//! The requests of the general schedule API, declared once: the service acts on them, the
//! typed clients send them and schedctl builds them. Each has a `validate` that checks what
//! can be checked without the service's state (identifiers, tags, the trigger, the target's
//! fields, limits) and returns a [`Valid`] value, the only form the service acts on; what
//! depends on its state (the configured endpoints, the jobstores it serves, who owns what) the
//! service checks after.

use std::ops::Deref;

use chrono::{DateTime, Utc};

use serde_json::Value;
use triggers::TriggerKind;

use crate::{
    Origin, RunStatus, SYSTEM_OWNER, SchedulePolicy, SchedulerError, Target, TriggerSpec,
    check_object,
};

/// The longest identifier (an id, an owner) in bytes.
pub const MAX_ID_LEN: usize = 256;
/// The most tags a schedule has, and the longest tag in bytes.
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_LEN: usize = 64;
/// The largest page of a listing.
pub const MAX_LIMIT: u32 = 1000;
/// The page of a listing when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 100;

/// A request that passed its `validate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid<T>(T);

impl<T> Valid<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Valid<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// `create_schedule`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    /// `None` for an id made up by the scheduler.
    pub id: Option<String>,
    /// `None` (or blank) for the id.
    pub name: Option<String>,
    pub owner: String,
    /// `None` for `execution`.
    pub jobstore: Option<String>,
    pub trigger: TriggerSpec,
    pub target: Target,
    pub policy: Option<SchedulePolicy>,
    pub tags: Vec<String>,
    /// Replace a schedule of the same id (keeping its ledger) instead of failing.
    pub replace_existing: bool,
}

impl NewSchedule {
    /// A schedule of `owner` with the defaults: a new id, named by it, in `execution`.
    pub fn new(owner: impl Into<String>, trigger: TriggerSpec, target: Target) -> Self {
        NewSchedule {
            id: None,
            name: None,
            owner: owner.into(),
            jobstore: None,
            trigger,
            target,
            policy: None,
            tags: Vec::new(),
            replace_existing: false,
        }
    }

    /// Checks the owner (never `system`), the id, the trigger, the target's fields and the
    /// tags (deduplicated).
    pub fn validate(mut self) -> Result<Valid<Self>, SchedulerError> {
        check_id("owner", &self.owner)?;
        if self.owner == SYSTEM_OWNER {
            return Err(SchedulerError::Value(format!(
                "owner '{SYSTEM_OWNER}' is reserved for schedules declared in the configuration"
            )));
        }
        if let Some(id) = &self.id {
            check_id("id", id)?;
        }
        check_trigger(&self.trigger)?;
        self.target
            .validate(Origin::Api)
            .map_err(SchedulerError::Value)?;
        self.tags = check_tags(self.tags)?;
        Ok(Valid(self))
    }
}

/// `update_schedule`'s changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleUpdate {
    /// A blank name leaves the name as it is.
    pub name: Option<String>,
    pub trigger: Option<TriggerSpec>,
    pub target: Option<Target>,
    pub policy: Option<SchedulePolicy>,
    pub tags: Option<Vec<String>>,
}

impl ScheduleUpdate {
    /// Checks the trigger, the target's fields and the tags (deduplicated) that are given.
    pub fn validate(mut self) -> Result<Valid<Self>, SchedulerError> {
        if let Some(trigger) = &self.trigger {
            check_trigger(trigger)?;
        }
        if let Some(target) = &self.target {
            target
                .validate(Origin::Api)
                .map_err(SchedulerError::Value)?;
        }
        self.tags = self.tags.map(check_tags).transpose()?;
        Ok(Valid(self))
    }
}

/// `list_schedules`' filters and page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleQuery {
    pub owner: Option<String>,
    pub target_type: Option<String>,
    pub paused: Option<bool>,
    pub tag: Option<String>,
    pub jobstore: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl ScheduleQuery {
    /// Checks the limit and the target type.
    pub fn validate(self) -> Result<Valid<Self>, SchedulerError> {
        page_limit(self.limit, DEFAULT_LIMIT)?;
        if let Some(kind) = &self.target_type
            && !Target::KINDS.contains(&kind.as_str())
        {
            return Err(SchedulerError::Value(format!(
                "target_type '{kind}' is not one of {}",
                Target::KINDS.join(", ")
            )));
        }
        Ok(Valid(self))
    }

    /// The page's size.
    pub fn page(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT) as usize
    }
}

/// `list_runs`' filters and page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunQuery {
    pub status: Option<RunStatus>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl RunQuery {
    /// Checks the limit and the cursor, which is an instant `list_runs` gave out.
    pub fn validate(self) -> Result<Valid<Self>, SchedulerError> {
        page_limit(self.limit, DEFAULT_LIMIT)?;
        self.before()?;
        Ok(Valid(self))
    }

    /// The page's size.
    pub fn page(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT) as usize
    }

    /// The instant the cursor stands for: the page holds the runs scheduled before it.
    pub fn before(&self) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        let Some(cursor) = &self.cursor else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(cursor)
            .map(|at| Some(at.with_timezone(&Utc)))
            .map_err(|_| {
                SchedulerError::Value(format!("cursor '{cursor}' is not one list_runs gave out"))
            })
    }
}

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
}

impl NewGraphSchedule {
    /// Checks the ids, that the inputs are objects (credentials default to `{}`), that the
    /// cron expression compiles in its zone, and that the policy holds only what AutoGPT's
    /// method takes.
    pub fn validate(mut self) -> Result<Valid<Self>, SchedulerError> {
        check_id("user_id", &self.user_id)?;
        check_id("graph_id", &self.graph_id)?;
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
    ];
    match given.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(SchedulerError::Value(format!(
            "policy.{field} is not taken by add_graph_execution_schedule, whose policy holds \
             only coalesce and misfire_grace_secs; use create_schedule for the general policy"
        ))),
        None => Ok(()),
    }
}

/// Refuses an empty identifier, or one longer than [`MAX_ID_LEN`] bytes, naming the field.
pub fn check_id(field: &str, value: &str) -> Result<(), SchedulerError> {
    if value.trim().is_empty() {
        return Err(SchedulerError::Value(format!("{field} must not be empty")));
    }
    if value.len() > MAX_ID_LEN {
        return Err(SchedulerError::Value(format!(
            "{field} is longer than {MAX_ID_LEN} bytes"
        )));
    }
    Ok(())
}

/// A listing's `limit`, `default` when absent, refused outside 1 to [`MAX_LIMIT`].
pub fn page_limit(limit: Option<u32>, default: u32) -> Result<usize, SchedulerError> {
    let limit = limit.unwrap_or(default);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(SchedulerError::Value(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    Ok(limit as usize)
}

/// At most [`MAX_TAGS`] tags of 1 to [`MAX_TAG_LEN`] bytes, each once, in the order given.
pub fn check_tags(tags: Vec<String>) -> Result<Vec<String>, SchedulerError> {
    if tags.len() > MAX_TAGS {
        return Err(SchedulerError::Value(format!(
            "at most {MAX_TAGS} tags, got {}",
            tags.len()
        )));
    }
    let mut checked: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        if tag.trim().is_empty() || tag.len() > MAX_TAG_LEN {
            return Err(SchedulerError::Value(format!(
                "a tag is 1 to {MAX_TAG_LEN} bytes, got '{tag}'"
            )));
        }
        if !checked.contains(&tag) {
            checked.push(tag);
        }
    }
    Ok(checked)
}

/// A trigger that compiles, as it would be stored now (an interval anchored).
fn check_trigger(trigger: &TriggerSpec) -> Result<(), SchedulerError> {
    trigger
        .clone()
        .anchored(Utc::now())
        .compile()
        .map(|_| ())
        .map_err(|e| SchedulerError::Value(format!("trigger: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use triggers::TriggerKind;

    fn every_minute() -> TriggerSpec {
        TriggerSpec::from(TriggerKind::Cron {
            expression: "* * * * *".into(),
            timezone: "UTC".into(),
        })
    }

    fn http() -> Target {
        serde_json::from_value(serde_json::json!({
            "type": "http", "endpoint": "hooks", "method": "POST", "path": "/x"
        }))
        .unwrap()
    }

    #[test]
    fn a_new_schedule_is_checked_before_the_service_sees_it() {
        let valid = NewSchedule {
            tags: vec!["a".into(), "b".into(), "a".into()],
            ..NewSchedule::new("u1", every_minute(), http())
        }
        .validate()
        .unwrap();
        assert_eq!(valid.tags, ["a", "b"], "tags are kept once each");

        let refused = |request: NewSchedule| request.validate().unwrap_err().to_string();
        assert!(refused(NewSchedule::new(" ", every_minute(), http())).contains("owner"));
        assert!(
            refused(NewSchedule::new(SYSTEM_OWNER, every_minute(), http())).contains("reserved")
        );
        let bad_cron = TriggerSpec::from(TriggerKind::Cron {
            expression: "61 * * * *".into(),
            timezone: "UTC".into(),
        });
        assert!(refused(NewSchedule::new("u1", bad_cron, http())).starts_with("trigger: "));
        let many = NewSchedule {
            tags: (0..=MAX_TAGS).map(|i| i.to_string()).collect(),
            ..NewSchedule::new("u1", every_minute(), http())
        };
        assert!(refused(many).contains("at most 32 tags"));
        let every_hour = TriggerSpec::from(TriggerKind::Interval {
            every_secs: 3600,
            anchor: None,
        });
        assert!(
            NewSchedule::new("u1", every_hour, http())
                .validate()
                .is_ok(),
            "an interval is anchored when it is stored"
        );
    }

    #[test]
    fn listings_check_their_limits_and_cursors() {
        let over = ScheduleQuery {
            limit: Some(MAX_LIMIT + 1),
            ..ScheduleQuery::default()
        };
        assert!(over.validate().is_err());
        let unknown = ScheduleQuery {
            target_type: Some("carrier_pigeon".into()),
            ..ScheduleQuery::default()
        };
        assert!(
            unknown
                .validate()
                .unwrap_err()
                .to_string()
                .contains("carrier_pigeon")
        );
        assert_eq!(ScheduleQuery::default().validate().unwrap().page(), 100);
        let cursor = RunQuery {
            cursor: Some("yesterday".into()),
            ..RunQuery::default()
        };
        assert!(cursor.validate().is_err());
        let zero = RunQuery {
            limit: Some(0),
            ..RunQuery::default()
        };
        assert!(zero.validate().is_err());
    }
}
