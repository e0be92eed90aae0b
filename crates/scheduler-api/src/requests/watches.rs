//! The agent's watches: `add_watch` and `list_watches`.

use std::fmt::Display;

use super::{DEFAULT_LIMIT, Valid, check_id, page_limit};
use crate::{
    Check, MAX_WATCH_ATTEMPTS, MAX_WATCH_INTERVAL_SECS, OnComplete, SchedulerError, WatchStatus,
};

/// The seed's defaults: a check every 30 s, 120 of them (about an hour).
pub const DEFAULT_WATCH_INTERVAL_SECS: u64 = 30;
pub const DEFAULT_WATCH_ATTEMPTS: u32 = 120;
/// The longest message a watch keeps, in bytes.
pub const MAX_MESSAGE_LEN: usize = 10_000;

/// `add_watch`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWatch {
    pub user_id: String,
    pub check: Check,
    /// `{result}` is replaced by what the check found.
    pub on_success_message: String,
    pub on_failure_message: Option<String>,
    pub on_complete: OnComplete,
    pub workflow_id: Option<String>,
    /// `None` for [`DEFAULT_WATCH_INTERVAL_SECS`].
    pub interval_seconds: Option<u64>,
    /// `None` for [`DEFAULT_WATCH_ATTEMPTS`].
    pub max_attempts: Option<u32>,
    pub conversation_id: Option<String>,
    pub platform: Option<String>,
    pub platform_channel_id: Option<String>,
    pub platform_thread_id: Option<String>,
}

impl NewWatch {
    /// A watch of `user_id` with the defaults: notify, every 30 s, 120 attempts.
    pub fn new(
        user_id: impl Into<String>,
        check: Check,
        on_success_message: impl Into<String>,
    ) -> Self {
        NewWatch {
            user_id: user_id.into(),
            check,
            on_success_message: on_success_message.into(),
            on_failure_message: None,
            on_complete: OnComplete::Notify,
            workflow_id: None,
            interval_seconds: None,
            max_attempts: None,
            conversation_id: None,
            platform: None,
            platform_channel_id: None,
            platform_thread_id: None,
        }
    }

    /// Checks the ids, the check's fields, how often and how many times it runs, and the
    /// messages (one on success, not blank; each at most [`MAX_MESSAGE_LEN`] bytes).
    pub fn validate(self) -> Result<Valid<Self>, SchedulerError> {
        check_id("user_id", &self.user_id)?;
        for (field, value) in [
            ("workflow_id", &self.workflow_id),
            ("conversation_id", &self.conversation_id),
            ("platform", &self.platform),
            ("platform_channel_id", &self.platform_channel_id),
            ("platform_thread_id", &self.platform_thread_id),
        ] {
            if let Some(value) = value {
                check_id(field, value)?;
            }
        }
        self.check.validate().map_err(SchedulerError::Value)?;
        if !(1..=MAX_WATCH_INTERVAL_SECS).contains(&self.interval()) {
            return Err(out_of_range(
                "interval_seconds",
                self.interval(),
                MAX_WATCH_INTERVAL_SECS,
            ));
        }
        if !(1..=MAX_WATCH_ATTEMPTS).contains(&self.attempts()) {
            return Err(out_of_range(
                "max_attempts",
                self.attempts(),
                MAX_WATCH_ATTEMPTS,
            ));
        }
        for (field, message) in [
            ("on_success_message", Some(&self.on_success_message)),
            ("on_failure_message", self.on_failure_message.as_ref()),
        ] {
            if message.is_some_and(|m| m.len() > MAX_MESSAGE_LEN) {
                return Err(SchedulerError::Value(format!(
                    "{field} is longer than {MAX_MESSAGE_LEN} bytes"
                )));
            }
        }
        if self.on_success_message.trim().is_empty() {
            return Err(SchedulerError::Value(
                "on_success_message must not be empty".into(),
            ));
        }
        Ok(Valid(self))
    }

    /// The seconds between attempts.
    pub fn interval(&self) -> u64 {
        self.interval_seconds.unwrap_or(DEFAULT_WATCH_INTERVAL_SECS)
    }

    /// How many attempts the watch has.
    pub fn attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_WATCH_ATTEMPTS)
    }

    /// `interval_seconds` as the wire has it, a signed number.
    pub fn interval_from_wire(given: Option<i64>) -> Result<Option<u64>, SchedulerError> {
        count_from_wire("interval_seconds", given, MAX_WATCH_INTERVAL_SECS)
    }

    /// `max_attempts` as the wire has it, a signed number.
    pub fn attempts_from_wire(given: Option<i64>) -> Result<Option<u32>, SchedulerError> {
        count_from_wire("max_attempts", given, MAX_WATCH_ATTEMPTS)
    }

    /// `on_complete` as the wire has it, its name; `None` for `notify`.
    pub fn on_complete_from_wire(given: Option<&str>) -> Result<OnComplete, SchedulerError> {
        given
            .map(OnComplete::parse)
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(SchedulerError::Value)
    }
}

