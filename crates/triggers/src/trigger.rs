//! The stored trigger description and its compiled form.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::cron::{CronError, CronSchedule};

/// How many missed occurrences are counted one by one when coalescing before the count is
/// reported as a lower bound and the search jumps close to "now".
const COALESCE_COUNT_LIMIT: u64 = 1024;

/// The earliest instant a trigger fires at: the start of year 0000, the first that RFC 3339
/// can write.
pub const EARLIEST: DateTime<Utc> = match DateTime::from_timestamp_millis(-62_167_219_200_000) {
    Some(at) => at,
    None => panic!("0000-01-01T00:00:00Z is a valid instant"),
};

/// The latest instant a trigger fires at: the end of year 9999, the last that RFC 3339 can
/// write. A trigger whose next fire would come later has none.
pub const LATEST: DateTime<Utc> = match DateTime::from_timestamp_millis(253_402_300_799_999) {
    Some(at) => at,
    None => panic!("9999-12-31T23:59:59.999Z is a valid instant"),
};

/// Whether an instant lies within the years 0000 to 9999.
pub fn in_range(at: DateTime<Utc>) -> bool {
    (EARLIEST..=LATEST).contains(&at)
}

/// A trigger as stored (JSON) and sent over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerSpec {
    /// A cron expression evaluated in an IANA time zone.
    Cron {
        expression: String,
        #[serde(default = "utc_name")]
        timezone: String,
    },
    /// Every `every_secs` seconds, at `anchor + k * every_secs` for k >= 0.
    Interval {
        every_secs: u64,
        anchor: DateTime<Utc>,
    },
    /// Once, at an instant.
    Once { at: DateTime<Utc> },
    /// Every day at fixed wall-clock times (`"09:00"`, `"18:30:15"`) in an IANA time zone.
    /// Each time behaves as the fixed cron time `S M H * * *` does, so a time skipped or
    /// repeated by a daylight-saving change follows cronie's policy like any cron schedule.
    DailyTimes {
        times: Vec<String>,
        #[serde(default = "utc_name")]
        timezone: String,
    },
}

/// The most times one `daily_times` trigger may list; denser schedules are cron or interval
/// triggers.
pub const MAX_DAILY_TIMES: usize = 100;

/// The longest interval accepted: 100 years.
pub const MAX_INTERVAL_SECS: u64 = 100 * 366 * 86_400;

fn within_range(what: &'static str, at: DateTime<Utc>) -> Result<DateTime<Utc>, TriggerError> {
    if in_range(at) {
        Ok(at)
    } else {
        Err(TriggerError::OutOfRange {
            what,
            at: at.to_string(),
        })
    }
}

fn utc_name() -> String {
    "UTC".to_string()
}

/// Why a trigger description was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("invalid cron expression: {0}")]
    Cron(#[from] CronError),
    #[error("unknown time zone '{0}': expected an IANA name such as 'Europe/Berlin' or 'UTC'")]
    UnknownZone(String),
    #[error("interval must be at least 1 second")]
    ZeroInterval,
    #[error("interval of {0} seconds is longer than 100 years")]
    IntervalTooLong(u64),
    #[error("{what} {at} is outside the years 0000 to 9999")]
    OutOfRange { what: &'static str, at: String },
    #[error("daily_times: {0}")]
    DailyTimes(String),
}

/// Parses an IANA time zone name.
pub fn parse_timezone(name: &str) -> Result<Tz, TriggerError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| TriggerError::UnknownZone(name.to_string()))
}

/// A trigger ready to compute fire times.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Cron(CronSchedule),
    Interval {
        every: TimeDelta,
        anchor: DateTime<Utc>,
    },
    Once(DateTime<Utc>),
    /// One fixed cron time per listed time, in one zone; the next fire is the earliest.
    DailyTimes(Vec<CronSchedule>),
}

/// The result of folding missed occurrences into one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalesced {
    /// The latest occurrence at or before "now": the one that runs.
    pub latest: DateTime<Utc>,
    /// How many earlier occurrences were folded into it.
    pub missed: u64,
    /// False when `missed` is only a lower bound (a very dense trigger after a long outage).
    pub exact: bool,
}

impl TriggerSpec {
    /// Validates the description and compiles it. Instants are kept to whole milliseconds,
    /// the finest precision every store keeps.
    pub fn compile(&self) -> Result<Trigger, TriggerError> {
        match self {
            TriggerSpec::Cron {
                expression,
                timezone,
            } => Ok(Trigger::Cron(CronSchedule::parse(
                expression,
                parse_timezone(timezone)?,
            )?)),
            TriggerSpec::Interval { every_secs, anchor } => {
                if *every_secs == 0 {
                    return Err(TriggerError::ZeroInterval);
                }
                if *every_secs > MAX_INTERVAL_SECS {
                    return Err(TriggerError::IntervalTooLong(*every_secs));
                }
                let every = TimeDelta::seconds(*every_secs as i64);
                Ok(Trigger::Interval {
                    every,
                    anchor: within_range("interval anchor", *anchor)?.trunc_subsecs(3),
                })
            }
            TriggerSpec::Once { at } => Ok(Trigger::Once(
                within_range("instant", *at)?.trunc_subsecs(3),
            )),
            TriggerSpec::DailyTimes { times, timezone } => {
                let zone = parse_timezone(timezone)?;
                Ok(Trigger::DailyTimes(daily_schedules(times, zone)?))
            }
        }
    }

