//! Parsing of one cron field into the set of values it allows.

use std::fmt;

use sha2::{Digest, Sha256};

use super::CronError;

/// One field of a cron expression, with its bounds and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        })
    }
}

/// The number an `H` of `field` is chosen by: the first 8 bytes of SHA-256 over the key and
/// the field's name, the same on every machine, in every release.
fn hash_of(key: &str, field: Field) -> u64 {
    let digest = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update([0])
        .chain_update(field.to_string().as_bytes())
        .finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("a digest of 32 bytes"))
}

impl Field {
    /// The smallest and largest value a user may write. Day-of-week accepts 7 as a second Sunday.
    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    /// How many distinct values the field has; ranges wrap around modulo this width.
    fn width(self) -> u32 {
        match self {
            Field::DayOfWeek => 7,
            _ => {
                let (lo, hi) = self.bounds();
                hi - lo + 1
            }
        }
    }

    /// The largest value `*` and `a/n` run up to (day-of-week stops at Saturday).
    fn last(self) -> u32 {
        match self {
            Field::DayOfWeek => 6,
            _ => self.bounds().1,
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &MONTH_NAMES,
            Field::DayOfWeek => &DAY_NAMES,
            _ => &[],
        }
    }

    /// Folds a value into the field's canonical domain (day-of-week 7 becomes 0).
    fn normalize(self, value: u32) -> u32 {
        let (lo, _) = self.bounds();
        lo + (value - lo) % self.width()
    }

    /// The values `H` alone chooses among: the whole field, but days of the month only up to
    /// the 28th, which every month has.
    fn hashed_bounds(self) -> (u32, u32) {
        match self {
            Field::DayOfMonth => (1, 28),
            _ => (self.bounds().0, self.last()),
        }
    }

    /// Parses the field's text into a bit set: bit `v` is set when value `v` is allowed.
    /// `key` is what an `H` is hashed from (a schedule's id); without one an `H` is refused.
    pub(crate) fn parse(self, text: &str, key: Option<&str>) -> Result<u64, CronError> {
        if text.is_empty() {
            return Err(CronError::field(self, "is empty"));
        }
        let mut bits = 0u64;
        for item in text.split(',') {
            bits |= self.parse_item(item, key)?;
        }
        Ok(bits)
    }

    fn parse_item(self, item: &str, key: Option<&str>) -> Result<u64, CronError> {
        if item.is_empty() {
            return Err(CronError::field(self, "has an empty list item"));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(self.parse_step(step)?)),
            None => (item, None),
        };
        if range.starts_with('H') {
            return self.parse_hashed(range, step, key);
        }
        let (start, end) = if range == "*" {
            (self.bounds().0, self.last())
        } else if let Some((a, b)) = range.split_once('-') {
            (self.parse_value(a)?, self.parse_value(b)?)
        } else {
            let value = self.parse_value(range)?;
            (
                value,
                if step.is_some() {
                    self.last().max(value)
                } else {
                    value
                },
            )
        };
        // A range whose start is past its end wraps around the field: `fri-tue`, `22-2`.
        let end = if start > end { end + self.width() } else { end };
        let mut bits = 0u64;
        let mut value = start;
        while value <= end {
            bits |= 1 << self.normalize(value);
            value += step.unwrap_or(1);
        }
        Ok(bits)
    }

    /// `H`, `H(a-b)`, `H/n` or `H(a-b)/n`: Jenkins' hash spread. One value of the range (or
    /// one offset of the step) chosen by a hash of `key` and the field, so that schedules
    /// written alike spread over the range, each always at the same place.
    fn parse_hashed(
        self,
        range: &str,
        step: Option<u32>,
        key: Option<&str>,
    ) -> Result<u64, CronError> {
        let (lo, hi) = if range == "H" {
            self.hashed_bounds()
        } else {
            let inner = range
                .strip_prefix("H(")
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(|inner| inner.split_once('-'))
                .ok_or_else(|| {
                    CronError::field(self, format!("'{range}' is neither H nor H(first-last)"))
                })?;
            let (lo, hi) = (self.parse_value(inner.0)?, self.parse_value(inner.1)?);
            if lo > hi {
                return Err(CronError::field(
                    self,
                    format!("the range of '{range}' ends before it starts"),
                ));
            }
            (lo, hi)
        };
        let Some(key) = key else {
            return Err(CronError::field(
                self,
                "H is chosen by the id of the schedule it is for, and there is none here (next_fire_times takes it as hash_key)",
            ));
        };
        let hash = hash_of(key, self);
        let span = hi - lo + 1;
        let Some(step) = step else {
            return Ok(1 << self.normalize(lo + (hash % u64::from(span)) as u32));
        };
        let mut value = lo + (hash % u64::from(step.min(span))) as u32;
        let mut bits = 0u64;
        while value <= hi {
            bits |= 1 << self.normalize(value);
            value += step;
        }
        Ok(bits)
    }

    fn parse_step(self, text: &str) -> Result<u32, CronError> {
        let step: u32 = text
            .parse()
            .map_err(|_| CronError::field(self, format!("step '{text}' is not a whole number")))?;
        if step == 0 {
            return Err(CronError::field(self, "a step of 0 never advances"));
        }
        if step > self.width() {
            return Err(CronError::field(
                self,
                format!(
                    "step {step} is wider than the field, which has {} values",
                    self.width()
                ),
            ));
        }
        Ok(step)
    }

    fn parse_value(self, text: &str) -> Result<u32, CronError> {
        let (lo, hi) = self.bounds();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let value: u32 = text
                .parse()
                .map_err(|_| CronError::field(self, format!("value '{text}' is too large")))?;
            if value < lo || value > hi {
                return Err(CronError::field(
                    self,
                    format!("value {value} is out of range {lo}-{hi}"),
                ));
            }
            return Ok(value);
        }
        let lower = text.to_ascii_lowercase();
        match self.names().iter().position(|name| *name == lower) {
            Some(index) => Ok(index as u32 + lo),
            None if self.names().is_empty() => {
                Err(CronError::field(self, format!("'{text}' is not a number")))
            }
            None => Err(CronError::field(
                self,
                format!(
                    "'{text}' is neither a number nor a name ({})",
                    self.names().join(" ")
                ),
            )),
        }
    }
}
