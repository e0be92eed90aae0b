//! The stored trigger description and its compiled form.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::calendar::{Calendar, Calendars};
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

/// A trigger as stored (JSON) and sent over the wire: its kind, with the kind's fields, and
/// the optional window it fires in. On the wire it is one flat object,
/// `{"type": "cron", "expression": "0 9 * * *", "timezone": "Europe/Paris", "end_at": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerSpec {
    pub kind: TriggerKind,
    /// No fire before this instant.
    pub start_at: Option<DateTime<Utc>>,
    /// No fire after this instant.
    pub end_at: Option<DateTime<Utc>>,
    /// The calendars whose dates its occurrences are skipped on (see [`crate::calendar`]).
    pub exclude: Vec<String>,
}

/// When a trigger fires, without its window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerKind {
    /// A cron expression evaluated in an IANA time zone.
    Cron {
        expression: String,
        #[serde(default = "utc_name")]
        timezone: String,
    },
    /// Every `every_secs` seconds, at `anchor + k * every_secs` for k >= 0. A trigger given
    /// without an anchor is anchored when it is stored ([`TriggerSpec::anchored`]).
    Interval {
        every_secs: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        anchor: Option<DateTime<Utc>>,
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

/// The most excluded days in a row [`Trigger::next_included_after`] looks past: 100 years.
pub const MAX_EXCLUDED_DAYS: u32 = 100 * 366;

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
    #[error("an interval trigger needs an anchor, the instant of its first fire")]
    Unanchored,
    #[error("end_at {end_at} is before start_at {start_at}")]
    Window { start_at: String, end_at: String },
    #[error("exclude: calendar '{name}' is not configured ({known})")]
    UnknownCalendar { name: String, known: String },
}

/// Parses an IANA time zone name.
pub fn parse_timezone(name: &str) -> Result<Tz, TriggerError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| TriggerError::UnknownZone(name.to_string()))
}

/// A trigger ready to compute fire times: its rule, within its window.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    rule: Rule,
    start_at: Option<DateTime<Utc>>,
    end_at: Option<DateTime<Utc>>,
    exclude: Vec<Arc<Calendar>>,
}

impl From<CronSchedule> for Trigger {
    fn from(schedule: CronSchedule) -> Self {
        Trigger {
            rule: Rule::Cron(schedule),
            start_at: None,
            end_at: None,
            exclude: Vec::new(),
        }
    }
}

/// When a compiled trigger fires, without its window.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
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

impl From<TriggerKind> for TriggerSpec {
    fn from(kind: TriggerKind) -> Self {
        TriggerSpec {
            kind,
            start_at: None,
            end_at: None,
            exclude: Vec::new(),
        }
    }
}

/// The fields of the window, which every kind may carry.
const WINDOW_FIELDS: [&str; 2] = ["start_at", "end_at"];
/// The field naming the calendars a trigger skips the dates of, which every kind may carry.
const EXCLUDE_FIELD: &str = "exclude";

impl Serialize for TriggerSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let kind = serde_json::to_value(&self.kind).map_err(S::Error::custom)?;
        let serde_json::Value::Object(fields) = kind else {
            return Err(S::Error::custom("a trigger kind serializes to an object"));
        };
        let window = [self.start_at, self.end_at];
        let excludes = !self.exclude.is_empty();
        let count = fields.len() + window.iter().flatten().count() + usize::from(excludes);
        let mut map = serializer.serialize_map(Some(count))?;
        for (key, value) in &fields {
            map.serialize_entry(key, value)?;
        }
        for (name, at) in WINDOW_FIELDS.iter().zip(window) {
            if let Some(at) = at {
                map.serialize_entry(name, &at)?;
            }
        }
        if excludes {
            map.serialize_entry(EXCLUDE_FIELD, &self.exclude)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for TriggerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)
            .map_err(|error| D::Error::custom(format!("trigger must be an object: {error}")))?;
        let mut window = [None, None];
        for (name, slot) in WINDOW_FIELDS.iter().zip(&mut window) {
            if let Some(value) = fields.remove(*name).filter(|v| !v.is_null()) {
                let at = serde_json::from_value::<DateTime<Utc>>(value).map_err(|error| {
                    D::Error::custom(format!(
                        "trigger.{name} must be an RFC 3339 instant such as \
                         \"2026-01-01T00:00:00Z\": {error}"
                    ))
                })?;
                *slot = Some(at);
            }
        }
        let exclude = match fields.remove(EXCLUDE_FIELD).filter(|v| !v.is_null()) {
            Some(value) => serde_json::from_value::<Vec<String>>(value).map_err(|error| {
                D::Error::custom(format!(
                    "trigger.exclude must be a list of calendar names such as [\"holidays\"]: \
                     {error}"
                ))
            })?,
            None => Vec::new(),
        };
        let kind = TriggerKind::deserialize(serde_json::Value::Object(fields))
            .map_err(|error| D::Error::custom(format!("trigger: {error}")))?;
        let [start_at, end_at] = window;
        Ok(TriggerSpec {
            kind,
            start_at,
            end_at,
            exclude,
        })
    }
}