    /// The time zone the trigger is evaluated in (UTC for intervals and instants).
    pub fn timezone_name(&self) -> &str {
        match self {
            TriggerSpec::Cron { timezone, .. } | TriggerSpec::DailyTimes { timezone, .. } => {
                timezone
            }
            _ => "UTC",
        }
    }
}

/// The fixed cron time of each listed time, in order and without repeats.
fn daily_schedules(times: &[String], zone: Tz) -> Result<Vec<CronSchedule>, TriggerError> {
    if times.is_empty() {
        return Err(TriggerError::DailyTimes(
            "list at least one time, such as \"09:00\"".into(),
        ));
    }
    if times.len() > MAX_DAILY_TIMES {
        return Err(TriggerError::DailyTimes(format!(
            "{} times listed, at most {MAX_DAILY_TIMES}: use a cron or interval trigger",
            times.len()
        )));
    }
    let mut parsed = times
        .iter()
        .map(|text| wall_clock_time(text))
        .collect::<Result<Vec<_>, _>>()?;
    parsed.sort_unstable();
    parsed.dedup();
    parsed
        .into_iter()
        .map(|(hour, minute, second)| {
            CronSchedule::parse(&format!("{second} {minute} {hour} * * *"), zone)
                .map_err(TriggerError::from)
        })
        .collect()
}

/// `HH:MM` or `HH:MM:SS`, two digits each, as (hour, minute, second).
fn wall_clock_time(text: &str) -> Result<(u32, u32, u32), TriggerError> {
    let invalid = || {
        TriggerError::DailyTimes(format!(
            "'{text}' is not a time of day: expected HH:MM or HH:MM:SS, such as \"09:00\" \
             or \"18:30:15\""
        ))
    };
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid());
    }
    let number = |i: usize| parts.get(i).map_or(Ok(0), |p| p.parse::<u32>());
    let (hour, minute, second) = (
        number(0).map_err(|_| invalid())?,
        number(1).map_err(|_| invalid())?,
        number(2).map_err(|_| invalid())?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return Err(invalid());
    }
    Ok((hour, minute, second))
}

impl Trigger {
    /// The first fire strictly after `after`; `None` when there is none up to [`LATEST`].
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = match self {
            Trigger::Cron(schedule) => schedule.next_after(after),
            Trigger::Interval { every, anchor } => {
                if after < *anchor {
                    return Some(*anchor).filter(|at| in_range(*at));
                }
                let every_secs = every.num_seconds().max(1);
                let elapsed = after.signed_duration_since(*anchor).num_seconds();
                let steps = elapsed / every_secs + 1;
                anchor.checked_add_signed(TimeDelta::try_seconds(steps.checked_mul(every_secs)?)?)
            }
            Trigger::Once(at) => (*at > after).then_some(*at),
            Trigger::DailyTimes(schedules) => schedules
                .iter()
                .filter_map(|schedule| schedule.next_after(after))
                .min(),
        };
        next.filter(|at| in_range(*at))
    }

    /// The zone whose offset fire times are shown in.
    pub fn zone(&self) -> Tz {
        match self {
            Trigger::Cron(schedule) => schedule.zone(),
            Trigger::DailyTimes(schedules) => schedules.first().map_or(Tz::UTC, |s| s.zone()),
            _ => Tz::UTC,
        }
    }

    /// Folds the occurrences from `due` up to `now` into the latest of them (`due <= now`).
    pub fn coalesce(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Coalesced {
        if let Trigger::Interval { every, .. } = self {
            let every_secs = every.num_seconds().max(1);
            let steps = (now.signed_duration_since(due).num_seconds() / every_secs).max(0);
            // `steps * every_secs` is at most `now - due`, so neither step can overflow.
            let latest = steps
                .checked_mul(every_secs)
                .and_then(TimeDelta::try_seconds)
                .and_then(|span| due.checked_add_signed(span))
                .unwrap_or(due);
            return Coalesced {
                latest,
                missed: steps as u64,
                exact: true,
            };
        }
        let (latest, missed, reached_now) = self.walk_forward(due, now, COALESCE_COUNT_LIMIT);
        if reached_now {
            return Coalesced {
                latest,
                missed,
                exact: true,
            };
        }
        // Too many to count: find an occurrence close to "now" by widening a window backwards.
        let mut window = TimeDelta::seconds(1);
        while let Some(from) = now.checked_sub_signed(window).filter(|from| *from > latest) {
            if let Some(found) = self.next_after(from).filter(|at| *at <= now) {
                let (latest, _, _) = self.walk_forward(found, now, u64::MAX);
                return Coalesced {
                    latest,
                    missed,
                    exact: false,
                };
            }
            let Some(wider) = window.checked_mul(2) else {
                break;
            };
            window = wider;
        }
        Coalesced {
            latest,
            missed,
            exact: false,
        }
    }

    /// Steps from `from` to the last occurrence at or before `now`, at most `limit` steps.
    /// Returns that occurrence, the steps taken and whether the end was reached.
    fn walk_forward(
        &self,
        from: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u64,
    ) -> (DateTime<Utc>, u64, bool) {
        let mut latest = from;
        let mut steps = 0;
        while steps < limit {
            match self.next_after(latest) {
                Some(next) if next <= now => {
                    latest = next;
                    steps += 1;
                }
                _ => return (latest, steps, true),
            }
        }
        (latest, steps, false)
    }
}