/// A count the wire gives as a signed number, refused when it is not a count of this type.
fn count_from_wire<T: TryFrom<i64> + Display>(
    field: &str,
    given: Option<i64>,
    max: T,
) -> Result<Option<T>, SchedulerError> {
    given
        .map(|n| T::try_from(n).map_err(|_| out_of_range(field, n, max)))
        .transpose()
}

fn out_of_range(field: &str, given: impl Display, max: impl Display) -> SchedulerError {
    SchedulerError::Value(format!("{field} must be 1 to {max}, got {given}"))
}

/// `list_watches`' filters and page, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchQuery {
    pub status: Option<WatchStatus>,
    pub user_id: Option<String>,
    pub workflow_id: Option<String>,
    pub limit: Option<u32>,
    /// The id of the last watch of the page before.
    pub cursor: Option<String>,
}

impl WatchQuery {
    /// Checks the limit.
    pub fn validate(self) -> Result<Valid<Self>, SchedulerError> {
        page_limit(self.limit, DEFAULT_LIMIT)?;
        Ok(Valid(self))
    }

    /// The page's size.
    pub fn page(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT) as usize
    }

    /// `status_filter` as the wire has it, the status's name.
    pub fn status_from_wire(given: Option<&str>) -> Result<Option<WatchStatus>, SchedulerError> {
        given
            .map(|text| {
                WatchStatus::parse(text).ok_or_else(|| {
                    let names: Vec<_> = WatchStatus::ALL.iter().map(|s| s.as_str()).collect();
                    SchedulerError::Value(format!(
                        "status_filter must be one of {}; got '{text}'",
                        names.join(", ")
                    ))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delay() -> Check {
        Check::Delay { delay_seconds: 5 }
    }

    #[test]
    fn a_new_watch_is_checked_before_the_service_sees_it() {
        let valid = NewWatch::new("u1", delay(), "done").validate().unwrap();
        assert_eq!((valid.interval(), valid.attempts()), (30, 120));

        let refused = |request: NewWatch| request.validate().unwrap_err().to_string();
        assert!(refused(NewWatch::new("", delay(), "done")).contains("user_id"));
        assert!(refused(NewWatch::new("u1", delay(), " ")).contains("on_success_message"));
        let often = NewWatch {
            interval_seconds: Some(0),
            ..NewWatch::new("u1", delay(), "done")
        };
        assert_eq!(refused(often), "interval_seconds must be 1 to 86400, got 0");
        let unchecked = Check::PollUrl {
            url: "http://x.test".into(),
            method: "BREW".into(),
            expected_status: 200,
        };
        assert!(refused(NewWatch::new("u1", unchecked, "done")).contains("check_config.method"));
        let thread = NewWatch {
            platform_thread_id: Some("t".repeat(300)),
            ..NewWatch::new("u1", delay(), "done")
        };
        assert!(refused(thread).contains("platform_thread_id"));
    }

    #[test]
    fn the_wire_forms_are_read_with_the_field_named() {
        assert_eq!(NewWatch::interval_from_wire(Some(60)).unwrap(), Some(60));
        assert_eq!(
            NewWatch::interval_from_wire(Some(-5))
                .unwrap_err()
                .to_string(),
            "interval_seconds must be 1 to 86400, got -5"
        );
        assert!(
            NewWatch::attempts_from_wire(Some(i64::MAX))
                .unwrap_err()
                .to_string()
                .starts_with("max_attempts must be 1 to 100000")
        );
        assert_eq!(
            NewWatch::on_complete_from_wire(None).unwrap(),
            OnComplete::Notify
        );
        assert!(NewWatch::on_complete_from_wire(Some("shout")).is_err());
        assert_eq!(
            WatchQuery::status_from_wire(Some("failed")).unwrap(),
            Some(WatchStatus::Failed)
        );
        assert_eq!(
            WatchQuery::status_from_wire(Some("gone"))
                .unwrap_err()
                .to_string(),
            "status_filter must be one of active, completed, failed, cancelled; got 'gone'"
        );
    }

    #[test]
    fn a_check_reads_back_from_its_config() {
        let check = Check::PollUrl {
            url: "http://x.test/status".into(),
            method: "GET".into(),
            expected_status: 204,
        };
        assert_eq!(Check::parse(check.kind(), &check.config()).unwrap(), check);
    }
}
