//! The general API's schedules: `create_schedule`, `update_schedule`, `list_schedules`,
//! `list_runs`.

use chrono::{DateTime, Utc};

use super::{DEFAULT_LIMIT, Valid, check_id, check_tags, page_limit};
use crate::{Origin, RunStatus, SYSTEM_OWNER, SchedulePolicy, SchedulerError, Target, TriggerSpec};

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
        check_trigger(&self.trigger, self.id.as_deref())?;
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
            check_trigger(trigger, None)?;
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

/// A trigger that compiles, as it would be stored now (an interval anchored). A cron `H` is
/// chosen from the schedule's `id`; where that is not known yet, the expression's form alone
/// is checked here, and its values when it is stored.
fn check_trigger(trigger: &TriggerSpec, id: Option<&str>) -> Result<(), SchedulerError> {
    trigger
        .clone()
        .anchored(Utc::now())
        .compile_for(id.unwrap_or_default())
        .map(|_| ())
        .map_err(|e| SchedulerError::Value(format!("trigger: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_LIMIT, MAX_TAGS};
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
