//! `next_fire_times`: what a cron expression will do, without storing anything.

use chrono::{DateTime, SecondsFormat, Utc};
use scheduler_api::SchedulerError;
use triggers::{TriggerKind, TriggerSpec, parse_timezone};

const DEFAULT_COUNT: u32 = 5;
const MAX_COUNT: u32 = 1000;

/// What `next_fire_times` is asked beyond the expression.
pub(super) struct FireTimes {
    pub timezone: Option<String>,
    pub after: Option<String>,
    pub count: Option<u32>,
    pub hash_key: Option<String>,
    /// Calendars whose dates are left out.
    pub exclude: Vec<String>,
}

pub(super) fn next_fire_times(cron: &str, asked: FireTimes) -> Result<Vec<String>, SchedulerError> {
    let count = asked.count.unwrap_or(DEFAULT_COUNT);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(SchedulerError::Value(format!(
            "count must be between 1 and {MAX_COUNT}, got {count}"
        )));
    }
    let timezone = asked.timezone.unwrap_or_else(|| "UTC".to_string());
    parse_timezone(&timezone).map_err(|e| SchedulerError::Value(e.to_string()))?;
    // Compiled as a schedule's trigger is, so that `H` and the calendars mean the same.
    let trigger = TriggerSpec {
        exclude: asked.exclude,
        ..TriggerSpec::from(TriggerKind::Cron {
            expression: cron.to_string(),
            timezone,
        })
    };
    let trigger = match asked.hash_key.as_deref() {
        Some(key) => trigger.compile_for(key),
        None => trigger.compile(),
    }
    .map_err(|e| SchedulerError::Value(e.to_string()))?;
    let mut cursor = match asked.after.as_deref() {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                SchedulerError::Value(format!("after '{text}' is not an RFC 3339 instant: {e}"))
            })?
            .with_timezone(&Utc),
    };
    let mut fires = Vec::with_capacity(count as usize);
    while fires.len() < count as usize {
        let Some(next) = trigger.next_included_after(cursor) else {
            break;
        };
        fires.push(next.to_rfc3339_opts(SecondsFormat::Secs, true));
        cursor = next;
    }
    Ok(fires)
}
