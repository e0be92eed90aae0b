//! The requests of the general schedule API, declared once: the service acts on them, the
//! typed clients send them and schedctl builds them. Each has a `validate` that checks what
//! can be checked without the service's state (identifiers, tags, the trigger, the target's
//! fields, limits) and returns a [`Valid`] value, the only form the service acts on; what
//! depends on its state (the configured endpoints, the jobstores it serves, who owns what) the
//! service checks after.

use std::ops::Deref;

use crate::SchedulerError;

mod graph;
mod schedules;
mod watches;

pub use graph::{ExecutionScheduleQuery, NewGraphSchedule};
pub use schedules::{NewSchedule, RunQuery, ScheduleQuery, ScheduleUpdate};
pub use watches::{
    DEFAULT_WATCH_ATTEMPTS, DEFAULT_WATCH_INTERVAL_SECS, MAX_MESSAGE_LEN, NewWatch, WatchQuery,
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
