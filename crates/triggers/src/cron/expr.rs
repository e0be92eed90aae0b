//! A parsed cron expression and its matching in wall-clock (naive) time.

use chrono::{Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::{CronError, Field};

/// How far ahead a search for a matching day goes: the Gregorian calendar repeats every 400 years,
/// so a day pattern with no match in that span has none at all.
const SEARCH_DAYS: u32 = 146_097 + 366;

/// A parsed cron expression, independent of any time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    source: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Day-of-month was written without a leading `*`.
    dom_restricted: bool,
    /// Day-of-week was written without a leading `*`.
    dow_restricted: bool,
    /// The hour field begins with `*`: the job follows the real clock across DST changes.
    hour_wildcard: bool,
}

impl CronExpr {
    /// Parses an expression of 5 or 6 fields, or one of the `@` macros; an `H` is refused.
    pub fn parse(text: &str) -> Result<Self, CronError> {
        CronExpr::parse_keyed(text, None)
    }

    /// Parses an expression whose `H` fields are chosen by a hash of `key`, the id of the
    /// schedule it belongs to (with no key, an `H` is refused).
    pub fn parse_keyed(text: &str, key: Option<&str>) -> Result<Self, CronError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(CronError::Empty);
        }
        let expanded = if trimmed.starts_with('@') {
            expand_macro(trimmed)?
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => return Err(CronError::FieldCount(n)),
        };
        let expr = CronExpr {
            source: trimmed.to_string(),
            seconds: Field::Second.parse(second, key)?,
            minutes: Field::Minute.parse(rest[0], key)?,
            hours: Field::Hour.parse(rest[1], key)?,
            days_of_month: Field::DayOfMonth.parse(rest[2], key)?,
            months: Field::Month.parse(rest[3], key)?,
            days_of_week: Field::DayOfWeek.parse(rest[4], key)?,
            dom_restricted: !rest[2].starts_with('*'),
            dow_restricted: !rest[4].starts_with('*'),
            hour_wildcard: rest[1].starts_with('*'),
        };
        expr.ensure_some_day_matches()?;
        Ok(expr)
    }

    /// The expression as the user wrote it (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the hour field begins with `*`, which makes the job follow the real clock.
    pub fn hour_wildcard(&self) -> bool {
        self.hour_wildcard
    }

    /// Whether the expression matches this calendar day (month, day-of-month, day-of-week).
    pub fn matches_day(&self, date: NaiveDate) -> bool {
        if !has(self.months, date.month()) {
            return false;
        }
        let dom = has(self.days_of_month, date.day());
        let dow = has(self.days_of_week, date.weekday().num_days_from_sunday());
        if self.dom_restricted && self.dow_restricted {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// Whether the expression matches this wall-clock second.
    pub fn matches(&self, at: NaiveDateTime) -> bool {
        self.matches_day(at.date())
            && has(self.hours, at.hour())
            && has(self.minutes, at.minute())
            && has(self.seconds, at.second())
    }

    /// The first matching wall-clock second at or after `start` (sub-second parts are dropped).
    pub fn next_local_from(&self, start: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut date = start.date();
        let mut from = start.time().with_nanosecond(0)?;
        for _ in 0..SEARCH_DAYS {
            if !has(self.months, date.month()) {
                date = first_of_next_month(date)?;
                from = NaiveTime::MIN;
                continue;
            }
            if self.matches_day(date)
                && let Some(time) = self.first_time_from(from)
            {
                return Some(date.and_time(time));
            }
            date = date.checked_add_days(Days::new(1))?;
            from = NaiveTime::MIN;
        }
        None
    }

    fn first_time_from(&self, from: NaiveTime) -> Option<NaiveTime> {
        let (h0, m0, s0) = (from.hour(), from.minute(), from.second());
        let mut hour = next_bit(self.hours, h0)?;
        loop {
            let minute_start = if hour == h0 { m0 } else { 0 };
            let mut minute = next_bit(self.minutes, minute_start);
            while let Some(m) = minute {
                let second_start = if hour == h0 && m == m0 { s0 } else { 0 };
                if let Some(s) = next_bit(self.seconds, second_start) {
                    return NaiveTime::from_hms_opt(hour, m, s);
                }
                minute = next_bit(self.minutes, m + 1);
            }
            hour = next_bit(self.hours, hour + 1)?;
        }
    }

    /// Refuses an expression that matches no day: the search covers a whole 400-year cycle
    /// of the calendar, skipping the months it excludes.
    fn ensure_some_day_matches(&self) -> Result<(), CronError> {
        let start = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a valid date");
        match self.next_local_from(start.and_time(NaiveTime::MIN)) {
            Some(_) => Ok(()),
            None => Err(CronError::NeverFires(self.source.clone())),
        }
    }
}

fn expand_macro(text: &str) -> Result<&'static str, CronError> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return Err(CronError::UnknownMacro(text.to_string())),
    })
}

fn has(bits: u64, value: u32) -> bool {
    bits & (1 << value) != 0
}

/// The smallest set bit at or above `from`, if any.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = bits >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    date.with_day(1)?.checked_add_months(Months::new(1))
}