impl TriggerSpec {
    /// Validates the description and compiles it. Instants are kept to whole milliseconds,
    /// the finest precision every store keeps. A cron `H` is refused: it needs the
    /// schedule's id ([`TriggerSpec::compile_for`]).
    pub fn compile(&self) -> Result<Trigger, TriggerError> {
        self.compile_with(None, &Calendars::installed())
    }

    /// Compiles the trigger of schedule `id`: a cron `H` is chosen by a hash of it.
    pub fn compile_for(&self, id: &str) -> Result<Trigger, TriggerError> {
        self.compile_with(Some(id), &Calendars::installed())
    }

    /// Compiles the trigger (of schedule `key`, when given) against `calendars` rather than
    /// the installed ones: what checks a configuration before it is installed.
    pub fn compile_with(
        &self,
        key: Option<&str>,
        calendars: &Calendars,
    ) -> Result<Trigger, TriggerError> {
        let mut exclude: Vec<Arc<Calendar>> = Vec::with_capacity(self.exclude.len());
        for name in &self.exclude {
            let calendar = calendars
                .get(name)
                .ok_or_else(|| TriggerError::UnknownCalendar {
                    name: name.clone(),
                    known: calendars.names(),
                })?;
            if !exclude.contains(calendar) {
                exclude.push(calendar.clone());
            }
        }
        Ok(Trigger {
            exclude,
            ..self.compile_keyed(key)?
        })
    }

    fn compile_keyed(&self, key: Option<&str>) -> Result<Trigger, TriggerError> {
        let start_at = self
            .start_at
            .map(|at| within_range("start_at", at).map(|at| at.trunc_subsecs(3)))
            .transpose()?;
        let end_at = self
            .end_at
            .map(|at| within_range("end_at", at).map(|at| at.trunc_subsecs(3)))
            .transpose()?;
        if let (Some(start), Some(end)) = (start_at, end_at)
            && end < start
        {
            return Err(TriggerError::Window {
                start_at: start.to_rfc3339(),
                end_at: end.to_rfc3339(),
            });
        }
        Ok(Trigger {
            rule: self.kind.compile_rule(key)?,
            start_at,
            end_at,
            exclude: Vec::new(),
        })
    }

    /// The time zone the trigger is evaluated in (UTC for intervals and instants).
    pub fn timezone_name(&self) -> &str {
        self.kind.timezone_name()
    }

    /// The trigger as it is stored when created at `now`: an interval given without an
    /// anchor first fires one interval after `now` (or at `start_at`, when that is later),
    /// as APScheduler's interval trigger does.
    pub fn anchored(mut self, now: DateTime<Utc>) -> Self {
        if let TriggerKind::Interval {
            every_secs,
            anchor: anchor @ None,
        } = &mut self.kind
        {
            let first = i64::try_from(*every_secs)
                .ok()
                .and_then(TimeDelta::try_seconds)
                .and_then(|every| now.trunc_subsecs(0).checked_add_signed(every))
                .unwrap_or(now);
            *anchor = Some(self.start_at.map_or(first, |start| start.max(first)));
        }
        self
    }
}

impl TriggerKind {
    /// Validates and compiles the kind alone, with no window (a cron `H` is refused).
    pub fn compile(&self) -> Result<Trigger, TriggerError> {
        Ok(Trigger {
            rule: self.compile_rule(None)?,
            start_at: None,
            end_at: None,
            exclude: Vec::new(),
        })
    }

