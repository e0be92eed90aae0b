//! `next_fire_times`: what a cron expression will do, without storing anything.

use chrono::{DateTime, SecondsFormat, Utc};
use scheduler_api::SchedulerError;
use triggers::{CronSchedule, parse_timezone};

const DEFAULT_COUNT: u32 = 5;
const MAX_COUNT: u32 = 1000;

pub(super) fn next_fire_times(
    cron: &str,
    timezone: Option<&str>,
    after: Option<&str>,
    count: Option<u32>,
    hash_key: Option<&str>,
) -> Result<Vec<String>, SchedulerError> {
    let count = count.unwrap_or(DEFAULT_COUNT);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(SchedulerError::Value(format!(
            "count must be between 1 and {MAX_COUNT}, got {count}"
        )));
    }
    let zone = parse_timezone(timezone.unwrap_or("UTC"))
        .map_err(|e| SchedulerError::Value(e.to_string()))?;
    let schedule = CronSchedule::parse_keyed(cron, zone, hash_key)
        .map_err(|e| SchedulerError::Value(format!("invalid cron expression: {e}")))?;
    let mut cursor = match after {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                SchedulerError::Value(format!("after '{text}' is not an RFC 3339 instant: {e}"))
            })?
            .with_timezone(&Utc),
    };
    let mut fires = Vec::with_capacity(count as usize);
    while fires.len() < count as usize {
        let Some(next) = schedule.next_after(cursor) else {
            break;
        };
        fires.push(next.to_rfc3339_opts(SecondsFormat::Secs, true));
        cursor = next;
    }
    Ok(fires)
}