    fn compile_rule(&self, key: Option<&str>) -> Result<Rule, TriggerError> {
        match self {
            TriggerKind::Cron {
                expression,
                timezone,
            } => Ok(Rule::Cron(CronSchedule::parse_keyed(
                expression,
                parse_timezone(timezone)?,
                key,
            )?)),
            TriggerKind::Interval { every_secs, anchor } => {
                if *every_secs == 0 {
                    return Err(TriggerError::ZeroInterval);
                }
                if *every_secs > MAX_INTERVAL_SECS {
                    return Err(TriggerError::IntervalTooLong(*every_secs));
                }
                let every = TimeDelta::seconds(*every_secs as i64);
                let anchor = anchor.ok_or(TriggerError::Unanchored)?;
                Ok(Rule::Interval {
                    every,
                    anchor: within_range("interval anchor", anchor)?.trunc_subsecs(3),
                })
            }
            TriggerKind::Once { at } => {
                Ok(Rule::Once(within_range("instant", *at)?.trunc_subsecs(3)))
            }
            TriggerKind::DailyTimes { times, timezone } => {
                let zone = parse_timezone(timezone)?;
                Ok(Rule::DailyTimes(daily_schedules(times, zone)?))
            }
        }
    }

    /// The time zone the trigger is evaluated in (UTC for intervals and instants).
    pub fn timezone_name(&self) -> &str {
        match self {
            TriggerKind::Cron { timezone, .. } | TriggerKind::DailyTimes { timezone, .. } => {
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
    /// The first fire strictly after `after` within the window; `None` when there is none up
    /// to [`LATEST`] or to `end_at`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Instants are whole milliseconds, so "strictly after a millisecond before the
        // start" is "at or after the start".
        let from = match self.start_at {
            Some(start) if after < start => start - TimeDelta::milliseconds(1),
            _ => after,
        };
        self.rule
            .next_after(from)
            .filter(|at| self.end_at.is_none_or(|end| *at <= end))
    }

    /// The calendar that excludes the occurrence at `at`, when one does: the occurrence is
    /// recorded `skipped` with the reason `calendar <name>` instead of running.
    pub fn excluded_by(&self, at: DateTime<Utc>) -> Option<&str> {
        self.exclude
            .iter()
            .find(|calendar| calendar.excludes(at))
            .map(|calendar| calendar.name())
    }

    /// The first fire strictly after `after` that no calendar of the trigger excludes: what
    /// will run. `None` as for [`Trigger::next_after`], or when its calendars exclude more than
    /// [`MAX_EXCLUDED_DAYS`] days in a row of its fires.
    pub fn next_included_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cursor = after;
        for _ in 0..MAX_EXCLUDED_DAYS {
            let at = self.next_after(cursor)?;
            let Some(calendar) = self.exclude.iter().find(|c| c.excludes(at)) else {
                return Some(at);
            };
            // The rest of that local day is excluded too: go on from its end.
            let day_after = calendar.day_after(at)?;
            cursor = (day_after - TimeDelta::milliseconds(1)).max(at);
        }
        None
    }

    /// The zone whose offset fire times are shown in.
    pub fn zone(&self) -> Tz {
        self.rule.zone()
    }

    /// Folds the occurrences from `due` up to `now` (or up to `end_at`, when that is
    /// earlier) into the latest of them (`due <= now`).
    pub fn coalesce(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Coalesced {
        let now = self.end_at.map_or(now, |end| now.min(end)).max(due);
        self.rule.coalesce(due, now)
    }
}

impl Rule {
    /// The first fire strictly after `after`; `None` when there is none up to [`LATEST`].
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = match self {
            Rule::Cron(schedule) => schedule.next_after(after),
            Rule::Interval { every, anchor } => {
                if after < *anchor {
                    return Some(*anchor).filter(|at| in_range(*at));
                }
                let every_secs = every.num_seconds().max(1);
                let elapsed = after.signed_duration_since(*anchor).num_seconds();
                let steps = elapsed / every_secs + 1;
                anchor.checked_add_signed(TimeDelta::try_seconds(steps.checked_mul(every_secs)?)?)
            }
            Rule::Once(at) => (*at > after).then_some(*at),
            Rule::DailyTimes(schedules) => schedules
                .iter()
                .filter_map(|schedule| schedule.next_after(after))
                .min(),
        };
        next.filter(|at| in_range(*at))
    }

    /// The zone whose offset fire times are shown in.
    fn zone(&self) -> Tz {
        match self {
            Rule::Cron(schedule) => schedule.zone(),
            Rule::DailyTimes(schedules) => schedules.first().map_or(Tz::UTC, |s| s.zone()),
            _ => Tz::UTC,
        }
    }

    /// Folds the occurrences from `due` up to `now` into the latest of them (`due <= now`).
    fn coalesce(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Coalesced {
        if let Rule::Interval { every, .. } = self {
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
